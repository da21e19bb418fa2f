"""Metrics (Prometheus, through prometheus-client): what the guarantee is made of, counted where it
happens, and served by every process (`GET /metrics`; `SHOP_METRICS_PORT` for a gRPC-only one).

Every series is defined here, in one place; the code that moves one calls the small functions
below. Gauges of stored state (the outbox, dead messages) are sampled by `Sampler` every few seconds
rather than queried at scrape time: a scrape must not wait on a database.

SHOP_TELEMETRY=off (`switch(False)`, from bootstrap): every function here does nothing, nothing is
wrapped to be timed, and GET /metrics answers without the shop's series (the process's own stay).
The switch is the process's, as prometheus-client's registry is.
"""
from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

log = logging.getLogger("shop.metrics")
T = TypeVar("T")

ORDERS = Counter("shop_orders", "Orders placed, by outcome: confirmed, rejected (refused before anything was "
                 "taken), failed (cancelled after the pre-order, its effects undone)", ["outcome"])
SOLD_OUT = Counter("shop_sold_out_answers", "Orders refused by the front door's sold-out memory, without a database")
COMPENSATIONS = Counter("shop_compensations", "Participant steps undone for a cancelled order", ["service"])
BARRIERS = Counter("shop_barriers", "Compensations that found no step to undo and left the barrier", ["service"])
SAGA_STEP = Histogram("shop_saga_step_seconds", "Time of each step of placing an order", ["step"],
                      buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
OUTBOX_DUE = Gauge("shop_outbox_due", "Outbox messages due and not yet sent", ["service"])
OUTBOX_OLDEST = Gauge("shop_outbox_oldest_due_seconds", "How long the oldest due outbox message has waited",
                      ["service"])
MESSAGES = Counter("shop_messages", "Deliveries to consumer groups, by result: handled, retried, dead",
                   ["group", "result"])
MESSAGES_DEAD = Gauge("shop_messages_dead", "Messages parked dead, by consumer group", ["group"])
NOTIFY_ACK = Histogram("shop_notify_ack_seconds", "Time to answer the payment platform's notification",
                       buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
RPC = Histogram("shop_rpc_seconds", "Calls between services (in process or gRPC), by method and answer code",
                ["method", "code"], buckets=(0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5))
SERVED = Counter("shop_rpc_served", "Calls this process answered over gRPC, by method: which instance of a "
                 "service served", ["method"])
AUDIT_CONSISTENT = Gauge("shop_audit_consistent", "1 if the last audit found no violation, else 0")
ADMISSION_REFUSED = Counter("shop_admission_refused", "Requests the front door's admission control refused (503, "
                            "Retry-After) having changed nothing: the queue full or the wait too long", ["path"])
ADMISSION_WAIT = Histogram("shop_admission_wait_seconds", "Time admitted requests waited in the front door's queue "
                           "(those that started at once are not counted)",
                           buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
ADMISSION_RUNNING = Gauge("shop_admission_in_progress", "Requests under admission control in progress")
ADMISSION_QUEUED = Gauge("shop_admission_queued", "Requests waiting in the front door's admission queue")
ADMISSION_LIMIT = Gauge("shop_admission_limit", "Requests under admission control that may be in progress now "
                        "(it adapts to how long they take)")
CERT_EXPIRY = Gauge("shop_tls_certificate_expiry_timestamp_seconds", "When the certificate this process presents to "
                    "the others runs out (Unix time; `shop prepare` renews its own within 30 days of it)")
GC_FROZEN = Gauge("shop_gc_frozen_objects", "Objects this process froze out of Python's collections once it had "
                  "started (runtime.freeze_the_lasting; 0 in a shop started inside another "
                  "program)")
GC_FROZEN.set_function(gc.get_freeze_count)
_SERIES = (ORDERS, SOLD_OUT, COMPENSATIONS, BARRIERS, SAGA_STEP, OUTBOX_DUE, OUTBOX_OLDEST, MESSAGES, MESSAGES_DEAD,
           NOTIFY_ACK, RPC, SERVED, AUDIT_CONSISTENT, ADMISSION_REFUSED, ADMISSION_WAIT, ADMISSION_RUNNING,
           ADMISSION_QUEUED, ADMISSION_LIMIT, GC_FROZEN, CERT_EXPIRY)
_on = True


def switch(on: bool) -> None:
    """Telemetry on (the default) or off for this process (see the module's docstring)."""
    global _on
    if on == _on:
        return
    for series in _SERIES:
        if on:
            REGISTRY.register(series)
        else:
            REGISTRY.unregister(series)
    _on = on


def enabled() -> bool:
    return _on


def order_placed(outcome: str) -> None:
    """confirmed, rejected or failed."""
    if _on:
        ORDERS.labels(outcome).inc()


def sold_out_answered() -> None:
    """An order refused by the sold-out gate (also counted as a rejected order)."""
    if _on:
        ORDERS.labels("rejected").inc()
        SOLD_OUT.inc()


def compensated(service: str) -> None:
    if _on:
        COMPENSATIONS.labels(service).inc()


def barrier_left(service: str) -> None:
    if _on:
        BARRIERS.labels(service).inc()


def delivered(group: str, result: str) -> None:
    """handled, retried or dead."""
    if _on:
        MESSAGES.labels(group, result).inc()


def outbox_sampled(service: str, due: int, oldest_s: float) -> None:
    if _on:
        OUTBOX_DUE.labels(service).set(due)
        OUTBOX_OLDEST.labels(service).set(oldest_s)


def dead_sampled(group: str, count: int) -> None:
    if _on:
        MESSAGES_DEAD.labels(group).set(count)


def certificate_loaded(runs_out: float) -> None:
    if _on:
        CERT_EXPIRY.set(runs_out)


def audited(consistent: bool) -> None:
    if _on:
        AUDIT_CONSISTENT.set(1 if consistent else 0)


def admission_refused(path: str) -> None:
    if _on:
        ADMISSION_REFUSED.labels(path).inc()


def admission_waited(seconds: float) -> None:
    if _on:
        ADMISSION_WAIT.observe(seconds)


def admission_watch(running: Callable[[], float], queued: Callable[[], float], limit: Callable[[], float]) -> None:
    """The gauges read the limiter when scraped: nothing to do per request."""
    ADMISSION_RUNNING.set_function(running)
    ADMISSION_QUEUED.set_function(queued)
    ADMISSION_LIMIT.set_function(limit)


def notify_ack() -> contextlib.AbstractContextManager[Any]:
    """Times the answer to the payment platform's notification (`with metrics.notify_ack(): ...`)."""
    return NOTIFY_ACK.time() if _on else contextlib.nullcontext()


def exposition() -> tuple[bytes, str]:
    """The text format and its content type, for GET /metrics."""
    return generate_latest(), CONTENT_TYPE_LATEST


def serve(port: int, host: str = "0.0.0.0") -> bool:
    """A gRPC-only process's /metrics, on its own port (a thread of prometheus-client's).

    A port already taken is logged and the process serves on without /metrics: taking orders matters
    more than being scraped, and failing here would only make the supervisor restart it into the
    same taken port, again and again (Prometheus shows the target down, which is the alert)."""
    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        log.error("cannot serve /metrics on %s:%d (%s); serving without it", host, port, exc.strerror or exc)
        return False
    log.info("metrics on %s:%d", host, port)
    return True


class _Timed:
    """An object whose named coroutine methods are timed into SAGA_STEP, under their step names."""

    def __init__(self, inner: object, steps: Mapping[str, str]) -> None:
        self._inner = inner
        self._steps = steps

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        step = self._steps.get(name)
        if step is None:
            # Kept too: the saga reads its other methods (find_user, ...) on every order, and a
            # lookup that reaches __getattr__ each time cost ~4% of an order's CPU (py-spy).
            setattr(self, name, target)
            return target
        histogram = SAGA_STEP.labels(step)

        async def call(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return await target(*args, **kwargs)
            finally:
                histogram.observe(time.perf_counter() - start)

        setattr(self, name, call)
        return call


def timed_steps(inner: T, steps: Mapping[str, str]) -> T:
    """`inner`, its named methods timed as saga steps (method name -> step label); `inner` itself
    when telemetry is off."""
    return cast(T, _Timed(inner, steps)) if _on else inner


Sample = Callable[[], Awaitable[None]]


class Sampler:
    """Runs each sampling function every `every_s` seconds: the gauges of stored state."""

    def __init__(self, samples: Sequence[Sample], every_s: float = 5.0) -> None:
        self.samples = list(samples)
        self.every_s = every_s

    async def run(self) -> None:
        while True:
            for sample in self.samples:
                try:
                    await sample()
                except Exception as exc:  # noqa: BLE001 - a gauge left stale is no reason to stop
                    log.info("a metrics sample failed: %r", exc)
            await asyncio.sleep(self.every_s)


Observe = Callable[[float, BaseException | None], None]


def rpc_observer(method: str) -> Observe | None:
    """Records one method's calls into RPC: labelled OK, or with the ShopCode the call raised. The
    OK child is bound once: this runs on every call between services. None when telemetry is off:
    the caller does not time its calls at all."""
    if not _on:
        return None
    ok = RPC.labels(method, "OK")

    def observe(seconds: float, exc: BaseException | None) -> None:
        if exc is None:
            ok.observe(seconds)
        else:
            code = getattr(getattr(exc, "code", None), "name", None) or type(exc).__name__
            RPC.labels(method, code).observe(seconds)

    return observe


def rpc_served(method: str) -> Callable[[], None] | None:
    """Counts one method's calls on the serving side (RPC counts them at the caller, which does not
    know which instance answered). None when telemetry is off."""
    return SERVED.labels(method).inc if _on else None


async def timed(observe: Observe, call: Awaitable[T]) -> T:
    start = time.perf_counter()
    try:
        result = await call
    except BaseException as exc:
        observe(time.perf_counter() - start, exc)
        raise
    observe(time.perf_counter() - start, None)
    return result
