"""REST (order-web): placing and reading orders."""
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import Field, StrictInt

from shop.common.clock import iso
from shop.common.money import ZERO, fmt
from shop.infra.deps import AdminDep, UserIdDep, forbid_unless, from_state
from shop.infra.web import Camel, Envelope, IdIn, MoneyIn, SignedMoneyIn, ok
from shop.services.order.contracts import Order, OrderService, PlaceOrder

router = APIRouter()
OrdersDep = Annotated[OrderService, from_state("orders")]


class TradeOrderIn(Camel):
    user_id: IdIn
    goods_id: IdIn
    goods_number: StrictInt
    goods_price: MoneyIn
    shipping_fee: MoneyIn
    order_amount: MoneyIn
    address: str = Field(min_length=1, max_length=255)
    coupon_id: IdIn | None = None
    money_paid: SignedMoneyIn = ZERO
    consignee: str | None = Field(default=None, max_length=255)


def _id(v: int | None) -> str | None:
    return None if v is None else str(v)


def order_json(o: Order) -> dict[str, Any]:
    return {
        "orderId": str(o.order_id), "userId": str(o.user_id), "orderStatus": o.order_status,
        "payStatus": o.pay_status, "shippingStatus": o.shipping_status, "address": o.address,
        "consignee": o.consignee, "goodsId": str(o.goods_id), "goodsNumber": o.goods_number,
        "goodsPrice": fmt(o.goods_price), "goodsAmount": fmt(o.goods_amount), "shippingFee": fmt(o.shipping_fee),
        "orderAmount": fmt(o.order_amount), "couponId": _id(o.coupon_id), "couponPaid": fmt(o.coupon_paid),
        "moneyPaid": fmt(o.money_paid), "payAmount": fmt(o.pay_amount), "addTime": iso(o.add_time),
        "confirmTime": iso(o.confirm_time), "payTime": iso(o.pay_time),
    }


@router.post("/order/confirm", tags=["orders"])
async def confirm(body: TradeOrderIn, user_id: UserIdDep, orders: OrdersDep) -> Envelope:
    forbid_unless(body.user_id, user_id)
    order = await orders.confirm_order(
        PlaceOrder(
            user_id=body.user_id, goods_id=body.goods_id, goods_number=body.goods_number,
            goods_price=body.goods_price, shipping_fee=body.shipping_fee, order_amount=body.order_amount,
            address=body.address, coupon_id=body.coupon_id, money_paid=body.money_paid, consignee=body.consignee,
        )
    )
    return ok(order_json(order))


@router.get("/order/{order_id}", tags=["orders"])
async def get_order(order_id: IdIn, user_id: UserIdDep, orders: OrdersDep) -> Envelope:
    order = await orders.find_order(order_id)
    forbid_unless(order.user_id, user_id)
    return ok(order_json(order))


@router.post("/order/{order_id}/cancel", tags=["orders"])
async def cancel(order_id: IdIn, user_id: UserIdDep, orders: OrdersDep) -> Envelope:
    return ok(order_json(await orders.cancel_order(order_id, user_id)))


@router.post("/order/{order_id}/refund", tags=["orders"])
async def refund(order_id: IdIn, user_id: UserIdDep, orders: OrdersDep) -> Envelope:
    return ok(order_json(await orders.refund_order(order_id, user_id)))


@router.get("/admin/orders/{order_id}", tags=["admin"], dependencies=[AdminDep])
async def admin_get_order(order_id: IdIn, orders: OrdersDep) -> Envelope:
    return ok(order_json(await orders.find_order(order_id)))
