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
