"""The order service's interface (the original's IOrderService) and the messages it publishes."""
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from shop.infra.messaging import Message

ORDER_TOPIC = "order"
TAG_CANCEL = "cancel"


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    """A TradeOrder as the client sends it: the prices are the client's, checked against ours."""

    user_id: int
    goods_id: int
    goods_number: int
    goods_price: Decimal
    shipping_fee: Decimal
    order_amount: Decimal
    address: str
    coupon_id: int | None = None
    money_paid: Decimal = Decimal("0.00")
    consignee: str | None = None


@dataclass(frozen=True, slots=True)
class Order:
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


@dataclass(frozen=True, slots=True)
class OrderCancelled:
    """Event: the order is cancelled; every participant undoes its part, if it did any."""

    order_id: int
    user_id: int
    goods_id: int
    goods_number: int
    coupon_id: int | None
    money_paid: Decimal

    def to_message(self) -> Message:
        return Message(
            ORDER_TOPIC,
            TAG_CANCEL,
            str(self.order_id),
            {
                "orderId": str(self.order_id),
                "userId": str(self.user_id),
                "goodsId": str(self.goods_id),
                "goodsNumber": self.goods_number,
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
            goods_id=int(b["goodsId"]),
            goods_number=int(b["goodsNumber"]),
            coupon_id=None if b.get("couponId") is None else int(b["couponId"]),
            money_paid=Decimal(b["moneyPaid"]),
        )


class OrderService(Protocol):
    async def confirm_order(self, cmd: PlaceOrder) -> Order: ...

    async def find_order(self, order_id: int) -> Order: ...
