"""The order service on the wire: its gRPC method table, the converters, and its client."""
from __future__ import annotations

from typing import Any

from shop.infra.rpc.client import GrpcClient
from shop.infra.rpc.server import AUDIT_FACTS, Method, Service, method_table
from shop.infra.rpc.wire import build, money_in, money_out, opt, time_in, time_in_opt, time_out, time_out_opt
from shop.rpc.v1 import orders_pb2 as opb
from shop.rpc.v1 import orders_pb2_grpc as opb_grpc
from shop.services.order.contracts import Order, OrderFacts, PlaceOrder


def order_out(o: Order) -> opb.Order:
    return opb.Order(
        order_id=o.order_id, user_id=o.user_id, order_status=o.order_status, pay_status=o.pay_status,
        shipping_status=o.shipping_status, address=o.address, consignee=o.consignee, goods_id=o.goods_id,
        goods_number=o.goods_number, goods_price=money_out(o.goods_price), goods_amount=money_out(o.goods_amount),
        shipping_fee=money_out(o.shipping_fee), order_amount=money_out(o.order_amount), coupon_id=o.coupon_id,
        coupon_paid=money_out(o.coupon_paid), money_paid=money_out(o.money_paid), pay_amount=money_out(o.pay_amount),
        add_time=time_out(o.add_time), confirm_time=time_out_opt(o.confirm_time), pay_time=time_out_opt(o.pay_time),
    )


def order_in(m: opb.Order) -> Order:
    return Order(
        order_id=m.order_id, user_id=m.user_id, order_status=m.order_status, pay_status=m.pay_status,
        shipping_status=m.shipping_status, address=m.address, consignee=opt(m, "consignee"), goods_id=m.goods_id,
        goods_number=m.goods_number, goods_price=money_in(m.goods_price), goods_amount=money_in(m.goods_amount),
        shipping_fee=money_in(m.shipping_fee), order_amount=money_in(m.order_amount), coupon_id=opt(m, "coupon_id"),
        coupon_paid=money_in(m.coupon_paid), money_paid=money_in(m.money_paid), pay_amount=money_in(m.pay_amount),
        add_time=time_in(m.add_time), confirm_time=time_in_opt(m, "confirm_time"), pay_time=time_in_opt(m, "pay_time"),
    )


async def _confirm_order(h: Any, r: opb.ConfirmOrderRequest) -> opb.Order:
    cmd = PlaceOrder(
        user_id=r.user_id, goods_id=r.goods_id, goods_number=r.goods_number, goods_price=money_in(r.goods_price),
        shipping_fee=money_in(r.shipping_fee), order_amount=money_in(r.order_amount), address=r.address,
        coupon_id=opt(r, "coupon_id"), money_paid=money_in(r.money_paid or "0.00"), consignee=opt(r, "consignee"),
    )
    return order_out(await h.confirm_order(cmd))


async def _find_order(h: Any, r: opb.FindOrderRequest) -> opb.Order:
    return order_out(await h.find_order(r.order_id))


async def _cancel_order(h: Any, r: opb.CancelOrderRequest) -> opb.Order:
    return order_out(await h.cancel_order(r.order_id, r.user_id))


async def _refund_order(h: Any, r: opb.RefundOrderRequest) -> opb.Order:
    return order_out(await h.refund_order(r.order_id, r.user_id))


SERVICE = Service(
    "order", "shop.v1.OrderService",
    method_table(
        Method("ConfirmOrder", "confirm_order", _confirm_order, retry=False),
        Method("FindOrder", "find_order", _find_order, retry=True),
        Method("CancelOrder", "cancel_order", _cancel_order, retry=False),
        Method("RefundOrder", "refund_order", _refund_order, retry=False),
        AUDIT_FACTS,
    ),
    opb_grpc.OrderServiceStub, opb_grpc.add_OrderServiceServicer_to_server,
)


class OrderClient(GrpcClient):
    """contracts.OrderService over gRPC. Placing an order waits on the participants (and may settle a
    failure): give it a deadline to match. A refusal or failure keeps its data ({"orderId": ...})."""

    service = SERVICE

    async def confirm_order(self, cmd: PlaceOrder) -> Order:
        req = build(lambda: opb.ConfirmOrderRequest(
            user_id=cmd.user_id, goods_id=cmd.goods_id, goods_number=cmd.goods_number,
            goods_price=money_out(cmd.goods_price), shipping_fee=money_out(cmd.shipping_fee),
            order_amount=money_out(cmd.order_amount), address=cmd.address, coupon_id=cmd.coupon_id,
            money_paid=money_out(cmd.money_paid), consignee=cmd.consignee,
        ))
        return order_in(await self._call("confirm_order", req))

    async def find_order(self, order_id: int) -> Order:
        return order_in(await self._call("find_order", build(lambda: opb.FindOrderRequest(order_id=order_id))))

    async def cancel_order(self, order_id: int, user_id: int) -> Order:
        req = build(lambda: opb.CancelOrderRequest(order_id=order_id, user_id=user_id))
        return order_in(await self._call("cancel_order", req))

    async def refund_order(self, order_id: int, user_id: int) -> Order:
        req = build(lambda: opb.RefundOrderRequest(order_id=order_id, user_id=user_id))
        return order_in(await self._call("refund_order", req))

    async def audit_facts(self) -> OrderFacts:
        return await self._facts(OrderFacts)
