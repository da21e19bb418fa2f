"""One fact about an order, as a service reports it for the order's timeline."""
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    at: datetime  # naive UTC, as every time in the shop
    service: str  # who reports it: order, goods, coupon, user, pay, log, broker
    kind: str  # order.saved, goods.stock_reduced, message.handled, barrier, ... (API.md)
    detail: dict[str, Any] = field(default_factory=dict)  # JSON values: ids and money as strings
