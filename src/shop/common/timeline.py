"""One fact about an order, as a service reports it for the order's timeline."""
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    at: datetime  # naive UTC, as every time in the shop
    service: str  # who reports it: order, goods, coupon, user, pay, log, broker
    kind: str  # order.saved, goods.stock_reduced, message.handled, barrier, ... (API.md)
    detail: dict[str, Any] = field(default_factory=dict)  # JSON values: ids and money as strings


def from_times(row: Mapping[str, Any], service: str, kinds: Mapping[str, str],
               detail: dict[str, Any]) -> list[TimelineEvent]:
    """A row's time columns as events: column -> kind, for each column that holds a time."""
    return [TimelineEvent(row[column], service, kind, detail) for column, kind in kinds.items() if row[column]]


# Times are kept to the millisecond, and one process often does several steps of an order within one
# (the embedded shop always can): within a tie, the steps go in the order the saga takes them, so
# a timeline never shows an order confirmed before its stock was taken, nor restored before it was
# cancelled. Other kinds (the participants' steps, the payment's) rank in between.
_TIES = {"order.saved": 0, "order.confirmed": 2, "order.cancelled": 2, "order.refunded": 2, "message.sent": 3,
         "message.handled": 4, "barrier": 5}


def _tie_rank(kind: str) -> int:
    if kind in _TIES:
        return _TIES[kind]
    return 5 if kind.endswith(("restored", "refunded", "removed")) else 1  # a compensation


def in_time_order(events: list[TimelineEvent]) -> list[TimelineEvent]:
    return sorted(events, key=lambda e: (e.at, _tie_rank(e.kind)))
