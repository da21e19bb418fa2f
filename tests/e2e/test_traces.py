"""Traces in the embedded mode (the cluster's, exported over OTLP, are in test_traces_cluster.py):
one trace per order across HTTP, in-process calls and messages; the trace id in the JSON logs; and
SHOP_TELEMETRY=off, which makes no span and no shop series."""
from __future__ import annotations

import io
import json
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shop.bootstrap import bootstrap
from shop.infra import logs
from shop.infra.tracing import SERVICE_ATTRIBUTE, Tracing, process_tracing
from tests.conftest import ADMIN, asgi_client, make_settings
from tests.support import Api, order_json, quiet_api, until

PARTICIPANTS = {"goods", "coupon", "user"}


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@asynccontextmanager
async def traced_shop(data_dir: Path, exporter: InMemorySpanExporter | None, **settings: Any) -> AsyncIterator[Api]:
    """The embedded shop over ASGI, its spans kept in `exporter` (none: as its settings say)."""
    tracing = Tracing.start("shop", "web", (SimpleSpanProcessor(exporter),)) if exporter is not None else None
    shop = bootstrap(make_settings(data_dir, **settings), tracing=tracing)
    await shop.start()
    try:
        async with asgi_client(shop) as c:
            yield Api(c, ADMIN)
    finally:
        await shop.stop()


@pytest.fixture
async def api(tmp_path: Path, spans: InMemorySpanExporter) -> AsyncIterator[Api]:
    async with traced_shop(tmp_path, spans) as a:
        yield a


async def _scene(api: Api) -> tuple[str, dict[str, str], str, str]:
    name = f"traces-{os.urandom(4).hex()}"
    uid = await api.create_user(name, "100.00")
    return uid, await api.login(name), await api.create_goods("5000.00", 10), await api.create_coupon(uid, "100.00")


def _request_trace(spans: InMemorySpanExporter, name: str) -> int | None:
    """The trace id of the (last) HTTP request span named `name`, e.g. "POST /order/confirm"."""
    found = [s for s in spans.get_finished_spans() if s.name == name and s.kind.name == "SERVER"]
    return found[-1].context.trace_id if found else None


def _in_trace(spans: InMemorySpanExporter, trace_id: int) -> list[ReadableSpan]:
    return [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]


def _handled(trace: list[ReadableSpan], topic_tag: str) -> set[str]:
    """The services whose consumer handled the message `topic_tag` ("order.cancel") in this trace."""
    return {str(s.attributes.get(SERVICE_ATTRIBUTE)) for s in trace if s.name == f"process {topic_tag}"}


async def test_embedded_a_failed_orders_compensations_are_in_its_trace(api: Api, spans: InMemorySpanExporter) -> None:
    uid, auth, gid, cid = await _scene(api)
    r = await api.c.post("/admin/faults", json={"point": "order.after_use_coupon", "action": "error", "times": 1},
                         headers=api.admin)
    assert r.status_code == 200, r.text
    failed = await api.confirm(auth, order_json(uid, gid, "5000.00", coupon_id=cid, money_paid="100.00"))
    assert failed.status_code == 503, failed.text
    order_id = failed.json()["data"]["orderId"]
    assert (await quiet_api(api))["consistent"]
    trace_id = _request_trace(spans, "POST /order/confirm")
    assert trace_id is not None

    async def compensated() -> list[ReadableSpan] | None:
        trace = _in_trace(spans, trace_id)
        return trace if PARTICIPANTS <= _handled(trace, "order.cancel") else None

    trace = await until(compensated, 10.0)
    assert trace, ("the cancel's handling is not in the request's trace",
                   _handled(_in_trace(spans, trace_id), "order.cancel"))
    services = {s.attributes.get(SERVICE_ATTRIBUTE) for s in trace}
    assert {"web", "order", *PARTICIPANTS} <= services, services
    # The saga's calls are spans named as their gRPC calls are, and the cancel was published in it.
    names = {s.name for s in trace}
    for name in ("/shop.v1.OrderService/ConfirmOrder", "/shop.v1.GoodsService/ReduceStock",
                 "/shop.v1.CouponService/UseCoupon", "publish order.cancel"):
        assert name in names, (name, sorted(names))
    reduce = next(s for s in trace if s.name == "/shop.v1.GoodsService/ReduceStock")
    assert reduce.attributes.get("rpc.service") == "shop.v1.GoodsService"
    assert reduce.attributes.get(SERVICE_ATTRIBUTE) == "goods"
    cancel = next(s for s in trace if s.name == "process order.cancel")
    assert cancel.attributes.get("shop.order_id") == order_id


async def test_embedded_a_payments_fan_out_is_in_the_notifications_trace(
        api: Api, spans: InMemorySpanExporter) -> None:
    uid, auth, gid, cid = await _scene(api)
    order = (await api.confirm(auth, order_json(uid, gid, "5000.00", coupon_id=cid, money_paid="100.00"))).json()
    r = await api.c.post("/pay/createPayment", json={"orderId": order["data"]["orderId"], "payAmount": "4800.00"},
                         headers=auth)
    assert r.status_code == 200, r.text
    assert (await api.c.post(f"/sandbox/pay/{r.json()['data']['payId']}")).status_code == 200
    assert (await quiet_api(api))["consistent"]

    async def fanned_out() -> list[ReadableSpan] | None:
        notified = _request_trace(spans, "POST /pay/callbackPayment")  # the sandbox notifies in a while
        if notified is None:
            return None
        trace = _in_trace(spans, notified)
        done = _handled(trace, "pay.paid") >= {"order"} and _handled(trace, "order.paid") >= {"user", "log"}
        return trace if done else None

    trace = await until(fanned_out, 10.0)
    assert trace, sorted((s.name, s.attributes.get(SERVICE_ATTRIBUTE)) for s in spans.get_finished_spans())
    assert {"web", "pay", "order", "user", "log"} <= {s.attributes.get(SERVICE_ATTRIBUTE) for s in trace}
    # The order placed before is a trace of its own: one trace per request that starts work.
    assert _request_trace(spans, "POST /order/confirm") != trace[0].context.trace_id


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """What the process's JSON log handler (SHOP_LOG_FORMAT=json) writes, for this test."""
    out = io.StringIO()
    handler = logs.handler("shop", "json", out)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield out
    finally:
        root.removeHandler(handler)


async def test_embedded_json_log_lines_carry_the_orders_trace_id(
        api: Api, spans: InMemorySpanExporter, json_log: io.StringIO) -> None:
    uid, auth, gid, _ = await _scene(api)
    for point in ("order.after_reduce_stock", "goods.on_order_cancel"):
        r = await api.c.post("/admin/faults", json={"point": point, "action": "error", "times": 1}, headers=api.admin)
        assert r.status_code == 200, r.text
    failed = await api.confirm(auth, order_json(uid, gid, "5000.00"))
    assert failed.status_code == 503, failed.text
    order_id = failed.json()["data"]["orderId"]
    assert (await quiet_api(api))["consistent"]  # the failed delivery was retried, and handled
    trace_id = format(_request_trace(spans, "POST /order/confirm") or 0, "032x")
    lines = [json.loads(line) for line in json_log.getvalue().splitlines() if line.strip()]
    about = [line for line in lines if line.get("orderId") == order_id]
    failure = [line for line in about if "goods-order-group failed" in line["message"]]
    assert failure, about
    assert all(line.get("traceId") == trace_id for line in failure), (trace_id, failure)


async def test_embedded_without_an_exporter_no_span_is_recorded_but_the_trace_ids_flow(
        tmp_path: Path, json_log: io.StringIO) -> None:
    # On, with no OTEL_EXPORTER_OTLP_ENDPOINT: nobody reads spans, so none is recorded (process_tracing
    # gives a provider that samples nothing), yet a failed order's log lines and messages carry one
    # trace id, the same in the consumer's lines as in the request's.
    tracing = process_tracing(True, "all", env={})
    assert tracing.on
    # Nor is a span minted for a call inside the process: the callee runs in its caller's context.
    assert tracing.local_call("goods", "shop.v1.GoodsService", "ReduceStock") is None
    shop = bootstrap(make_settings(tmp_path), tracing=tracing)
    await shop.start()
    try:
        async with asgi_client(shop) as c:
            api = Api(c, ADMIN)
            uid, auth, gid, _ = await _scene(api)
            for point in ("order.after_reduce_stock", "goods.on_order_cancel"):
                r = await api.c.post("/admin/faults", json={"point": point, "action": "error", "times": 1},
                                     headers=api.admin)
                assert r.status_code == 200, r.text
            failed = await api.confirm(auth, order_json(uid, gid, "5000.00"))
            assert failed.status_code == 503, failed.text
            order_id = failed.json()["data"]["orderId"]
            assert (await quiet_api(api))["consistent"]
    finally:
        await shop.stop()
    lines = [json.loads(line) for line in json_log.getvalue().splitlines() if line.strip()]
    failure = [line for line in lines
               if line.get("orderId") == order_id and "goods-order-group failed" in line["message"]]
    assert failure and {len(line.get("traceId", "")) for line in failure} == {32}, failure
    conn = sqlite3.connect(tmp_path / "order.db")
    try:
        traces = {row[0] for row in conn.execute("SELECT msg_trace FROM trade_mq_producer_temp WHERE msg_key = ?",
                                                 (order_id,))}
    finally:
        conn.close()
    # The message's traceparent names that trace, its sampled flag (bit 0) unset: the consumer did not
    # record either.
    assert {t.split("-")[1] for t in traces if t} == {failure[0]["traceId"]}, traces
    assert all(int(t.rsplit("-", 1)[1], 16) & 1 == 0 for t in traces if t), traces


async def test_embedded_telemetry_off_makes_no_span_and_no_shop_series(tmp_path: Path) -> None:
    async with traced_shop(tmp_path, None, telemetry="off") as api:
        uid, auth, gid, cid = await _scene(api)
        r = await api.c.post("/admin/faults", json={"point": "order.after_use_coupon", "action": "error", "times": 1},
                             headers=api.admin)
        assert r.status_code == 200, r.text
        failed = await api.confirm(auth, order_json(uid, gid, "5000.00", coupon_id=cid, money_paid="100.00"))
        assert failed.status_code == 503, failed.text
        assert (await quiet_api(api))["consistent"]  # the compensations work without telemetry
        r = await api.c.get("/metrics")
        assert r.status_code == 200
        assert "shop_" not in r.text, [line for line in r.text.splitlines() if "shop_" in line][:5]
    # No span was current while the order's messages were written: they carry no trace.
    conn = sqlite3.connect(tmp_path / "order.db")
    try:
        traces = [row[0] for row in conn.execute("SELECT msg_trace FROM trade_mq_producer_temp")]
    finally:
        conn.close()
    assert traces and traces == [None] * len(traces)
    # And back on: the next shop of this process counts again.
    async with traced_shop(tmp_path / "on", None) as api:
        await _scene(api)
        r = await api.c.get("/metrics")
        assert "shop_rpc_seconds" in r.text


async def test_embedded_a_malformed_traceparent_starts_a_trace_of_its_own(
        tmp_path: Path, spans: InMemorySpanExporter) -> None:
    """A message whose stored trace is garbage is still handled (in a trace of its own)."""
    from shop.infra.faults import Faults
    from shop.infra.messaging import Message, Subscription, consume

    handled: list[Message] = []

    class _Inbox:
        async def claim(self, uow: Any, group: str, msg: Message) -> bool:
            return True

    class _Db:
        @asynccontextmanager
        async def unit_of_work(self) -> AsyncIterator[Any]:
            class U:
                async def commit(self) -> None:
                    pass
            yield U()

    async def handle(uow: Any, msg: Message) -> None:
        handled.append(msg)

    sub = Subscription(group="goods-order-group", service="goods", topic="order", db=_Db(), inbox=_Inbox(),  # type: ignore[arg-type]
                       handlers={"cancel": handle})
    tracing = Tracing.start("shop", "web", (SimpleSpanProcessor(spans),))
    for bad in ("not-a-traceparent", "00-" + "0" * 32 + "-" + "0" * 16 + "-01", ""):
        await consume(sub, Message("order", "cancel", "1", {}, trace=bad), Faults(), tracing)
    assert len(handled) == 3
    done = [s for s in spans.get_finished_spans() if s.name == "process order.cancel"]
    assert len(done) == 3 and all(s.parent is None for s in done)


async def test_embedded_a_broker_file_from_before_traces_gets_their_column(tmp_path: Path) -> None:
    """The embedded broker's file is made by create_all, which leaves an old table as it is: the
    trace's column is added when the broker connects, and a message then keeps its trace."""
    from shop.infra.db import SqliteDatabase
    from shop.infra.faults import Faults
    from shop.infra.messaging import EmbeddedBroker, Message

    path = tmp_path / "broker.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE broker_delivery (delivery_id INTEGER PRIMARY KEY AUTOINCREMENT, msg_id VARCHAR(64) "
                 "NOT NULL, group_name VARCHAR(100) NOT NULL, msg_topic VARCHAR(100) NOT NULL, msg_tag VARCHAR(100) "
                 "NOT NULL, msg_key VARCHAR(100) NOT NULL, msg_body TEXT NOT NULL, attempts INTEGER NOT NULL, "
                 "next_at BIGINT NOT NULL, state VARCHAR(10) NOT NULL, last_error TEXT, create_time DATETIME NOT NULL, "
                 "CONSTRAINT uq_broker_delivery_msg_group UNIQUE (msg_id, group_name))")
    conn.commit()
    conn.close()
    broker = EmbeddedBroker(SqliteDatabase(str(path)), [("goods-order-group", "order", ("cancel",))], Faults())
    await broker.connect()
    try:
        trace = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
        await broker.publish(Message("order", "cancel", "7", {"orderId": "7"}, trace=trace))
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("SELECT msg_trace FROM broker_delivery").fetchall() == [(trace,)]
        finally:
            conn.close()
    finally:
        await broker.close()
