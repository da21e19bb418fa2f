"""The user service's interface (the original's IUserService)."""
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import IntEnum
from typing import Protocol

from shop.common.timeline import TimelineEvent
from shop.infra.db.scope import EVERYTHING, AuditScope
from shop.infra.ledger import LedgerFacts


class MoneyLogType(IntEnum):
    DEPOSIT = 0
    PAID = 1
    REFUND = 2


@dataclass(frozen=True, slots=True)
class User:
    user_id: int
    user_name: str
    user_mobile: str | None
    user_score: int
    user_money: Decimal
    user_reg_time: datetime


@dataclass(frozen=True, slots=True)
class CreateUser:
    user_name: str
    user_password: str
    user_money: Decimal
    user_mobile: str | None = None


@dataclass(frozen=True, slots=True)
class ChangeMoney:
    """Pay part of an order from the balance, or refund it: once per (order, type)."""

    user_id: int
    order_id: int
    money: Decimal
    log_type: MoneyLogType


@dataclass(frozen=True, slots=True)
class UserFacts:
    """The user service's side of the audit (admin.audit.check)."""

    balances: dict[int, Decimal]
    scores: dict[int, int]
    ledger: LedgerFacts
    cancels_seen: set[int]  # orders whose cancel this service has handled
    points: dict[int, int] | None = None  # a scope's orders -> points their messages added (less taken back)
    through: int = 0  # entities: the users covered, [since_id, through)


class UserService(Protocol):
    async def find_user(self, user_id: int) -> User: ...

    async def create_user(self, cmd: CreateUser) -> int: ...

    async def login(self, user_name: str, password: str) -> User: ...

    async def change_money(self, cmd: ChangeMoney) -> None: ...

    async def audit_facts(self, scope: AuditScope = EVERYTHING) -> UserFacts:
        """This service's facts about the scope's orders (or entities): indexed reads only."""
        ...

    async def timeline(self, order_id: int) -> list[TimelineEvent]:
        """Every fact this service holds about one order, for the operator."""
        ...
