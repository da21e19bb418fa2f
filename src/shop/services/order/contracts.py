"""The order service's interface (the original's IOrderService) and the messages it publishes."""
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from shop.common.timeline import TimelineEvent
from shop.infra.db.scope import EVERYTHING, AuditScope
from shop.infra.messaging import Message
from shop.services.goods.contracts import StockLine

ORDER_TOPIC = "order"
TAG_CANCEL = "cancel"  # an order's effects are undone (before it was paid)
TAG_PAID = "paid"  # a payment was accepted for a confirmed order: points, the payment log
TAG_REFUND = "refund"  # a paid order is refunded: everything undone, the payment given back
TAG_REFUND_PAYMENT = "refund_payment"  # a payment arrived for an order that no longer takes it


@dataclass(frozen=True, slots=True)
class OrderLine:
    """One line of an order: a goods, how many, at what price (in a PlaceOrder, the client's)."""

    goods_id: int
    goods_number: int
    goods_price: Decimal

    @property
    def goods_amount(self) -> Decimal:
        return self.goods_price * self.goods_number


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    """A TradeOrder as the client sends it, with its lines (the original's single goods is one
    line): the prices are the client's, checked against ours."""

    user_id: int
    items: list[OrderLine]
    shipping_fee: Decimal
    order_amount: Decimal
    address: str
    coupon_id: int | None = None
    money_paid: Decimal = Decimal("0.00")
    consignee: str | None = None


@dataclass(frozen=True, slots=True)
class Order:
    """An order. goods_id, goods_number and goods_price are its first line's (the original's
    single goods), goods_amount the sum over every line; `items` are all its lines."""

    order_id: int
    user_id: int
    order_status: int
    pay_status: int
    shipping_status: int
    address: str
    consignee: str | None
    goods_id: int
    goods_number: int
    goods_price: Decimal
    goods_amount: Decimal
    shipping_fee: Decimal
    order_amount: Decimal
    coupon_id: int | None
    coupon_paid: Decimal
    money_paid: Decimal
    pay_amount: Decimal
    add_time: datetime
    confirm_time: datetime | None = None
    pay_time: datetime | None = None
    items: list[OrderLine] = field(default_factory=list)


# The order topic's bodies carry a version, "v". Version 1 (no "v": the shape before carts) names one
# goods (goodsId, goodsNumber); version 2 carries the lines ("items"). Consumers read both, so
# messages written before an upgrade are still handled after it; a version they do not know fails
# (retried, then parked for an operator) rather than being half understood. Version 2 leaves out
# the single goods on purpose: a consumer of version 1 would give back the first line only, so it
# fails instead. Upgrade the consumers (goods, coupon, user) before the order service.
MESSAGE_VERSION = 2


def _lines_in(body: dict[str, Any]) -> list[StockLine]:
    version = body.get("v", 1)
    if version == 1:
        return [StockLine(int(body["goodsId"]), int(body["goodsNumber"]))]
    if version == MESSAGE_VERSION:
        return [StockLine(int(i["goodsId"]), int(i["goodsNumber"])) for i in body["items"]]
    raise ValueError(f"order message version {version!r} is newer than this consumer")


@dataclass(frozen=True, slots=True)
class OrderCancelled:
    """Event: the order is cancelled; every participant undoes its part, if it did any."""

    order_id: int
    user_id: int
    items: list[StockLine]
    coupon_id: int | None
    money_paid: Decimal

    def to_message(self) -> Message:
        return Message(
            ORDER_TOPIC,
            TAG_CANCEL,
            str(self.order_id),
            {
                "v": MESSAGE_VERSION,
                "orderId": str(self.order_id),
                "userId": str(self.user_id),
                "items": [{"goodsId": str(i.goods_id), "goodsNumber": i.goods_number} for i in self.items],
                "couponId": None if self.coupon_id is None else str(self.coupon_id),
                "moneyPaid": str(self.money_paid),
            },
        )

    @classmethod
    def from_message(cls, msg: Message) -> "OrderCancelled":
        b = msg.body
        return cls(
            order_id=int(b["orderId"]),
            user_id=int(b["userId"]),
            items=_lines_in(b),
            coupon_id=None if b.get("couponId") is None else int(b["couponId"]),
            money_paid=Decimal(b["moneyPaid"]),
        )

    @classmethod
    def of(cls, order: "Order") -> "OrderCancelled":
        """What undoes this order, at every participant."""
        return cls(order.order_id, order.user_id, [StockLine(i.goods_id, i.goods_number) for i in order.items],
                   order.coupon_id, order.money_paid)


@dataclass(frozen=True, slots=True)
class OrderPaid:
    order_id: int
    user_id: int
    pay_id: int
    pay_amount: Decimal

    def to_message(self) -> Message:
        return Message(ORDER_TOPIC, TAG_PAID, str(self.order_id), {
            "orderId": str(self.order_id), "userId": str(self.user_id), "payId": str(self.pay_id),
            "payAmount": str(self.pay_amount),
        })

    @classmethod
    def from_message(cls, msg: Message) -> "OrderPaid":
        b = msg.body
        return cls(int(b["orderId"]), int(b["userId"]), int(b["payId"]), Decimal(b["payAmount"]))


def refund_message(cancelled: OrderCancelled, pay_amount: Decimal) -> Message:
    """A paid order's refund: the cancellation's body (so the same compensations read it) plus
    the amount the platform gives back, whose points are taken back."""
    m = cancelled.to_message()
    return Message(ORDER_TOPIC, TAG_REFUND, m.key, {**m.body, "payAmount": str(pay_amount)})


def refund_payment_message(order_id: int, pay_id: int) -> Message:
    return Message(ORDER_TOPIC, TAG_REFUND_PAYMENT, str(order_id), {"orderId": str(order_id), "payId": str(pay_id)})


@dataclass(frozen=True, slots=True)
class OrderQuery:
    """Which orders, newest first: every filter is optional. `before_id` is the keyset cursor: the
    last order of the previous page (an order id grows with its creation time)."""

    user_id: int | None = None
    order_status: int | None = None
    pay_status: int | None = None
    from_time: datetime | None = None  # created at or after
    to_time: datetime | None = None  # created before
    before_id: int | None = None
    limit: int = 20


@dataclass(frozen=True, slots=True)
class OrderPage:
    items: list[Order]
    next_before_id: int | None  # pass back as before_id for the next page; None: no more


@dataclass(frozen=True, slots=True)
class MinuteCounts:
    """The orders placed in one minute (`at`, its start), by where they ended: confirmed (whatever
    happened after), failed (cancelled before they were confirmed: the saga undid them), and still
    unconfirmed."""

    at: datetime
    confirmed: int
    failed: int
    unconfirmed: int


@dataclass(frozen=True, slots=True)
class OrderOverview:
    """The operator's overview, from the order service's own table: one MinuteCounts a minute,
    oldest first, the last one the minute now running; how many orders were cancelled or refunded
    in that window (each one compensated at every participant); how many orders are still
    unconfirmed and how many of this service's messages are due."""

    per_minute: list[MinuteCounts]
    compensations: int
    unconfirmed: int
    outbox_due: int


MAX_OVERVIEW_MINUTES = 180  # a poll reads at most these minutes of orders


@dataclass(frozen=True, slots=True)
class OrderState:
    """What the audit reads of an order: a million of them cross the wire in a recount."""

    order_id: int
    user_id: int
    order_status: int
    pay_status: int
    coupon_id: int | None
    money_paid: Decimal
    pay_amount: Decimal
    items: dict[int, int] = field(default_factory=dict)  # goods -> units, every line


@dataclass(frozen=True)
class OrderFacts:
    """The order service's side of the audit: every order, and its messages not yet sent."""

    orders: dict[int, OrderState]
    outbox_due: int
    unconfirmed: int = 0  # every order still unconfirmed, in or out of the scope
    through: int = 0  # the range covered, when a limit cut it short: [since_id, through)
    sent: list[int] = field(default_factory=list)  # orders whose messages left since scope.sent_since_ms
    earned: dict[int, int] = field(default_factory=dict)  # entities: user -> points its paid orders earn


class OrderService(Protocol):
    async def confirm_order(self, cmd: PlaceOrder) -> Order: ...

    async def find_order(self, order_id: int) -> Order: ...

    async def list_orders(self, query: OrderQuery) -> OrderPage: ...

    async def cancel_order(self, order_id: int, user_id: int) -> Order: ...

    async def refund_order(self, order_id: int, user_id: int) -> Order: ...

    async def audit_facts(self, scope: AuditScope = EVERYTHING) -> OrderFacts:
        """This service's facts about the scope's orders (or entities): indexed reads only."""
        ...

    async def overview(self, minutes: int) -> OrderOverview:
        """The last `minutes` minutes (1 to MAX_OVERVIEW_MINUTES), for the operator's console."""
        ...

    async def timeline(self, order_id: int) -> list[TimelineEvent]:
        """Every fact this service holds about one order, for the operator."""
        ...
