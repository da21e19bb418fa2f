"""The operator's view of the whole shop: the audit, the dead messages, and fault injection.

Each service reports its own facts through its own interface (in process, or over gRPC): no
process opens another service's database."""
from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from shop.admin.audit import AuditReport
from shop.admin.auditor import Auditor
from shop.common.clock import iso, utcnow
from shop.common.timeline import TimelineEvent, in_time_order
from shop.infra.faults import Faults
from shop.infra.messaging import Broker
from shop.infra.registry import ZkRegistry
from shop.infra.rpc.admin import ADMIN_SERVICE, FanOut, every_process
from shop.infra.tls import Tls
from shop.services.coupon.contracts import CouponService
from shop.services.goods.contracts import GoodsService
from shop.services.log.contracts import LogService
from shop.services.order.contracts import OrderService
from shop.services.pay.contracts import PayService
from shop.services.user.contracts import UserService


class Operator:
    def __init__(
        self, *, users: UserService, goods: GoodsService, coupons: CouponService, orders: OrderService,
        pay: PayService, log: LogService, broker: Broker, faults: Faults, registry: ZkRegistry | None,
        auditor: Auditor, tls: Tls | None,
    ) -> None:
        self.users = users
        self.goods = goods
        self.coupons = coupons
        self.orders = orders
        self.pay = pay
        self.log = log
        self.broker = broker
        self.faults = faults
        self.registry = registry  # the distributed mode: every process, for its faults
        self.tls = tls  # and how this process calls them (infra/tls.py)
        self.auditor = auditor

    # -- the audit --------------------------------------------------------------------------------

    async def audit(self) -> AuditReport:
        """The cross-service invariants, answered from the background checker's state and a fresh
        reading of the orders that may still change (admin.auditor)."""
        return await self.auditor.report()

    def recount(self) -> dict[str, Any]:
        """Start a full recount off the serving path; GET /admin/audit shows its progress."""
        return self.auditor.start_recount().json()

    def last_recount(self) -> dict[str, Any] | None:
        """The last recount this process started: its progress, or its result (None: none yet)."""
        return self.auditor.recount.json() if self.auditor.recount is not None else None

    async def full_audit(self) -> AuditReport:
        """Everything, read now: the offline audit."""
        return await self.auditor.full()

    # -- the console's overview --------------------------------------------------------------------

    async def overview(self, minutes: int) -> dict[str, Any]:
        """Polled by the console every few seconds, so only what is cheap to count: the order
        service's counts of its own table, and the broker's queue depths (no message is read)."""
        o = await self.orders.overview(minutes)
        waiting = await self.broker.pending()
        dead = sum((await self.broker.dead_counts()).values())
        return {
            "perMinute": [{"at": iso(m.at), "confirmed": m.confirmed, "failed": m.failed,
                           "unconfirmed": m.unconfirmed} for m in o.per_minute],
            "confirmed": sum(m.confirmed for m in o.per_minute),
            "failed": sum(m.failed for m in o.per_minute),
            "compensations": o.compensations,
            "pending": o.unconfirmed + o.outbox_due + waiting,
            "unconfirmed": o.unconfirmed,
            "dead": dead,
        }

    # -- an order's timeline -----------------------------------------------------------------------

    async def timeline(self, order_id: int) -> list[TimelineEvent]:
        """Every fact about one order, from every service (each reports its own), and its messages
        parked dead, in time order. An order the order service does not know is SHOP_ORDER_NO_EXIST."""
        await self.orders.find_order(order_id)
        services = (self.orders, self.goods, self.coupons, self.users, self.pay, self.log)
        parts = await asyncio.gather(*(s.timeline(order_id) for s in services))
        events = [e for part in parts for e in part]
        for d in await self.broker.dead():
            if d["key"] == str(order_id):
                at = datetime.fromisoformat(d["parkedAt"].removesuffix("Z")) if d.get("parkedAt") else utcnow()
                events.append(TimelineEvent(at, "broker", "message.dead", {
                    "group": d["group"], "tag": d["tag"], "id": d["id"], "attempts": d["attempts"],
                    "lastError": d["lastError"]}))
        return in_time_order(events)

    # -- dead messages ----------------------------------------------------------------------------

    async def dead(self) -> list[dict[str, Any]]:
        return await self.broker.dead()

    async def retrying(self) -> list[dict[str, Any]]:
        return await self.broker.retrying()

    async def replay(self, message_id: str) -> bool:
        return await self.broker.replay(message_id)

    # -- faults: here, and in every process of the distributed shop (they live where their points are)

    async def arm_fault(self, point: str, action: str, times: int | None, delay_ms: int) -> FanOut:
        self.faults.arm(point, action, times, delay_ms)
        return await self._every_process(
            "ArmFault", {"point": point, "action": action, "times": times, "delayMs": delay_ms})

    def armed_faults(self) -> list[dict[str, Any]]:
        return [{"point": p, "action": f.action, "times": f.times, "delayMs": f.delay_ms}
                for p, f in self.faults.armed.items()]

    async def clear_faults(self) -> FanOut:
        self.faults.clear()
        return await self._every_process("ClearFaults", {})

    async def _every_process(self, method: str, body: dict[str, Any]) -> FanOut:
        if self.registry is None:  # the embedded mode: this process is the whole shop
            return FanOut([], [])
        view = await self.registry.providers(ADMIN_SERVICE)
        return await every_process(list(view.addresses), method, body, self.tls)
