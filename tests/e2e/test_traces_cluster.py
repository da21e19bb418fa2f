"""Traces in the distributed mode: `shop cluster up` with OTEL_EXPORTER_OTLP_ENDPOINT pointed at an
OTLP/HTTP receiver this test serves; a failed order's trace holds spans from the processes of at
least four services, joined over HTTP, gRPC and RabbitMQ (the compensations' consumers included)."""
from __future__ import annotations

import gzip
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.cluster import Cluster
from tests.support import Api, order_json, quiet_api, until


@dataclass(frozen=True)
class Span:
    process: str  # the resource's service.name: shop-goods
    name: str
    trace_id: str
    attributes: dict[str, Any]


class Receiver:
    """An OTLP/HTTP trace receiver (POST /v1/traces, protobuf), keeping every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                receiver.add(ExportTraceServiceRequest.FromString(body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def add(self, request: ExportTraceServiceRequest) -> None:
        found = []
        for rs in request.resource_spans:
            process = next((a.value.string_value for a in rs.resource.attributes if a.key == "service.name"), "")
            for ss in rs.scope_spans:
                for s in ss.spans:
                    attributes = {a.key: a.value.string_value or a.value.int_value for a in s.attributes}
                    found.append(Span(process, s.name, s.trace_id.hex(), attributes))
        with self.lock:
            self.spans.extend(found)

    def trace(self, trace_id: str) -> list[Span]:
        with self.lock:
            return [s for s in self.spans if s.trace_id == trace_id]

    def find(self, **attributes: Any) -> list[Span]:
        with self.lock:
            return [s for s in self.spans if all(s.attributes.get(k) == v for k, v in attributes.items())]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()


@pytest.fixture(scope="module")
def traced_cluster(receiver: Receiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster("postgresql", tmp_path_factory.mktemp("traces-postgresql"))
    c.env.update(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url, OTEL_BSP_SCHEDULE_DELAY="200")
    with c.serving():
        yield c


@pytest.fixture
async def api(traced_cluster: Cluster) -> AsyncIterator[Api]:
    async with httpx.AsyncClient(base_url=traced_cluster.url, timeout=30.0) as c:
        yield Api(c, traced_cluster.admin_token)


async def test_cluster_a_failed_orders_trace_spans_four_service_processes(api: Api, receiver: Receiver) -> None:
    uid = await api.create_user("traced", "100.00")
    auth = await api.login("traced")
    gid, cid = await api.create_goods("5000.00", 10), await api.create_coupon(uid, "100.00")
    r = await api.c.post("/admin/faults", json={"point": "order.after_use_coupon", "action": "error", "times": 1},
                         headers=api.admin)
    assert r.status_code == 200, r.text
    failed = await api.confirm(auth, order_json(uid, gid, "5000.00", coupon_id=cid, money_paid="100.00"))
    assert failed.status_code == 503, failed.text
    order_id = failed.json()["data"]["orderId"]
    assert (await quiet_api(api))["consistent"]

    # The request that failed, its gRPC calls on both sides, and the cancel's publishing. Each process
    # exports its own spans in its own batches: wait until every one of them has arrived.
    expected = {("shop-web", "POST /order/confirm"), ("shop-web", "/shop.v1.OrderService/ConfirmOrder"),
                ("shop-order", "/shop.v1.OrderService/ConfirmOrder"),
                ("shop-goods", "/shop.v1.GoodsService/ReduceStock"), ("shop-order", "publish order.cancel")}

    async def compensated() -> list[Span] | None:
        handled = receiver.find(**{"shop.order_id": order_id, "shop.message.tag": "cancel"})
        trace_ids = {s.trace_id for s in handled}
        if len(trace_ids) != 1:
            return None
        trace = receiver.trace(trace_ids.pop())
        consumers = {s.process for s in trace if s.name == "process order.cancel"}
        names = {(s.process, s.name) for s in trace}
        return trace if {"shop-goods", "shop-coupon", "shop-user"} <= consumers and expected <= names else None

    trace = await until(compensated, 20.0, every_s=0.2)
    assert trace, sorted({(s.process, s.name) for s in receiver.find(**{"shop.order_id": order_id})})
    processes = {s.process for s in trace}
    assert len(processes & {"shop-order", "shop-goods", "shop-coupon", "shop-user", "shop-pay", "shop-log"}) >= 4, \
        processes
    assert {s.attributes.get("shop.service") for s in trace if s.process == "shop-goods"} == {"goods"}
