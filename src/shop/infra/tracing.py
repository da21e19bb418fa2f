"""Traces (OpenTelemetry): one trace per order, across HTTP, RPC and messages. Everything about
tracing is here; the rest of the shop is handed a `Tracing` (bootstrap builds one per process).

Where spans come from:
- HTTP and gRPC: the official instrumentations (FastAPI's on the app; gRPC's aio interceptors on
  the server and on every client channel).
- An in-process call (LocalClient, the embedded mode): a span named like the gRPC one
  ("/shop.v1.GoodsService/ReduceStock", rpc.service, rpc.method), so a trace has the same shape in
  both modes.
- A message: a span where the relay publishes it and one where each consumer group handles it.

How a message stays in its order's trace: the outbox row keeps the W3C `traceparent` of the span
that wrote it (its own column, see message.py); the relay hands it to the broker (a column of the
embedded broker's deliveries, an AMQP header on RabbitMQ) and each consumer's span continues that
trace. So a failed order's compensations, whether fired at once or by its deadline long after, sit
in the order's trace, and so do a payment notification's consequences in the notification's.

Which shop service a span ran in: every span gets `shop.service` when it starts, from SERVICE. A
process of the distributed mode is one service, its default; the embedded mode runs all of them
in one process, so SERVICE is set where work enters a service: a local call, a delivery, a relay.

SHOP_TELEMETRY=off: `Tracing.OFF`, no tracer provider: the tracer is OpenTelemetry's no-op one,
nothing is instrumented, no span is ever current, and messages carry no trace.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ClassVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from fastapi import FastAPI

    from shop.infra.messaging.message import Message

SERVICE: ContextVar[str | None] = ContextVar("shop_service", default=None)
SERVICE_ATTRIBUTE = "shop.service"
# Health checks and scrapes come every few seconds and are about no order: no trace for them.
UNTRACED_URLS = "/metrics,/healthz"

_W3C = TraceContextTextMapPropagator()


def traceparent() -> str | None:
    """The current span's context as a W3C traceparent, for a message about to be stored; None
    when no span is being recorded (telemetry off, or work outside any trace)."""
    if not trace.get_current_span().get_span_context().is_valid:
        return None  # the common case with telemetry off: no carrier, no formatting
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier.get("traceparent")


def _parent(trace_parent: str | None) -> otel_context.Context | None:
    """The context a stored traceparent names. A malformed one (a message from elsewhere, a header
    someone edited) names none: the work starts a trace of its own, it does not fail."""
    if not trace_parent:
        return None
    return _W3C.extract({"traceparent": trace_parent})


@contextlib.contextmanager
def in_trace_of(msg: Message) -> Iterator[None]:
    """Log lines written inside carry the trace of the work that wrote `msg` (a delivery's failure
    is logged outside the consumer's span, which ended with the error)."""
    parent = _parent(msg.trace)
    if parent is None:
        yield
        return
    token = otel_context.attach(parent)
    try:
        yield
    finally:
        otel_context.detach(token)


class _ServiceAttribute(SpanProcessor):
    """Sets shop.service on every span as it starts: the service the work runs in (SERVICE), else
    this process's."""

    def __init__(self, default: str) -> None:
        self.default = default

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        span.set_attribute(SERVICE_ATTRIBUTE, SERVICE.get() or self.default)

    def on_end(self, span: ReadableSpan) -> None:
        pass


class Tracing:
    """One process's tracing: its tracer provider, or none (Tracing.OFF)."""

    OFF: ClassVar[Tracing]

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self.provider = provider
        self.tracer: trace.Tracer = provider.get_tracer("shop") if provider is not None else trace.NoOpTracer()

    @property
    def on(self) -> bool:
        return self.provider is not None

    @classmethod
    def start(cls, service_name: str, service: str, processors: tuple[SpanProcessor, ...] = (),
              instance: str | None = None) -> Tracing:
        """A provider sampling every trace. service_name: the resource's `service.name`
        (shop-goods); service: shop.service where no service has been entered (the process's role,
        or "web" for the embedded front door). No processor, no export: spans are still made, so
        that the trace ids reach the logs and the next process."""
        attributes = {"service.name": service_name}
        if instance:
            attributes["service.instance.id"] = instance
        provider = TracerProvider(resource=Resource.create(attributes), sampler=ALWAYS_ON)
        provider.add_span_processor(_ServiceAttribute(service))
        for p in processors:
            provider.add_span_processor(p)
        return cls(provider)

    async def shutdown(self) -> None:
        """Export what is still batched (a stopping process's last spans), then stop."""
        if self.provider is not None:
            self.provider.shutdown()

    # -- the official instrumentations ---------------------------------------------------------

    def instrument(self, app: FastAPI) -> None:
        if self.provider is None:
            return
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
        from opentelemetry.metrics import NoOpMeterProvider

        # The ASGI receive/send spans would triple the spans of every request and say nothing an
        # order's trace needs; the shop's metrics are Prometheus', not OpenTelemetry's.
        FastAPIInstrumentor.instrument_app(app, tracer_provider=self.provider, meter_provider=NoOpMeterProvider(),
                                           excluded_urls=UNTRACED_URLS, exclude_spans=["receive", "send"])

    def grpc_server_interceptors(self) -> list[Any]:
        if self.provider is None:
            return []
        from opentelemetry.instrumentation.grpc import aio_server_interceptor

        return [aio_server_interceptor(tracer_provider=self.provider)]

    def grpc_client_interceptors(self) -> list[Any]:
        if self.provider is None:
            return []
        from opentelemetry.instrumentation.grpc import aio_client_interceptors

        return list(aio_client_interceptors(tracer_provider=self.provider))

    # -- the shop's own spans ------------------------------------------------------------------

    def local_call(self, service: str, rpc_service: str, rpc_method: str) -> _LocalCall | None:
        """What a LocalClient method opens around each call (None: tracing off). Built once per
        method: the name and attributes are the gRPC instrumentation's, computed here once."""
        if self.provider is None:
            return None
        return _LocalCall(self.tracer, service, f"/{rpc_service}/{rpc_method}",
                          {"rpc.system": "local", "rpc.service": rpc_service, "rpc.method": rpc_method})

    @contextlib.contextmanager
    def publishing(self, service: str, msg: Message) -> Iterator[None]:
        """Around the relay's sending of one outbox row: a span in the trace that wrote it."""
        if self.provider is None:
            yield
            return
        with self._message_span(service, msg, "publish", SpanKind.PRODUCER, {}):
            yield

    @contextlib.contextmanager
    def consuming(self, service: str, group: str, msg: Message) -> Iterator[None]:
        """Around one delivery's handling: a span in the trace that wrote the message."""
        if self.provider is None:
            yield
            return
        with self._message_span(service, msg, "process", SpanKind.CONSUMER, {"messaging.consumer.group.name": group}):
            yield

    @contextlib.contextmanager
    def _message_span(self, service: str, msg: Message, operation: str, kind: SpanKind,
                      more: Mapping[str, str]) -> Iterator[None]:
        token = SERVICE.set(service)
        try:
            with self.tracer.start_as_current_span(
                f"{operation} {msg.topic}.{msg.tag}", context=_parent(msg.trace), kind=kind,
                attributes={"messaging.operation.type": operation, "messaging.destination.name": msg.topic,
                            "shop.message.tag": msg.tag, "messaging.message.id": msg.msg_id,
                            "shop.order_id": msg.key, **more},
            ):
                yield
        finally:
            SERVICE.reset(token)


Tracing.OFF = Tracing(None)


class _LocalCall:
    """One in-process call's span, entering the callee's service (see LocalClient)."""

    __slots__ = ("tracer", "service", "name", "attributes")

    def __init__(self, tracer: trace.Tracer, service: str, name: str, attributes: dict[str, str]) -> None:
        self.tracer = tracer
        self.service = service
        self.name = name
        self.attributes = attributes

    @contextlib.contextmanager
    def span(self) -> Iterator[None]:
        token = SERVICE.set(self.service)
        try:
            with self.tracer.start_as_current_span(self.name, kind=SpanKind.SERVER, attributes=self.attributes):
                yield
        finally:
            SERVICE.reset(token)


def process_tracing(on: bool, role: str, env: Mapping[str, str] = os.environ) -> Tracing:
    """This process's tracing: off, or every trace sampled and, when OTEL_EXPORTER_OTLP_ENDPOINT
    (or its traces-only variant) is set, exported over OTLP/HTTP in batches. The exporter and the
    batching read the SDK's own OTEL_* variables (endpoint, headers, OTEL_BSP_SCHEDULE_DELAY, ...)."""
    if not on:
        return Tracing.OFF
    processors: tuple[SpanProcessor, ...] = ()
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        processors = (BatchSpanProcessor(OTLPSpanExporter()),)
    embedded = role == "all"
    return Tracing.start("shop" if embedded else f"shop-{role}", "web" if embedded else role, processors,
                         instance=env.get("SHOP_PROCESS_NAME"))
