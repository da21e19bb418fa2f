"""The order's business rules: arithmetic, validation in the original's order, status changes.

Plain Python: no web, database or broker library. Every status change is a guarded transition;
the repository applies it as a compare-and-set on the row, so a repeated or late message that
finds the order elsewhere changes nothing.
"""
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import IntEnum

from shop.common.codes import ShopCode
from shop.common.errors import ShopError
from shop.common.money import ZERO

FREE_SHIPPING_ABOVE = Decimal("100.00")
SHIPPING_FEE = Decimal("10.00")
MAX_GOODS_NUMBER = 1_000_000
MAX_LINES = 20  # a cart's lines


class OrderStatus(IntEnum):
    UNCONFIRMED = 0
    CONFIRMED = 1
    CANCELLED = 2
    INVALID = 3
    REFUNDED = 4


class PayStatus(IntEnum):
    UNPAID = 0
    PAID = 2


class ShippingStatus(IntEnum):
    NOT_SHIPPED = 0
    SHIPPED = 1
    RETURNED = 2


@dataclass(frozen=True, slots=True)
class Transition:
    """One status change: allowed only while the order's statuses are `guard`; it sets `sets`, and
    the time fields in `stamps` to the moment of the change. Once applied the guard no longer
    holds, so a repeated or late attempt changes nothing."""

    guard: Mapping[str, int]
    sets: Mapping[str, int]
    stamps: tuple[str, ...] = ()

    def allowed(self, statuses: Mapping[str, int]) -> bool:
        """Whether an order with these statuses (a row's, by column) may take this transition."""
        return all(statuses[field] == value for field, value in self.guard.items())


ORDER, PAY, SHIPPING = "order_status", "pay_status", "shipping_status"
CONFIRM = Transition({ORDER: OrderStatus.UNCONFIRMED}, {ORDER: OrderStatus.CONFIRMED}, ("confirm_time",))
# Nothing left to pay (coupon and balance covered it): paid at confirmation.
CONFIRM_PAID = Transition(
    {ORDER: OrderStatus.UNCONFIRMED, PAY: PayStatus.UNPAID}, {ORDER: OrderStatus.CONFIRMED, PAY: PayStatus.PAID},
    ("confirm_time", "pay_time"),
)
# A failure in the saga, or its deadline: only an order nobody confirmed.
CANCEL_UNCONFIRMED = Transition({ORDER: OrderStatus.UNCONFIRMED}, {ORDER: OrderStatus.CANCELLED}, ("cancel_time",))
# The payment timeout and the owner's cancel: only a confirmed order nobody has paid for.
CANCEL_UNPAID = Transition(
    {ORDER: OrderStatus.CONFIRMED, PAY: PayStatus.UNPAID}, {ORDER: OrderStatus.CANCELLED}, ("cancel_time",),
)
MARK_PAID = Transition({ORDER: OrderStatus.CONFIRMED, PAY: PayStatus.UNPAID}, {PAY: PayStatus.PAID}, ("pay_time",))
REFUND = Transition(
    {ORDER: OrderStatus.CONFIRMED, PAY: PayStatus.PAID, SHIPPING: ShippingStatus.NOT_SHIPPED},
    {ORDER: OrderStatus.REFUNDED}, ("refund_time",),
)


@dataclass(frozen=True, slots=True)
class Outcomes:
    """Where orders ended, for the operator: confirmed (whatever came after: paid, cancelled by
    the owner, refunded), failed (cancelled or invalid before anyone confirmed them: the saga's
    compensations undid them), or still unconfirmed (in flight)."""

    confirmed: int = 0
    failed: int = 0
    unconfirmed: int = 0

    def __add__(self, other: "Outcomes") -> "Outcomes":
        return Outcomes(self.confirmed + other.confirmed, self.failed + other.failed,
                        self.unconfirmed + other.unconfirmed)


def outcomes(status: int, placed: int, confirmed: int) -> Outcomes:
    """`placed` orders now in `status`, of which `confirmed` were once confirmed (have a confirm time)."""
    if status == OrderStatus.UNCONFIRMED:
        return Outcomes(unconfirmed=placed)
    return Outcomes(confirmed=confirmed, failed=placed - confirmed)


@dataclass(frozen=True, slots=True)
class Pricing:
    goods_amount: Decimal
    shipping_fee: Decimal
    order_amount: Decimal
    coupon_paid: Decimal
    money_paid: Decimal
    pay_amount: Decimal


def shipping_fee(goods_amount: Decimal) -> Decimal:
    return ZERO if goods_amount > FREE_SHIPPING_ABOVE else SHIPPING_FEE


def check_lines(lines: Sequence[tuple[int, int]]) -> None:
    """A cart's shape, before anything is read: 1 to MAX_LINES lines of (goods, units), each a
    positive number of units."""
    if not 1 <= len(lines) <= MAX_LINES:
        raise ShopError(ShopCode.SHOP_REQUEST_PARAMETER_VALID, f"an order has 1 to {MAX_LINES} lines")
    for goods_id, goods_number in lines:
        if not 0 < goods_number <= MAX_GOODS_NUMBER:
            raise ShopError(ShopCode.SHOP_REQUEST_PARAMETER_VALID,
                            "goodsNumber must be a positive whole number").with_data({"goodsId": str(goods_id)})


def cart_amount(lines: Sequence[tuple[int, int, Decimal]]) -> Decimal:
    """The goods amount of (goods, units, the client's price) lines, no goods twice (its stock is
    one step). Computed at the client's prices: the goods service's step refuses a line whose
    price is not the goods' (goods.contracts.check_line), so an order confirmed was priced right."""
    seen: set[int] = set()
    amount = ZERO
    for goods_id, goods_number, price in lines:
        if goods_id in seen:
            raise ShopError(ShopCode.SHOP_REQUEST_PARAMETER_VALID,
                            "the same goods is on two lines").with_data({"goodsId": str(goods_id)})
        seen.add(goods_id)
        amount += price * goods_number
    return amount


def check_amounts(goods_amount: Decimal, *, client_shipping_fee: Decimal,
                  client_order_amount: Decimal) -> tuple[Decimal, Decimal]:
    """The shipping fee and the order amount (mended: it includes shipping) of the lines' sum."""
    fee = shipping_fee(goods_amount)
    if client_shipping_fee != fee:
        raise ShopError(ShopCode.SHOP_ORDER_SHIPPINGFEE_INVALID)
    order_amount = goods_amount + fee
    if client_order_amount != order_amount:
        raise ShopError(ShopCode.SHOP_ORDERAMOUNT_INVALID)
    return fee, order_amount


def check_payment(
    *, user_id: int, order_amount: Decimal, goods_amount: Decimal, fee: Decimal, money_paid: Decimal,
    coupon_price: Decimal | None = None, coupon_user_id: int | None = None, coupon_used: bool = False,
) -> Pricing:
    """The coupon and the balance, in the original's order; mended: the coupon must be the
    caller's and the pay amount is never below zero. The balance is not read first: the user
    service's step refuses a balance short of money_paid, with the original's code
    (SHOP_MONEY_PAID_INVALID)."""
    coupon_paid = ZERO
    if coupon_price is not None:
        if coupon_used or coupon_user_id != user_id:
            raise ShopError(ShopCode.SHOP_COUPON_INVALID)
        coupon_paid = coupon_price
    if money_paid < 0:
        raise ShopError(ShopCode.SHOP_MONEY_PAID_LESS_ZERO)
    pay_amount = order_amount - coupon_paid - money_paid
    if pay_amount < 0:
        raise ShopError(ShopCode.SHOP_PAY_AMOUNT_INVALID, "coupon and balance pay more than the order amount")
    return Pricing(goods_amount, fee, order_amount, coupon_paid, money_paid, pay_amount)
