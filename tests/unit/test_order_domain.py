"""The order's rules, on plain values: arithmetic, the original's validation order, the status changes."""
from decimal import Decimal as D
from itertools import product

import pytest

from shop.common.codes import ShopCode
from shop.common.errors import ShopError
from shop.services.goods.contracts import Goods, StockLine
from shop.services.goods.contracts import check_line as check_goods_line
from shop.services.order import domain
from shop.services.order.domain import (
    ORDER,
    PAY,
    SHIPPING,
    OrderStatus,
    PayStatus,
    ShippingStatus,
    Transition,
    cart_amount,
    check_amounts,
    check_lines,
    check_payment,
    shipping_fee,
)


@pytest.mark.parametrize("amount,fee", [("100.00", "10.00"), ("100.01", "0.00"), ("5000.00", "0.00"),
                                        ("0.50", "10.00")])
def test_shipping_is_free_only_above_100(amount, fee):
    assert shipping_fee(D(amount)) == D(fee)


def goods(**kw):
    """One line's checks and the amounts, as the saga runs them."""
    args = dict(goods_price=D("5000.00"), stock=10, client_price=D("5000.00"), goods_number=1,
                client_shipping_fee=D("0.00"), client_order_amount=D("5000.00"))
    args.update(kw)
    check_lines([(1, args["goods_number"])])
    check_line(goods_id=1, goods_price=args["goods_price"], stock=args["stock"],
               client_price=args["client_price"], goods_number=args["goods_number"])
    amount = cart_amount([(1, args["goods_number"], args["client_price"])])
    fee, total = check_amounts(amount, client_shipping_fee=args["client_shipping_fee"],
                               client_order_amount=args["client_order_amount"])
    return amount, fee, total


def check_line(*, goods_id, goods_price, stock, client_price, goods_number):
    """The goods service's check of one line (the order's step), on a goods with that price and stock."""
    check_goods_line(StockLine(goods_id, goods_number, client_price),
                     Goods(goods_id, "g", stock, goods_price, None, None))  # type: ignore[arg-type]


def code(fn, **kw):
    with pytest.raises(ShopError) as e:
        fn(**kw)
    return e.value.code


def test_goods_checks_pass_and_compute():
    assert goods() == (D("5000.00"), D("0.00"), D("5000.00"))
    assert goods(stock=1) == (D("5000.00"), D("0.00"), D("5000.00"))  # the last unit may be taken


def test_goods_checks_in_the_original_order():
    # Several things wrong at once: the first in the original's order is reported.
    assert (code(goods, client_price=D("1.00"), goods_number=99, client_shipping_fee=D("1"))
            == ShopCode.SHOP_GOODS_PRICE_INVALID)
    assert code(goods, goods_number=11, client_shipping_fee=D("1")) == ShopCode.SHOP_GOODS_NUM_NOT_ENOUGH
    assert (code(goods, client_shipping_fee=D("10.00"), client_order_amount=D("1"))
            == ShopCode.SHOP_ORDER_SHIPPINGFEE_INVALID)
    assert code(goods, client_order_amount=D("5010.00")) == ShopCode.SHOP_ORDERAMOUNT_INVALID
    assert code(goods, goods_number=0) == ShopCode.SHOP_REQUEST_PARAMETER_VALID


def pay(**kw):
    args = dict(user_id=1, order_amount=D("5000.00"), goods_amount=D("5000.00"), fee=D("0.00"),
                money_paid=D("100.00"), coupon_price=D("100.00"), coupon_user_id=1)
    args.update(kw)
    return check_payment(**args)


def test_the_original_pay_amount():
    p = pay()
    assert (p.coupon_paid, p.money_paid, p.pay_amount) == (D("100.00"), D("100.00"), D("4800.00"))


def test_payment_refusals():
    assert code(pay, coupon_used=True) == ShopCode.SHOP_COUPON_INVALID
    assert code(pay, coupon_user_id=2) == ShopCode.SHOP_COUPON_INVALID
    assert code(pay, money_paid=D("-1")) == ShopCode.SHOP_MONEY_PAID_LESS_ZERO
    # A balance short of money_paid is the user step's refusal (tests/unit/test_saga.py, test_api_contract).
    assert (code(pay, order_amount=D("150.00"), money_paid=D("60"))
            == ShopCode.SHOP_PAY_AMOUNT_INVALID)
    assert pay(order_amount=D("200.00"), money_paid=D("100.00")).pay_amount == D("0.00")  # exactly zero is fine


# -- the status changes, as data -------------------------------------------------------------------

TRANSITIONS = {name.lower(): t for name, t in vars(domain).items() if isinstance(t, Transition)}
STATES = [dict(zip((ORDER, PAY, SHIPPING), s, strict=True)) for s in product(OrderStatus, PayStatus, ShippingStatus)]


def allows(t: Transition, state: dict) -> bool:
    return all(state[field] == value for field, value in t.guard.items())


def after(t: Transition, state: dict) -> dict:
    return {**state, **t.sets}


# name: (from: the statuses it requires, to: the statuses it sets, the times it stamps)
EXPECTED = {
    "confirm": ({ORDER: OrderStatus.UNCONFIRMED}, {ORDER: OrderStatus.CONFIRMED}, ("confirm_time",)),
    "confirm_paid": ({ORDER: OrderStatus.UNCONFIRMED, PAY: PayStatus.UNPAID},
                     {ORDER: OrderStatus.CONFIRMED, PAY: PayStatus.PAID}, ("confirm_time", "pay_time")),
    "cancel_unconfirmed": ({ORDER: OrderStatus.UNCONFIRMED}, {ORDER: OrderStatus.CANCELLED}, ("cancel_time",)),
    "cancel_unpaid": ({ORDER: OrderStatus.CONFIRMED, PAY: PayStatus.UNPAID}, {ORDER: OrderStatus.CANCELLED},
                      ("cancel_time",)),
    "mark_paid": ({ORDER: OrderStatus.CONFIRMED, PAY: PayStatus.UNPAID}, {PAY: PayStatus.PAID}, ("pay_time",)),
    "refund": ({ORDER: OrderStatus.CONFIRMED, PAY: PayStatus.PAID, SHIPPING: ShippingStatus.NOT_SHIPPED},
               {ORDER: OrderStatus.REFUNDED}, ("refund_time",)),
}


def test_the_table_has_exactly_these_transitions():
    assert set(TRANSITIONS) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_transition_goes_from_its_statuses_to_its_statuses(name):
    t = TRANSITIONS[name]
    assert (dict(t.guard), dict(t.sets), t.stamps) == EXPECTED[name]


# Where two changes may both apply, they compete on purpose and the compare-and-set picks one: the saga
# confirms (paid or not) or cancels an unconfirmed order; a payment races the timeout or the owner's
# cancel of an unpaid one. Any other choice between different outcomes would be a bug in the table.
COMPETING = [{"confirm", "confirm_paid", "cancel_unconfirmed"}, {"cancel_unpaid", "mark_paid"}]


@pytest.mark.parametrize("state", STATES, ids=lambda s: "-".join(str(int(v)) for v in s.values()))
def test_no_two_transitions_from_one_state_lead_apart_unexpectedly(state):
    enabled = {name: t for name, t in TRANSITIONS.items() if allows(t, state)}
    targets = {tuple(after(t, state).values()) for t in enabled.values()}
    if len(targets) > 1:
        assert any(set(enabled) <= group for group in COMPETING), (state, sorted(enabled))


@pytest.mark.parametrize("name", sorted(TRANSITIONS))
def test_a_transition_leaves_its_own_guard_so_a_repeat_changes_nothing(name):
    t = TRANSITIONS[name]
    moved = [s for s in STATES if allows(t, s)]
    assert moved, f"{name} applies to no state"
    assert not any(allows(t, after(t, s)) for s in moved)


def test_nothing_leaves_a_final_status():
    final = {OrderStatus.CANCELLED, OrderStatus.INVALID, OrderStatus.REFUNDED}
    assert not [(n, s) for n, t in TRANSITIONS.items() for s in STATES if s[ORDER] in final and allows(t, s)]


def test_outcomes_count_an_order_confirmed_once_as_confirmed_whatever_came_after() -> None:
    from shop.services.order.domain import Outcomes, outcomes

    assert outcomes(OrderStatus.UNCONFIRMED, 3, 0) == Outcomes(unconfirmed=3)
    assert outcomes(OrderStatus.CONFIRMED, 2, 2) == Outcomes(confirmed=2)
    assert outcomes(OrderStatus.REFUNDED, 1, 1) == Outcomes(confirmed=1)
    # Cancelled: by the owner or the payment timeout after confirmation, or by the saga before it.
    assert outcomes(OrderStatus.CANCELLED, 5, 2) == Outcomes(confirmed=2, failed=3)
    assert outcomes(OrderStatus.CANCELLED, 1, 0) + outcomes(OrderStatus.CONFIRMED, 1, 1) == Outcomes(1, 1, 0)


def test_a_carts_shape_and_its_lines_refusals_name_the_line():
    check_lines([(1, 1)] + [(g, 2) for g in range(2, 21)])  # 20 lines
    for lines in ([], [(g, 1) for g in range(1, 22)]):
        with pytest.raises(ShopError) as e:
            check_lines(lines)
        assert e.value.code == ShopCode.SHOP_REQUEST_PARAMETER_VALID
    with pytest.raises(ShopError) as e:
        check_lines([(1, 1), (2, 0)])
    assert e.value.data == {"goodsId": "2"}
    assert cart_amount([(1, 2, D("1.00")), (2, 2, D("1.50"))]) == D("5.00")
    with pytest.raises(ShopError) as e:
        cart_amount([(1, 2, D("1.00")), (2, 2, D("1.00")), (1, 1, D("1.00"))])  # the same goods on a third line
    assert e.value.code == ShopCode.SHOP_REQUEST_PARAMETER_VALID and e.value.data == {"goodsId": "1"}
    line = dict(goods_price=D("1.00"), client_price=D("1.00"), goods_number=2)
    with pytest.raises(ShopError) as e:
        check_line(goods_id=3, **{**line, "stock": 1})
    assert e.value.code == ShopCode.SHOP_GOODS_NUM_NOT_ENOUGH and e.value.data == {"goodsId": "3", "goodsNumber": 1}
