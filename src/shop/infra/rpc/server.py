"""The generic gRPC server: a service's method table (each service's rpc.py declares its own),
the adapter from handlers to the generated servicer, and serve()."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import grpc

from shop.common.errors import ShopError
from shop.infra.faults import Faults
from shop.infra.rpc.admin import admin_handler
from shop.infra.rpc.errors import error_metadata, status_for
from shop.infra.rpc.wire import facts_out
from shop.rpc.v1 import facts_pb2

log = logging.getLogger("shop.rpc.grpc")


@dataclass(frozen=True, slots=True)
class Method:
    rpc: str  # the gRPC method's name, "FindUser"
    name: str  # the contract's method, "find_user"
    serve: Callable[[Any, Any], Awaitable[Any]]  # (handler object, request message) -> reply message
    retry: bool  # safe to repeat: a read, or keyed by the order on the other side


@dataclass(frozen=True, slots=True)
class Service:
    name: str  # "user": in logs
    full_name: str  # "shop.v1.UserService"
    methods: dict[str, Method]  # by contract name
    stub: Callable[[grpc.aio.Channel], Any]
    add_to_server: Callable[[Any, grpc.aio.Server], None]


def _servicer(service: Service, impl: object) -> SimpleNamespace:
    """The object the generated add_*_to_server expects: one coroutine per RPC, by its gRPC name."""
    rpcs: dict[str, Any] = {}
    for m in service.methods.values():
        rpcs[m.rpc] = _rpc(service, m, impl)
    return SimpleNamespace(**rpcs)


def _rpc(service: Service, m: Method, impl: object) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
    where = f"{service.name}.{m.name}"

    async def rpc(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await m.serve(impl, request)
        except ShopError as exc:
            await context.abort(status_for(exc.code), exc.message, trailing_metadata=error_metadata(exc))
        except asyncio.CancelledError:
            raise  # the caller's deadline passed or it went away: nobody is waiting for a reply
        except Exception as exc:  # the boundary: only codes cross it
            log.exception("%s failed", where)
            # No shop-code: the client makes it ServiceUnavailable, as LocalClient does.
            await context.abort(grpc.StatusCode.INTERNAL, f"{where} failed: {exc.__class__.__name__}")

    rpc.__name__ = m.rpc
    return rpc


async def serve(
    exposed: Sequence[tuple[Service, object]], host: str = "127.0.0.1", port: int = 0, *,
    faults: Faults | None = None,
) -> grpc.aio.Server:
    """Start a server exposing each (service, handlers object) pair and, given `faults`, the
    operator's AdminService (ping, fault injection) of this process.

    port 0 picks a free port; the one bound is `server.port`. Stop it with `await server.stop(grace)`.
    """
    server = grpc.aio.server()
    for service, impl in exposed:
        service.add_to_server(_servicer(service, impl), server)
    if faults is not None:
        server.add_generic_rpc_handlers((admin_handler(faults),))
    bound = server.add_insecure_port(f"{host}:{port}")
    if not bound:  # older grpcio reports a failed bind as port 0 rather than raising
        raise OSError(f"cannot listen on {host}:{port}")
    server.port = bound  # type: ignore[attr-defined]
    await server.start()
    log.info("gRPC serving %s on %s:%d", sorted(s.name for s, _ in exposed), host, bound)
    return server


def method_table(*methods: Method) -> dict[str, Method]:
    return {m.name: m for m in methods}


async def _audit_facts(h: Any, r: facts_pb2.AuditFactsRequest) -> facts_pb2.AuditFactsReply:
    return facts_pb2.AuditFactsReply(json=facts_out(await h.audit_facts()))


# Every service reports its facts to the operator's audit the same way (a read: safe to repeat).
AUDIT_FACTS = Method("AuditFacts", "audit_facts", _audit_facts, retry=True)
