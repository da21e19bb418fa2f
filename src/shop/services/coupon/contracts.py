"""The coupon service's interface (the original's ICouponService)."""
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from shop.common.timeline import TimelineEvent
from shop.infra.db.scope import EVERYTHING, AuditScope
from shop.infra.ledger import LedgerFacts


@dataclass(frozen=True, slots=True)
class Coupon:
    coupon_id: int
    coupon_price: Decimal
    user_id: int
    order_id: int | None
    is_used: int
    used_time: datetime | None


@dataclass(frozen=True, slots=True)
class CreateCoupon:
    user_id: int
    coupon_price: Decimal


@dataclass(frozen=True, slots=True)
class UseCoupon:
    coupon_id: int
    user_id: int
    order_id: int


@dataclass(frozen=True, slots=True)
class CouponState:
    is_used: int
    order_id: int | None


@dataclass(frozen=True, slots=True)
class CouponFacts:
    """The coupon service's side of the audit (admin.audit.check)."""

    coupons: dict[int, CouponState]
    ledger: LedgerFacts
    cancels_seen: set[int]  # orders whose cancel this service has handled


class CouponService(Protocol):
    async def find_coupon(self, coupon_id: int) -> Coupon: ...

    async def create_coupon(self, cmd: CreateCoupon) -> int: ...

    async def use_coupon(self, cmd: UseCoupon) -> Decimal:
        """Idempotent per order; refused once the order's cancellation has been recorded. Returns
        the coupon's price: the order reads the coupon nowhere else (this step is its check)."""
        ...

    async def audit_facts(self, scope: AuditScope = EVERYTHING) -> CouponFacts:
        """This service's facts about the scope's orders (or entities): indexed reads only."""
        ...

    async def timeline(self, order_id: int) -> list[TimelineEvent]:
        """Every fact this service holds about one order, for the operator."""
        ...
