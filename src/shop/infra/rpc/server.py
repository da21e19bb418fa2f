"""The generic gRPC server: a service's methods on the wire (each service's rpc.py declares its
Service), the adapter from its handlers to the generated servicer, and serve()."""
from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message_factory import GetMessageClass

from shop.common.errors import ShopError
from shop.infra import metrics
from shop.infra.failures import as_shop_error
from shop.infra.faults import Faults
from shop.infra.rpc.admin import admin_handler
from shop.infra.rpc.errors import error_metadata, status_for
from shop.infra.rpc.wire import Call
from shop.infra.tls import Tls, refuse_unless
from shop.infra.tracing import CallSpan, Tracing, rpc_caller

log = logging.getLogger("shop.rpc.grpc")


@dataclass(frozen=True)
class Method:
    rpc: str  # the gRPC method's name, "FindUser"
    name: str  # the interface's method, "find_user"
    call: Call  # its request and reply, worked out from the interface's signature
    retry: bool  # safe to repeat: a read, or keyed by the order on the other side
    callers: frozenset[str] | None  # the roles that may call it (their certificates'), None: any shop process


class Service:
    """A service's interface (its contracts' Protocol) served over gRPC: each method of the
    interface is the gRPC method of the same name in CamelCase (find_user -> FindUser) of the
    schema's service, its request and reply as the schema has them. `retry` names the methods a
    client may repeat on another provider (see client.py); `callers`, the methods only some roles
    may call (with mutual TLS on: the role is the caller's certificate's), and which."""

    def __init__(
        self, name: str, interface: type, descriptor: ServiceDescriptor, stub: Callable[[grpc.aio.Channel], Any],
        add_to_server: Callable[[Any, grpc.aio.Server], None], *, retry: Collection[str],
        callers: Mapping[str, Collection[str]] | None = None,
    ) -> None:
        self.name = name  # "user": in logs
        self.full_name = descriptor.full_name  # "shop.v1.UserService": in the registry
        self.stub = stub
        self.add_to_server = add_to_server
        self.methods: dict[str, Method] = {}
        for attr, fn in inspect.getmembers(interface, inspect.isfunction):
            if attr.startswith("_"):
                continue
            rpc = "".join(w.capitalize() for w in attr.split("_"))
            m = descriptor.methods_by_name[rpc]  # a KeyError here: the schema lacks the method
            call = Call(fn, GetMessageClass(m.input_type), GetMessageClass(m.output_type))
            allowed = (callers or {}).get(attr)
            self.methods[attr] = Method(rpc, attr, call, retry=attr in retry,
                                        callers=None if allowed is None else frozenset(allowed))
        for what, names in (("retry", retry), ("callers", callers or {})):
            unknown = set(names) - set(self.methods)
            if unknown:
                raise ValueError(f"{name}: {what} names no method of the interface: {sorted(unknown)}")


def _servicer(service: Service, impl: object, authorize: bool, tracing: Tracing) -> SimpleNamespace:
    """The object the generated add_*_to_server expects: one coroutine per RPC, by its gRPC name."""
    rpcs: dict[str, Any] = {}
    for m in service.methods.values():
        rpcs[m.rpc] = _rpc(service, m, impl, m.callers if authorize else None, tracing)
    return SimpleNamespace(**rpcs)


def _rpc(service: Service, m: Method, impl: object, callers: frozenset[str] | None, tracing: Tracing
         ) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
    where = f"{service.name}.{m.name}"
    served = metrics.rpc_served(where)
    span = tracing.rpc_span(service.full_name, m.rpc, "server")

    async def rpc(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if callers is not None:
            await refuse_unless(context, callers, where)
        if served is not None:
            served()
        started = span.start(rpc_caller(context.invocation_metadata())) if span is not None else None
        error: BaseException | None = None
        refusal: ShopError | None = None
        try:
            result = await getattr(impl, m.name)(*m.call.arguments(request))
            return m.call.reply(result)
        except ShopError as exc:
            error = refusal = exc
        except asyncio.CancelledError as exc:
            error = exc
            raise  # the caller's deadline passed or it went away: nobody is waiting for a reply
        except Exception as exc:  # the boundary: only codes cross it, as through LocalClient
            error = refusal = as_shop_error(exc, where)
        finally:
            if started is not None:  # ended before the caller can hear of the call's end
                CallSpan.end(started, error)
        assert refusal is not None  # every other way out returned or raised
        await context.abort(status_for(refusal.code), refusal.message, trailing_metadata=error_metadata(refusal))

    rpc.__name__ = m.rpc
    return rpc


async def serve(
    exposed: Sequence[tuple[Service, object]], host: str = "127.0.0.1", port: int = 0, *,
    tls: Tls | None, faults: Faults | None = None, tracing: Tracing = Tracing.OFF,
) -> grpc.aio.Server:
    """Start a server exposing each (service, handlers object) pair and, given `faults`, the
    operator's AdminService (ping, fault injection) of this process.

    tls: mutual TLS (callers need a certificate from the shop's CA, and the methods a Service
    reserves for some roles check the caller's), or None for plain gRPC (SHOP_RPC_TLS=off: only to
    measure what TLS costs). Required, so that no server is left open by forgetting it.
    port 0 picks a free port; the one bound is `server.port`. Stop it with `await server.stop(grace)`.
    tracing: this process's, for a span around every call of the services (infra/tracing.py).
    """
    server = grpc.aio.server()
    for service, impl in exposed:
        service.add_to_server(_servicer(service, impl, authorize=tls is not None, tracing=tracing), server)
    if faults is not None:
        server.add_generic_rpc_handlers((admin_handler(faults, authorize=tls is not None),))
    address = f"{host}:{port}"
    bound = server.add_insecure_port(address) if tls is None else server.add_secure_port(
        address, tls.server_credentials())
    if not bound:  # older grpcio reports a failed bind as port 0 rather than raising
        raise OSError(f"cannot listen on {host}:{port}")
    server.port = bound
    await server.start()
    log.info("gRPC serving %s on %s:%d (%s)", sorted(s.name for s, _ in exposed), host, bound,
             "plain: SHOP_RPC_TLS=off" if tls is None else "mutual TLS")
    return server
