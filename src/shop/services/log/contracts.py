"""The log service's interface: the payment log, and its facts for the audit."""
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from shop.common.timeline import TimelineEvent
from shop.infra.db.scope import EVERYTHING, AuditScope


@dataclass(frozen=True, slots=True)
class PayLogEntry:
    order_id: int
    pay_id: int
    user_id: int
    pay_amount: Decimal
    log_time: datetime


@dataclass(frozen=True)
class LogFacts:
    logged: dict[int, int]  # order id -> payment log rows


class LogService(Protocol):
    async def pay_log(self, order_id: int) -> list[PayLogEntry]: ...

    async def audit_facts(self, scope: AuditScope = EVERYTHING) -> LogFacts:
        """This service's facts about the scope's orders (or entities): indexed reads only."""
        ...

    async def timeline(self, order_id: int) -> list[TimelineEvent]:
        """Every fact this service holds about one order, for the operator."""
        ...
