"""Logging for every process: plain lines, or with SHOP_LOG_FORMAT=json one JSON object a line
(python-json-logger) carrying `service` (the process) and, where known, `orderId` and `traceId`.

The order a line is about is carried by a context variable: set where an order's work begins (the
saga, a cancel or refund, a consumer's delivery), it follows that work through every await.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from typing import IO

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

ORDER_ID: ContextVar[str | None] = ContextVar("order_id", default=None)
QUIET = ("alembic", "kazoo", "aio_pika", "aiormq", "httpx")


@contextlib.contextmanager
def about_order(order_id: int | str) -> Iterator[None]:
    """The log lines written inside are about this order."""
    token = ORDER_ID.set(str(order_id))
    try:
        yield
    finally:
        ORDER_ID.reset(token)


class _Context(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        order_id = ORDER_ID.get()
        if order_id is not None:
            record.orderId = order_id
        trace_id = _trace_id()
        if trace_id is not None:
            record.traceId = trace_id
        return True


def _trace_id() -> str | None:
    """The current OpenTelemetry trace's id (infra/tracing.py), when a span is current: the one
    of the work being done, or the trace a failed message came from."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def handler(service: str, fmt: str = "text", stream: IO[str] | None = None) -> logging.Handler:
    """A handler writing this process's lines: `fmt` "json" or "text"; to stderr unless `stream`."""
    out = logging.StreamHandler(stream)
    out.addFilter(_Context(service))
    if fmt == "json":
        out.setFormatter(JsonFormatter("{asctime}{levelname}{name}{message}", style="{",
                                       rename_fields={"asctime": "time", "levelname": "level", "name": "logger"}))
    else:
        out.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s [{service}] %(name)s: %(message)s"))
    return out


def configure(service: str, fmt: str = "text", level: int = logging.INFO) -> None:
    """The root logger for this process: `fmt` "json" or "text"."""
    root = logging.getLogger()
    root.handlers[:] = [handler(service, fmt)]
    root.setLevel(level)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
