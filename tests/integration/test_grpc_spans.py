"""The gRPC calls' spans, made by the shop's own client and server (infra/tracing.rpc_span): a
CLIENT span in the caller and a SERVER span in the callee, in one trace through the call's
metadata, named and attributed as OpenTelemetry's gRPC instrumentation names them, an error on
both sides; each side a process of its own (its own tracer provider), over a real grpc.aio server."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from shop.common.codes import ShopCode
from shop.common.errors import ShopError
from shop.common.ids import IdWorker
from shop.infra.rpc.client import GrpcClient
from shop.infra.rpc.server import serve
from shop.infra.tracing import SERVICE_ATTRIBUTE, Tracing
from shop.services.goods import rpc as goods_rpc
from shop.services.goods.contracts import CreateGoods
from shop.services.goods.handlers import GoodsHandlers
from tests.conftest import TlsFor
from tests.support import service_db

FIND = "/shop.v1.GoodsService/FindGoods"


@dataclass
class Wire:
    caller: InMemorySpanExporter  # the order process's spans
    callee: InMemorySpanExporter  # the goods process's
    caller_tracing: Tracing
    goods: GrpcClient
    goods_id: int


def traced(service: str) -> tuple[Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    return Tracing.start(f"shop-{service}", service, (SimpleSpanProcessor(exporter),)), exporter


@pytest.fixture
async def wire(tmp_path: Path, tls: TlsFor) -> AsyncIterator[Wire]:
    db = await service_db("goods", tmp_path)
    handlers = GoodsHandlers(db, IdWorker(1, 1))
    goods_id = await handlers.create_goods(CreateGoods("pen", 5, Decimal("1.00"), "a pen"))
    callee_tracing, callee = traced("goods")
    caller_tracing, caller = traced("order")
    server = await serve([(goods_rpc.SERVICE, handlers)], "127.0.0.1", 0, tls=tls("test-server"),
                         tracing=callee_tracing)
    client = GrpcClient(goods_rpc.SERVICE, f"127.0.0.1:{server.port}", 3.0, tls=tls("order"), tracing=caller_tracing)
    try:
        yield Wire(caller, callee, caller_tracing, client, goods_id)
    finally:
        await client.close()
        await server.stop(None)
        await db.close()


def only(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = [s for s in exporter.get_finished_spans() if s.name == name]
    assert len(found) == 1, [s.name for s in exporter.get_finished_spans()]
    return found[0]


async def test_a_call_is_a_client_span_and_a_server_span_in_one_trace(wire: Wire) -> None:
    with wire.caller_tracing.tracer.start_as_current_span("POST /order/confirm") as outer:
        goods = await wire.goods.find_goods(wire.goods_id)
    assert goods.goods_name == "pen"

    client, server = only(wire.caller, FIND), only(wire.callee, FIND)
    assert client.kind == SpanKind.CLIENT and server.kind == SpanKind.SERVER
    # The client's span is in the caller's trace, and the server's continues it across the wire.
    assert client.parent is not None and client.parent.span_id == outer.get_span_context().span_id
    assert server.context.trace_id == client.context.trace_id == outer.get_span_context().trace_id
    assert server.parent is not None and server.parent.span_id == client.context.span_id
    for span, service in ((client, "order"), (server, "goods")):
        assert span.attributes is not None
        assert dict(span.attributes) == {"rpc.system": "grpc", "rpc.service": "shop.v1.GoodsService",
                                         "rpc.method": "FindGoods", SERVICE_ATTRIBUTE: service}
        assert span.status.status_code == StatusCode.UNSET


async def test_a_refused_call_is_an_error_on_both_sides(wire: Wire) -> None:
    with pytest.raises(ShopError) as refused:
        await wire.goods.find_goods(wire.goods_id + 1)
    assert refused.value.code == ShopCode.SHOP_GOODS_NO_EXIST

    client, server = only(wire.caller, FIND), only(wire.callee, FIND)
    assert server.context.trace_id == client.context.trace_id  # a call outside any trace starts one
    assert client.parent is None and server.parent is not None
    for span in (client, server):
        assert span.status.status_code == StatusCode.ERROR
        assert [e.name for e in span.events] == ["exception"]
        assert span.events[0].attributes is not None
        assert span.events[0].attributes["exception.type"].endswith("ShopError")


async def test_a_caller_without_tracing_gets_a_server_span_of_its_own_trace(wire: Wire, tls: TlsFor) -> None:
    target = wire.goods.target
    address = await target.pick()
    async with GrpcClient(goods_rpc.SERVICE, address, 3.0, tls=tls("order")) as untraced:
        await untraced.find_goods(wire.goods_id)
    server = only(wire.callee, FIND)
    assert server.parent is None
    assert wire.caller.get_finished_spans() == ()


async def test_calls_sent_together_keep_each_its_own_trace(wire: Wire) -> None:
    """A batch (infra/rpc/batch.py) carries each call's traceparent: every server span continues
    its own caller's client span, a refusal is an error on its own spans only."""
    batching = GrpcClient(goods_rpc.SERVICE, wire.goods.target, 3.0, tls=wire.goods.tls,
                          tracing=wire.caller_tracing, in_flight=1, hold_s=60)
    try:
        async def order(n: int) -> object:
            with wire.caller_tracing.tracer.start_as_current_span(f"order {n}"):
                return await batching.find_goods(wire.goods_id + (n == 3))  # the fourth is refused

        results = await asyncio.gather(*(order(n) for n in range(5)), return_exceptions=True)
        assert batching.batches_sent == 1  # the first went alone, the four others together
    finally:
        await batching.close()
    assert isinstance(results[3], ShopError) and all(getattr(r, "goods_name", None) == "pen"
                                                     for i, r in enumerate(results) if i != 3)
    outers = {s.context.trace_id: s for s in wire.caller.get_finished_spans() if s.name.startswith("order ")}
    clients = [s for s in wire.caller.get_finished_spans() if s.name == FIND]
    servers = {s.context.trace_id: s for s in wire.callee.get_finished_spans() if s.name == FIND}
    assert len(outers) == len(clients) == len(servers) == 5  # five traces, one of each span in each
    for client in clients:
        outer, server = outers[client.context.trace_id], servers[client.context.trace_id]
        assert client.parent is not None and client.parent.span_id == outer.context.span_id
        assert server.parent is not None and server.parent.span_id == client.context.span_id
        refused = outer.name == "order 3"
        for span in (client, server):
            assert span.status.status_code == (StatusCode.ERROR if refused else StatusCode.UNSET), outer.name


async def test_without_an_exporter_the_trace_still_goes_across(tmp_path: Path, tls: TlsFor) -> None:
    """Two processes recording no span (no OTLP endpoint: Tracing.start with no processor): the callee
    works in the caller's trace all the same, so its log lines and the messages it writes carry the
    caller's trace id."""
    from opentelemetry import trace

    seen: list[int] = []

    class Watching(GoodsHandlers):
        async def find_goods(self, goods_id: int):  # type: ignore[no-untyped-def]
            seen.append(trace.get_current_span().get_span_context().trace_id)
            return await super().find_goods(goods_id)

    db = await service_db("goods", tmp_path)
    handlers = Watching(db, IdWorker(1, 1))
    goods_id = await handlers.create_goods(CreateGoods("pen", 5, Decimal("1.00"), "a pen"))
    callee_tracing, caller_tracing = Tracing.start("shop-goods", "goods"), Tracing.start("shop-order", "order")
    assert not callee_tracing.recording and not caller_tracing.recording
    server = await serve([(goods_rpc.SERVICE, handlers)], "127.0.0.1", 0, tls=tls("test-server"),
                         tracing=callee_tracing)
    client = GrpcClient(goods_rpc.SERVICE, f"127.0.0.1:{server.port}", 3.0, tls=tls("order"), tracing=caller_tracing)
    try:
        with caller_tracing.tracer.start_as_current_span("POST /order/confirm") as outer:
            assert (await client.find_goods(goods_id)).goods_name == "pen"
            assert trace.get_current_span() is outer  # the caller's context as it was
    finally:
        await client.close()
        await server.stop(None)
        await db.close()
    assert seen == [outer.get_span_context().trace_id] and seen[0] != 0
