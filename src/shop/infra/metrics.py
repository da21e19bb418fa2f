"""Metrics (Prometheus, through prometheus-client): what the guarantee is made of, counted where it
happens, and served by every process (`GET /metrics`; `SHOP_METRICS_PORT` for a gRPC-only one).

Every series is defined here, in one place; the code that moves one calls the small functions
below. Gauges of stored state (the outbox, dead messages) are sampled by `Sampler` every few seconds
rather than queried at scrape time: a scrape must not wait on a database.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest, start_http_server

log = logging.getLogger("shop.metrics")
T = TypeVar("T")

ORDERS = Counter("shop_orders", "Orders placed, by outcome: confirmed, rejected (refused before anything was "
                 "taken), failed (cancelled after the pre-order, its effects undone)", ["outcome"])
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
AUDIT_CONSISTENT = Gauge("shop_audit_consistent", "1 if the last audit found no violation, else 0")


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
    """`inner`, its named methods timed as saga steps (method name -> step label)."""
    return cast(T, _Timed(inner, steps))


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


def rpc_observer(method: str) -> Observe:
    """Records one method's calls into RPC: labelled OK, or with the ShopCode the call raised. The
    OK child is bound once: this runs on every call between services."""
    ok = RPC.labels(method, "OK")

    def observe(seconds: float, exc: BaseException | None) -> None:
        if exc is None:
            ok.observe(seconds)
        else:
            code = getattr(getattr(exc, "code", None), "name", None) or type(exc).__name__
            RPC.labels(method, code).observe(seconds)

    return observe


async def timed(observe: Observe, call: Awaitable[T]) -> T:
    start = time.perf_counter()
    try:
        result = await call
    except BaseException as exc:
        observe(time.perf_counter() - start, exc)
        raise
    observe(time.perf_counter() - start, None)
    return result
