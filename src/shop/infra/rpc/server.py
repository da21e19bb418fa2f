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
from shop.infra.rpc.errors import error_metadata, error_result, status_for
from shop.infra.rpc.wire import Call
from shop.infra.tls import Tls, refuse_unless
from shop.infra.tracing import CallSpan, Tracing, rpc_caller
from shop.rpc.v1 import batch_pb2

log = logging.getLogger("shop.rpc.grpc")


@dataclass(frozen=True)
class Method:
    rpc: str  # the gRPC method's name, "FindUser"
    path: str  # its gRPC path, "/shop.v1.UserService/FindUser"
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
            self.methods[attr] = Method(rpc, f"/{self.full_name}/{rpc}", attr, call, retry=attr in retry,
                                        callers=None if allowed is None else frozenset(allowed))
        for what, names in (("retry", retry), ("callers", callers or {})):
            unknown = set(names) - set(self.methods)
            if unknown:
                raise ValueError(f"{name}: {what} names no method of the interface: {sorted(unknown)}")


@dataclass(frozen=True)
class Handled:
    """One method of a service as this process handles it, alone (its own gRPC call) or as one item
    of a batch (infra/rpc/batch.py): `handle(request, metadata)` answers the reply, or raises the
    ShopError the caller is to get, its span ended first."""
    where: str  # "goods.reduce_stock": in logs and refusals
    method: Method
    callers: frozenset[str] | None  # the roles that may call it; None: any (or TLS off: nobody checked)
    handle: Callable[[Any, Sequence[tuple[str, Any]] | None], Awaitable[Any]]


def handled(exposed: Sequence[tuple[Service, object]], authorize: bool, tracing: Tracing) -> dict[str, Handled]:
    """Every method of the exposed services, by gRPC path."""
    return {m.path: _handled(service, m, impl, authorize, tracing)
            for service, impl in exposed for m in service.methods.values()}


def _handled(service: Service, m: Method, impl: object, authorize: bool, tracing: Tracing) -> Handled:
    where = f"{service.name}.{m.name}"
    served = metrics.rpc_served(where)
    span = tracing.rpc_span(service.full_name, m.rpc, "server")

    async def handle(request: Any, metadata: Sequence[tuple[str, Any]] | None) -> Any:
        if served is not None:
            served()
        started = span.start(rpc_caller(metadata)) if span is not None else None
        error: BaseException | None = None
        try:
            return m.call.reply(await getattr(impl, m.name)(*m.call.arguments(request)))
        except (ShopError, asyncio.CancelledError) as exc:
            # Cancelled: the caller's deadline passed or it went away, nobody is waiting for a reply.
            error = exc
            raise
        except Exception as exc:  # the boundary: only codes cross it, as through LocalClient
            error = as_shop_error(exc, where)
            raise error from None
        finally:
            if started is not None:  # ended before the caller can hear of the call's end
                CallSpan.end(started, error)

    return Handled(where, m, m.callers if authorize else None, handle)


def _servicer(service: Service, handlers: Mapping[str, Handled]) -> SimpleNamespace:
    """The object the generated add_*_to_server expects: one coroutine per RPC, by its gRPC name."""
    return SimpleNamespace(**{m.rpc: _rpc(handlers[m.path]) for m in service.methods.values()})


def _rpc(h: Handled) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
    async def rpc(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if h.callers is not None:
            await refuse_unless(context, h.callers, h.where)
        try:
            return await h.handle(request, context.invocation_metadata())
        except ShopError as refusal:
            await context.abort(status_for(refusal.code), refusal.message,
                                trailing_metadata=error_metadata(refusal))

    rpc.__name__ = h.method.rpc
    return rpc


BATCH_PATH = "/shop.v1.BatchService/Call"


def _batch_handler(handlers: Mapping[str, Handled]) -> grpc.GenericRpcHandler:
    """BatchService.Call: the items of a batch (proto/shop/v1/batch.proto) handled at once, each as
    if it had come alone (its own span, its own context, its own refusal), answered in their order.

    The caller's role is checked for every item before any is handled: a batch comes from one
    process, and one that asks for a method its role never calls is refused whole, as a lone call
    would be. A method this process does not serve refuses the batch (UNIMPLEMENTED, as for a lone
    call), before anything is handled."""

    async def call(batch: Any, context: grpc.aio.ServicerContext) -> Any:
        items = []
        for item in batch.items:
            h = handlers.get(item.method)
            if h is None:
                await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"no method {item.method} here")
                raise AssertionError("abort raises")
            if h.callers is not None:
                await refuse_unless(context, h.callers, h.where)
            items.append((h, item))
        results = await asyncio.gather(*(_one(h, item) for h, item in items))
        return batch_pb2.BatchResults(results=results)

    async def _one(h: Handled, item: Any) -> Any:
        request = h.method.call.request_cls.FromString(item.request)
        try:
            reply = await h.handle(request, (("traceparent", item.traceparent),) if item.traceparent else None)
        except ShopError as refusal:
            return batch_pb2.BatchResult(**error_result(refusal))
        return batch_pb2.BatchResult(reply=reply.SerializeToString())

    return grpc.method_handlers_generic_handler("shop.v1.BatchService", {
        "Call": grpc.unary_unary_rpc_method_handler(
            call, request_deserializer=batch_pb2.Batch.FromString,
            response_serializer=batch_pb2.BatchResults.SerializeToString),
    })


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
    handlers = handled(exposed, authorize=tls is not None, tracing=tracing)
    for service, _ in exposed:
        service.add_to_server(_servicer(service, handlers), server)
    server.add_generic_rpc_handlers((_batch_handler(handlers),))
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
