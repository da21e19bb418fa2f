"""The log service on the wire: its gRPC method table, the converters, and its client."""
from __future__ import annotations

from typing import Any

from shop.infra.rpc.client import GrpcClient
from shop.infra.rpc.server import AUDIT_FACTS, Method, Service, method_table
from shop.infra.rpc.wire import build, money_in, money_out, time_in, time_out
from shop.rpc.v1 import log_pb2 as lpb
from shop.rpc.v1 import log_pb2_grpc as lpb_grpc
from shop.services.log.contracts import LogFacts, PayLogEntry


def entry_out(e: PayLogEntry) -> lpb.PayLogEntry:
    return lpb.PayLogEntry(order_id=e.order_id, pay_id=e.pay_id, user_id=e.user_id,
                           pay_amount=money_out(e.pay_amount), log_time=time_out(e.log_time))


def entry_in(m: lpb.PayLogEntry) -> PayLogEntry:
    return PayLogEntry(order_id=m.order_id, pay_id=m.pay_id, user_id=m.user_id,
                       pay_amount=money_in(m.pay_amount), log_time=time_in(m.log_time))


async def _pay_log(h: Any, r: lpb.PayLogRequest) -> lpb.PayLogReply:
    return lpb.PayLogReply(entries=[entry_out(e) for e in await h.pay_log(r.order_id)])


SERVICE = Service(
    "log", "shop.v1.LogService",
    method_table(Method("PayLog", "pay_log", _pay_log, retry=True), AUDIT_FACTS),
    lpb_grpc.LogServiceStub, lpb_grpc.add_LogServiceServicer_to_server,
)


class LogClient(GrpcClient):
    """contracts.LogService over gRPC."""

    service = SERVICE

    async def pay_log(self, order_id: int) -> list[PayLogEntry]:
        reply = await self._call("pay_log", build(lambda: lpb.PayLogRequest(order_id=order_id)))
        return [entry_in(e) for e in reply.entries]

    async def audit_facts(self) -> LogFacts:
        return await self._facts(LogFacts)
