"""The operator's service: every process of the distributed shop serves it.

Fault injection is per process (faults live in memory where their points are), so the front door
arms a fault in every process through this service. It carries small JSON documents: a schema
would add nothing, and it keeps the service out of the public protobuf contract."""
from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import orjson

from shop.infra.faults import Faults

ADMIN_SERVICE = "shop.v1.AdminService"


def admin_handler(faults: Faults) -> grpc.GenericRpcHandler:
    async def ping(request: dict[str, Any], context: grpc.aio.ServicerContext) -> dict[str, Any]:
        return {"pid": os.getpid()}

    async def arm_fault(request: dict[str, Any], context: grpc.aio.ServicerContext) -> dict[str, Any]:
        try:
            faults.arm(request["point"], request["action"], request.get("times"), int(request.get("delayMs", 0)))
        except (KeyError, TypeError, ValueError) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad fault: {exc}")
        return {}

    async def clear_faults(request: dict[str, Any], context: grpc.aio.ServicerContext) -> dict[str, Any]:
        faults.clear()
        return {}

    def unary(fn: Callable[..., Awaitable[dict[str, Any]]]) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(fn, request_deserializer=orjson.loads,
                                                   response_serializer=orjson.dumps)

    return grpc.method_handlers_generic_handler(ADMIN_SERVICE, {
        "Ping": unary(ping), "ArmFault": unary(arm_fault), "ClearFaults": unary(clear_faults),
    })


async def admin_call(address: str, method: str, body: dict[str, Any], timeout_s: float = 2.0) -> dict[str, Any]:
    """One call of a process's AdminService (rare: a channel for the call)."""
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(f"/{ADMIN_SERVICE}/{method}", request_serializer=orjson.dumps,
                                   response_deserializer=orjson.loads)
        return await call(body, timeout=timeout_s)
