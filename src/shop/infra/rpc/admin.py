"""The operator's service: every process of the distributed shop serves it.

Fault injection is per process (faults live in memory where their points are), so the front door
arms a fault in every process through this service. It carries small JSON documents: a schema
would add nothing, and it keeps the service out of the public protobuf contract."""
from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import orjson

from shop.common.errors import ServiceUnavailable
from shop.infra.faults import Faults
from shop.infra.rpc.errors import never_connected
from shop.infra.tls import Tls, open_channel, refuse_unless, server_name

ADMIN_SERVICE = "shop.v1.AdminService"
# The roles that act for the operator: the front door that serves /admin, and the operator's own
# tools. They alone may arm and clear faults (a crash among them; ping is any shop process's) and
# call a service's operator-only methods (a restock).
ADMIN_CALLERS = frozenset({"web", "admin"})
FAULT_CALLERS = ADMIN_CALLERS


def admin_handler(faults: Faults, *, authorize: bool) -> grpc.GenericRpcHandler:
    """authorize: check the caller's role (mutual TLS on); without TLS there is no role to check."""
    async def ping(request: dict[str, Any], context: grpc.aio.ServicerContext) -> dict[str, Any]:
        return {"pid": os.getpid()}

    async def arm_fault(request: dict[str, Any], context: grpc.aio.ServicerContext) -> dict[str, Any]:
        if authorize:
            await refuse_unless(context, FAULT_CALLERS, "AdminService.ArmFault")
        try:
            faults.arm(request["point"], request["action"], request.get("times"), int(request.get("delayMs", 0)))
        except (KeyError, TypeError, ValueError) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad fault: {exc}")
        return {}

    async def clear_faults(request: dict[str, Any], context: grpc.aio.ServicerContext) -> dict[str, Any]:
        if authorize:
            await refuse_unless(context, FAULT_CALLERS, "AdminService.ClearFaults")
        faults.clear()
        return {}

    def unary(fn: Callable[..., Awaitable[dict[str, Any]]]) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(fn, request_deserializer=orjson.loads,
                                                   response_serializer=orjson.dumps)

    return grpc.method_handlers_generic_handler(ADMIN_SERVICE, {
        "Ping": unary(ping), "ArmFault": unary(arm_fault), "ClearFaults": unary(clear_faults),
    })


async def admin_call(address: str, method: str, body: dict[str, Any], tls: Tls | None,
                     timeout_s: float = 2.0) -> dict[str, Any]:
    """One call of a process's AdminService (rare: a channel for the call). Any shop process may
    serve it: the server's certificate need only be the shop's."""
    async with open_channel(address, tls, server_name()) as channel:
        call = channel.unary_unary(f"/{ADMIN_SERVICE}/{method}", request_serializer=orjson.dumps,
                                   response_deserializer=orjson.loads)
        return await call(body, timeout=timeout_s)


@dataclass(frozen=True)
class FanOut:
    """Where a call to every process went: the addresses that answered, and those skipped."""

    reached: list[str]
    skipped: list[dict[str, str]]  # {"address", "reason"}


async def every_process(addresses: Sequence[str], method: str, body: dict[str, Any], tls: Tls | None) -> FanOut:
    """Call `method` on every process at once. One that refuses the connection is skipped, and said
    so: a process that just crashed keeps its registry node until its session expires (a few
    seconds), and has nothing to arm. Any other failure (no answer in time, an error) is
    ServiceUnavailable: that process may be alive, and a fault armed everywhere but there would
    mislead whoever relies on it. So is a call that reached no process at all."""
    results = await asyncio.gather(*(admin_call(a, method, body, tls) for a in addresses), return_exceptions=True)
    reached, skipped, failed = [], [], []
    for address, r in zip(addresses, results, strict=True):
        if not isinstance(r, BaseException):
            reached.append(address)
        elif isinstance(r, grpc.aio.AioRpcError) and never_connected(r):
            skipped.append({"address": address, "reason": f"could not connect: {r.details()}"})
        else:
            failed.append(f"{address}: {r!r}")
    if failed:
        raise ServiceUnavailable(f"{method} did not reach every process: {'; '.join(failed)}")
    if skipped and not reached:
        raise ServiceUnavailable(f"{method} reached no process: "
                                 + "; ".join(f"{s['address']} {s['reason']}" for s in skipped))
    return FanOut(reached, skipped)
