"""The pay service on the wire: its gRPC method table, the converters, and its client."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from shop.infra.rpc.client import GrpcClient
from shop.infra.rpc.server import AUDIT_FACTS, Method, Service, method_table
from shop.infra.rpc.wire import build, money_in, money_out, opt, time_in_opt, time_out_opt
from shop.rpc.v1 import orders_pb2 as opb
from shop.rpc.v1 import orders_pb2_grpc as opb_grpc
from shop.services.pay.contracts import Notification, Payment, PayFacts


def payment_out(p: Payment) -> opb.Payment:
    return opb.Payment(
        pay_id=p.pay_id, order_id=p.order_id, user_id=p.user_id, pay_amount=money_out(p.pay_amount),
        is_paid=p.is_paid, trade_no=p.trade_no, paid_time=time_out_opt(p.paid_time), is_refunded=p.is_refunded,
    )


def payment_in(m: opb.Payment) -> Payment:
    return Payment(
        pay_id=m.pay_id, order_id=m.order_id, user_id=m.user_id, pay_amount=money_in(m.pay_amount),
        is_paid=m.is_paid, trade_no=opt(m, "trade_no"), paid_time=time_in_opt(m, "paid_time"),
        is_refunded=m.is_refunded,
    )


async def _create_payment(h: Any, r: opb.CreatePaymentRequest) -> opb.Payment:
    return payment_out(await h.create_payment(r.order_id, r.user_id, money_in(r.pay_amount)))


async def _find_payment(h: Any, r: opb.FindPaymentRequest) -> opb.Payment:
    return payment_out(await h.find_payment(r.pay_id))


async def _notify(h: Any, r: opb.NotifyRequest) -> opb.NotifyReply:
    n = Notification(timestamp=opt(r, "timestamp"), nonce=opt(r, "nonce"), signature=opt(r, "signature"), body=r.body)
    await h.notify(n)
    return opb.NotifyReply()


SERVICE = Service(
    "pay", "shop.v1.PayService",
    method_table(
        Method("CreatePayment", "create_payment", _create_payment, retry=False),
        Method("FindPayment", "find_payment", _find_payment, retry=True),
        Method("Notify", "notify", _notify, retry=True),
        AUDIT_FACTS,
    ),
    opb_grpc.PayServiceStub, opb_grpc.add_PayServiceServicer_to_server,
)


class PayClient(GrpcClient):
    """contracts.PayService over gRPC."""

    service = SERVICE

    async def create_payment(self, order_id: int, user_id: int, pay_amount: Decimal) -> Payment:
        req = build(lambda: opb.CreatePaymentRequest(
            order_id=order_id, user_id=user_id, pay_amount=money_out(pay_amount),
        ))
        return payment_in(await self._call("create_payment", req))

    async def find_payment(self, pay_id: int) -> Payment:
        return payment_in(await self._call("find_payment", build(lambda: opb.FindPaymentRequest(pay_id=pay_id))))

    async def notify(self, n: Notification) -> None:
        req = build(lambda: opb.NotifyRequest(timestamp=n.timestamp, nonce=n.nonce, signature=n.signature, body=n.body))
        await self._call("notify", req)

    async def audit_facts(self) -> PayFacts:
        return await self._facts(PayFacts)
