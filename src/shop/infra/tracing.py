"""Traces (OpenTelemetry): one trace per order, across HTTP, RPC and messages. Everything about
tracing is here; the rest of the shop is handed a `Tracing` (bootstrap builds one per process).

Where spans come from:
- HTTP: a lean ASGI middleware of our own (HttpSpans: why not FastAPI's instrumentation is there).
- gRPC: a CLIENT span in the caller and a SERVER span in the callee, made by the shop's own client
  and server (infra/rpc), named and attributed as OpenTelemetry's gRPC instrumentation names them
  ("/shop.v1.GoodsService/ReduceStock", rpc.system, rpc.service, rpc.method); the caller's
  traceparent travels in the call's metadata (why not that instrumentation: `rpc_span`).
- An in-process call (LocalClient, the embedded mode): a SERVER span named like the gRPC one, so a
  trace has the same shape in both modes.
- A message: a span where the relay publishes it and one where each consumer group handles it.

How a message stays in its order's trace: the outbox row keeps the W3C `traceparent` of the span
that wrote it (its own column, see message.py); the relay hands it to the broker (a column of the
embedded broker's deliveries, an AMQP header on RabbitMQ) and each consumer's span continues that
trace. So a failed order's compensations, whether fired at once or by its deadline long after, sit
in the order's trace, and so do a payment notification's consequences in the notification's.

Which shop service a span ran in: `shop.service`, given by whoever makes the span, since it knows:
a local call's is the callee's, a delivery's its group's service, a relay's its own, an HTTP
request's the front door's (`web`), a gRPC call's its process's (in the distributed mode a process
is one service).

SHOP_TELEMETRY=off: `Tracing.OFF`, no tracer provider: the tracer is OpenTelemetry's no-op one,
nothing is instrumented, no span is ever current, and messages carry no trace.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from fastapi import FastAPI

    from shop.infra.messaging.message import Message

T = TypeVar("T")
SERVICE_ATTRIBUTE = "shop.service"
# Health checks and scrapes come every few seconds and are about no order: no trace for them.
UNTRACED_PATHS = frozenset({"/metrics", "/healthz"})

_W3C = TraceContextTextMapPropagator()


def traceparent() -> str | None:
    """The current span's context as a W3C traceparent, for a message about to be stored; None
    when no span is being recorded (telemetry off, or work outside any trace)."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    # W3C trace context, version 00, written here rather than through the propagator's inject (a
    # carrier, a getter, a regex check of our own ids): it runs in every order's transaction.
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"


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


class Tracing:
    """One process's tracing: its tracer provider, or none (Tracing.OFF)."""

    OFF: ClassVar[Tracing]

    def __init__(self, provider: TracerProvider | None = None, service: str = "web") -> None:
        self.provider = provider
        self.service = service  # shop.service of this process's HTTP requests
        # False: no span is kept (no exporter, or OTEL_TRACES_SAMPLER=always_off), only the ids carried.
        self.recording = provider is not None and provider.sampler is not ALWAYS_OFF
        self.tracer: trace.Tracer = provider.get_tracer("shop") if provider is not None else trace.NoOpTracer()

    @property
    def on(self) -> bool:
        return self.provider is not None

    @classmethod
    def start(cls, service_name: str, service: str, processors: tuple[SpanProcessor, ...] = (),
              instance: str | None = None) -> Tracing:
        """A provider sampling every trace, unless OTEL_TRACES_SAMPLER says otherwise (the SDK's
        own variable; its default, parentbased_always_on, samples every trace a caller has not
        decided about; parentbased_traceidratio with OTEL_TRACES_SAMPLER_ARG=0.1 records a tenth
        of the orders, and the cost of tracing with them: see docs/operations.md).
        service_name: the resource's `service.name` (shop-goods); service: the process's
        shop.service (its role, or "web" for the embedded front door).
        No processor, no export: then no span is recorded (a span nobody reads costs ~30 us of
        CPU here, a twentieth of an order for the few an order makes), but each still gets its ids,
        so that the trace ids reach the logs and the next process."""
        attributes = {"service.name": service_name}
        if instance:
            attributes["service.instance.id"] = instance
        if not processors:
            provider = TracerProvider(resource=Resource.create(attributes), sampler=ALWAYS_OFF)
            return cls(provider, service)
        provider = TracerProvider(resource=Resource.create(attributes))
        for p in processors:
            provider.add_span_processor(p)
        return cls(provider, service)

    async def shutdown(self) -> None:
        """Export what is still batched (a stopping process's last spans), then stop."""
        if self.provider is not None:
            self.provider.shutdown()

    # -- HTTP and gRPC ----------------------------------------------------------------------------

    def instrument(self, app: FastAPI) -> None:
        """A SERVER span per HTTP request (HttpSpans), continuing the caller's trace if it sent one."""
        if self.provider is not None:
            app.add_middleware(HttpSpans, tracer=self.tracer, service=self.service)

    # -- the shop's own spans ------------------------------------------------------------------

    def local_call(self, service: str, rpc_service: str, rpc_method: str) -> CallSpan | None:
        """What a LocalClient method opens around each call (None: tracing off), in the callee's
        service. Built once per method: the name and attributes are computed here once.
        None too when no span is recorded: in one process the callee runs in its caller's context
        already, so its span would only mint a span id that nothing reads (the logs and the messages
        carry the trace id, the request's), for ~15 us of the event loop per call, 4-5 an order."""
        if self.provider is None or not self.recording:
            return None
        return CallSpan(self.tracer, f"/{rpc_service}/{rpc_method}", SpanKind.SERVER,
                        {"rpc.service": rpc_service, "rpc.method": rpc_method, SERVICE_ATTRIBUTE: service})

    def rpc_span(self, rpc_service: str, rpc_method: str, side: Literal["client", "server"]) -> CallSpan | None:
        """What the gRPC client or server opens around each call of one method (None: tracing off),
        in this process's service. The client sends its span's traceparent in the call's metadata
        (`rpc_metadata`), the server continues it (`rpc_caller`).

        Why not opentelemetry-instrumentation-grpc's aio interceptors: any interceptor puts grpc.aio's
        intercepted-call machinery (its own task and several awaits per call) under every call, on
        both sides. Measured on the cluster, paired (bench/cpu_per_process.py, wrk -c64, three
        pairs): 317-349 orders/s and 5.5-6.0 ms of CPU per order over all processes with them,
        343-385 and 5.0-5.6 with these spans."""
        if self.provider is None:
            return None
        return CallSpan(self.tracer, f"/{rpc_service}/{rpc_method}",
                        SpanKind.CLIENT if side == "client" else SpanKind.SERVER,
                        {"rpc.system": "grpc", "rpc.service": rpc_service, "rpc.method": rpc_method,
                         SERVICE_ATTRIBUTE: self.service})

    @contextlib.contextmanager
    def publishing(self, service: str, msgs: Sequence[Message]) -> Iterator[None]:
        """Around the relay's sending of outbox rows (in one write): a span each, in the trace that
        wrote it."""
        if self.provider is None:
            yield
            return
        with contextlib.ExitStack() as spans:
            for msg in msgs:  # each span's parent is its message's trace, so their nesting is moot
                spans.enter_context(self._message_span(service, msg, "publish", SpanKind.PRODUCER, {}))
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
        with self.tracer.start_as_current_span(
            f"{operation} {msg.topic}.{msg.tag}", context=_parent(msg.trace), kind=kind,
            attributes={"messaging.operation.type": operation, "messaging.destination.name": msg.topic,
                        "shop.message.tag": msg.tag, "messaging.message.id": msg.msg_id,
                        "shop.order_id": msg.key, SERVICE_ATTRIBUTE: service, **more},
        ):
            yield


Tracing.OFF = Tracing(None)


class HttpSpans:
    """ASGI middleware: a SERVER span per HTTP request, named `POST /order/confirm` (the method and
    the route's template, once routing found it), with the HTTP semantic conventions' few
    attributes; a traceparent header continues the caller's trace.

    Why not opentelemetry-instrumentation-fastapi: measured on this shop (2 cores, a trivial route
    called straight through ASGI), it costs ~135 us per request plus ~3 us per route of the app
    (it matches every route again to name the span): ~250 us on the shop's ~40 routes, a third of
    what placing an order costs in the embedded mode, against the issue's 10% for all telemetry.
    This does what an order's trace needs for ~15 us: Starlette leaves the matched route in the
    scope, so the name costs nothing."""

    def __init__(self, app: Any, tracer: trace.Tracer, service: str) -> None:
        self.app = app
        self.tracer = tracer
        self.service = service

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in UNTRACED_PATHS:
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        status = 0

        async def send_noting_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        span = self.tracer.start_span(method, context=_caller(scope["headers"]), kind=SpanKind.SERVER,
                                      attributes={"http.request.method": method, "url.path": scope["path"],
                                                  SERVICE_ATTRIBUTE: self.service})
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            await self.app(scope, receive, send_noting_status)
        except BaseException as exc:
            span.record_exception(exc)
            status = status or 500
            raise
        finally:
            route = getattr(scope.get("route"), "path", None)
            if route is not None:
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
            if status:
                span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(trace.StatusCode.ERROR)
            otel_context.detach(token)
            span.end()


def _caller(headers: list[tuple[bytes, bytes]]) -> otel_context.Context | None:
    """The trace a request's traceparent (and tracestate) header names, if it has one."""
    carrier = {}
    for name, value in headers:
        if name in (b"traceparent", b"tracestate"):
            carrier[name.decode()] = value.decode("latin-1")
    return _W3C.extract(carrier) if carrier else None


class CallSpan:
    """One method's calls' spans: an in-process call's (LocalClient), or a gRPC call's on either
    side (infra/rpc)."""

    __slots__ = ("tracer", "name", "kind", "attributes")

    def __init__(self, tracer: trace.Tracer, name: str, kind: SpanKind, attributes: dict[str, str]) -> None:
        self.tracer = tracer
        self.name = name
        self.kind = kind
        self.attributes = attributes

    def start(self, parent: otel_context.Context | None = None) -> tuple[trace.Span, object]:
        """The call's span, started and made current (by hand rather than through
        start_as_current_span's two nested context managers: this runs on every call), in the
        current trace or `parent`'s. Hand what it returns to `end` when the call is over."""
        span = self.tracer.start_span(self.name, context=parent, kind=self.kind, attributes=self.attributes)
        return span, otel_context.attach(trace.set_span_in_context(span))

    @staticmethod
    def end(started: tuple[trace.Span, object], exc: BaseException | None) -> None:
        span, token = started
        if exc is not None:
            span.record_exception(exc)
            span.set_status(trace.StatusCode.ERROR, type(exc).__name__)
        otel_context.detach(token)  # type: ignore[arg-type]
        span.end()


def rpc_metadata() -> tuple[tuple[str, str], ...] | None:
    """A gRPC call's metadata carrying the current span's traceparent (the client's span, just
    started), or None outside any trace."""
    tp = traceparent()
    return None if tp is None else (("traceparent", tp),)


def rpc_caller(metadata: Sequence[tuple[str, Any]] | None) -> otel_context.Context | None:
    """The trace a gRPC call's metadata names (rpc_metadata's traceparent), if any."""
    for key, value in metadata or ():
        if key == "traceparent":
            return _parent(value if isinstance(value, str) else None)
    return None


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
