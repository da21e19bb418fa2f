"""Wires the shop for a mode. Only this module knows which adapters a mode uses.

Embedded (the default): every service in one process, a SQLite file per service (or any URL per
service), RPC as direct calls through LocalClient, messages through each service's outbox, the
embedded broker and each consumer group's inbox.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

from argon2 import PasswordHasher

from shop.admin.audit import AuditReport, check
from shop.common.ids import IdWorker
from shop.infra.auth import Tokens, load_or_create_secret
from shop.infra.config import SERVICES, Settings
from shop.infra.db import Database, SqliteDatabase, open_database
from shop.infra.faults import Faults
from shop.infra.messaging import EmbeddedBroker, Inbox, Message, Outbox, Relay, Subscription, broker_metadata
from shop.infra.migrate import upgrade
from shop.infra.rpc import local_client
from shop.services.coupon import models as coupon_models
from shop.services.coupon.handlers import CouponHandlers
from shop.services.goods import models as goods_models
from shop.services.goods.handlers import GoodsHandlers
from shop.services.order import models as order_models
from shop.services.order.contracts import ORDER_TOPIC, TAG_CANCEL
from shop.services.order.handlers import OrderHandlers
from shop.services.user import models as user_models
from shop.services.user.handlers import UserHandlers

log = logging.getLogger("shop")

MODELS = {"user": user_models, "goods": goods_models, "coupon": coupon_models, "order": order_models}


@dataclass
class Shop:
    settings: Settings
    ids: IdWorker
    faults: Faults
    tokens: Tokens
    admin_token: str
    dbs: dict[str, Database]
    broker: EmbeddedBroker
    relays: list[Relay]
    handlers: dict[str, Any]
    users: Any
    goods: Any
    coupons: Any
    orders: Any
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def connect(self) -> None:
        for db in self.dbs.values():
            await db.connect()
        await self.broker.db.connect()

    async def close(self) -> None:
        for db in self.dbs.values():
            await db.close()
        await self.broker.db.close()

    async def start(self) -> None:
        """Connect, and run the relays and the dispatcher (which also resume what a crash left)."""
        await self.connect()
        self._tasks = [asyncio.create_task(r.run(), name=f"relay-{r.name}") for r in self.relays]
        self._tasks.append(asyncio.create_task(self.broker.run(), name="dispatcher"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks = []
        await self.broker.drain()
        await self.close()

    async def audit(self) -> AuditReport:
        orders = (await self.handlers["order"].audit_facts())["orders"]
        goods = await self.handlers["goods"].audit_facts()
        users = await self.handlers["user"].audit_facts()
        coupons = await self.handlers["coupon"].audit_facts()
        pending = sum(1 for o in orders.values() if o.order_status == 0)
        for r in self.relays:
            pending += await r.outbox.count_due(r.db)
        pending += await self.broker.pending()
        dead = await self.broker.dead()
        violations = check(orders, goods, users, coupons, pending=pending, dead=dead)
        return AuditReport(consistent=not violations, violations=violations, pending=pending)


def migrate(settings: Settings) -> None:
    for service in SERVICES:
        upgrade(service, settings.db_url(service))


def bootstrap(settings: Settings | None = None, *, run_migrations: bool = True) -> Shop:
    settings = settings or Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if run_migrations:
        migrate(settings)
    ids = IdWorker(settings.worker_id, settings.datacenter_id)
    faults = Faults(settings.faults)
    secret = settings.token_secret or load_or_create_secret(settings.data_dir / "token.secret")
    tokens = Tokens(secret, settings.token_ttl_s)
    admin_token = settings.admin_token or secrets.token_urlsafe(24)

    dbs = {s: open_database(settings.db_url(s)) for s in SERVICES}
    def deadline(service: str) -> float | None:
        # A SQLite service runs inline on the loop: nothing in it can wait, so no timer is needed.
        return None if isinstance(dbs[service], SqliteDatabase) else settings.rpc_deadline_s

    hasher = PasswordHasher(time_cost=settings.password_time_cost, memory_cost=settings.password_memory_kib)
    user_h = UserHandlers(dbs["user"], ids, hasher)
    goods_h = GoodsHandlers(dbs["goods"], ids)
    coupon_h = CouponHandlers(dbs["coupon"], ids)
    users = local_client(user_h, "user", deadline("user"))
    goods = local_client(goods_h, "goods", deadline("goods"))
    coupons = local_client(coupon_h, "coupon", deadline("coupon"))

    outboxes = {s: Outbox(MODELS[s].outbox, f"{s}-producer") for s in SERVICES}
    inboxes = {s: Inbox(MODELS[s].inbox) for s in SERVICES}

    order_h = OrderHandlers(
        dbs["order"], ids, outboxes["order"], users=users, goods=goods, coupons=coupons, faults=faults,
        cancel_after_s=settings.order_cancel_after_s,
    )

    def sub(service: str, handler: Any) -> Subscription:
        return Subscription(
            group=f"{service}-order-cancel-group", topic=ORDER_TOPIC, tags=frozenset({TAG_CANCEL}), db=dbs[service],
            inbox=inboxes[service], handler=handler, fault_point=f"{service}.on_order_cancel",
        )

    subscriptions = [
        sub("goods", goods_h.on_order_cancel),
        sub("coupon", coupon_h.on_order_cancel),
        sub("user", user_h.on_order_cancel),
        sub("order", order_h.on_order_cancel),
    ]
    broker_db = SqliteDatabase(str(settings.broker_path()))
    broker_metadata.create_all(_sync_engine(broker_db.path))
    broker = EmbeddedBroker(
        broker_db, subscriptions, faults, max_attempts=settings.message_max_attempts,
        backoff_base_ms=settings.message_backoff_ms, backoff_cap_ms=settings.message_backoff_cap_ms,
    )
    relays = [
        Relay(s, dbs[s], outboxes[s], broker, guards={TAG_CANCEL: order_h.guard_cancel} if s == "order" else None)
        for s in SERVICES
    ]
    order_relay = relays[SERVICES.index("order")]

    async def settle(msg: Message) -> None:
        # A failed order's cancel: publish it now and wait (bounded) for every group to handle
        # it, so the caller who got the failure sees stock, coupon and balance already back.
        await order_relay.run_once()
        await broker.wait_handled(msg.msg_id, timeout_s=2.0)

    order_h.settle = settle
    handlers = {"user": user_h, "goods": goods_h, "coupon": coupon_h, "order": order_h}
    return Shop(
        settings=settings, ids=ids, faults=faults, tokens=tokens, admin_token=admin_token, dbs=dbs, broker=broker,
        relays=relays, handlers=handlers, users=users, goods=goods, coupons=coupons,
        # Placing an order waits on the others and may settle a failure: a longer deadline.
        orders=local_client(order_h, "order", settings.rpc_deadline_s * 4),
    )


def _sync_engine(path: str) -> Any:
    import sqlalchemy as sa

    return sa.create_engine(f"sqlite:///{path}")
