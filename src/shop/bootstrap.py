"""Wires the shop for a mode. Only this module knows which adapters a mode uses.

Embedded (the default): every service in one process, a SQLite file per service (or any URL per
service), RPC as direct calls through LocalClient, messages through each service's outbox, the
embedded broker and each consumer group's inbox.
"""
from __future__ import annotations

import asyncio
import contextlib

import httpx
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
from shop.infra.messaging import EmbeddedBroker, Inbox, Outbox, Relay, Subscription, broker_metadata
from shop.infra.migrate import upgrade
from shop.infra.rabbit import RabbitBroker
from shop.infra.signing import Verifier, load_or_create_key_pair
from shop.sandbox.notify import http_sender
from shop.sandbox.platform import Sandbox
from shop.infra.rpc import local_client
from shop.services.coupon import models as coupon_models
from shop.services.coupon.handlers import CouponHandlers
from shop.services.goods import models as goods_models
from shop.services.goods.handlers import GoodsHandlers
from shop.services.order import models as order_models
from shop.services.log import models as log_models
from shop.services.log.handlers import LogHandlers
from shop.services.order.contracts import ORDER_TOPIC, TAG_CANCEL, TAG_PAID, TAG_REFUND, TAG_REFUND_PAYMENT
from shop.services.order.handlers import OrderHandlers
from shop.services.pay import models as pay_models
from shop.services.pay.contracts import PAY_TOPIC
from shop.services.pay.contracts import TAG_PAID as PAY_PAID
from shop.services.pay.handlers import PayHandlers
from shop.services.user import models as user_models
from shop.services.user.handlers import UserHandlers

log = logging.getLogger("shop")

MODELS = {"user": user_models, "goods": goods_models, "coupon": coupon_models, "order": order_models,
          "pay": pay_models, "log": log_models}


@dataclass
class Shop:
    settings: Settings
    ids: IdWorker
    faults: Faults
    tokens: Tokens
    admin_token: str
    dbs: dict[str, Database]
    broker: Any  # EmbeddedBroker or RabbitBroker
    relays: list[Relay]
    handlers: dict[str, Any]
    users: Any
    goods: Any
    coupons: Any
    orders: Any
    pay: Any
    sandbox: Any
    http: httpx.AsyncClient | None = None  # the sandbox's client for its notifications
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def connect(self) -> None:
        for db in self.dbs.values():
            await db.connect()
        await self.broker.connect()

    async def close(self) -> None:
        for db in self.dbs.values():
            await db.close()
        await self.broker.close()
        await self.sandbox.db.close()
        if self.http is not None:
            await self.http.aclose()

    async def start(self) -> None:
        """Connect, and run the relays and the dispatcher (which also resume what a crash left)."""
        await self.connect()
        self._tasks = [asyncio.create_task(r.run(), name=f"relay-{r.name}") for r in self.relays]
        self._tasks.append(asyncio.create_task(self.broker.run(), name="dispatcher"))
        self._tasks.append(asyncio.create_task(self.sandbox.run(), name="sandbox"))

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
        """Each service's facts are read one after another, not in one snapshot: work that moves
        between two reads can look like a violation for an instant. A real violation stays, so
        only what two readings a moment apart both find is reported."""
        first = await self._audit_once()
        if first.consistent:
            return first
        await asyncio.sleep(0.05)
        second = await self._audit_once()
        stable = [v for v in second.violations if v in set(first.violations)]
        return AuditReport(consistent=not stable, violations=stable, pending=max(first.pending, second.pending))

    async def _audit_once(self) -> AuditReport:
        pending = await self._pending()
        orders = (await self.handlers["order"].audit_facts())["orders"]
        goods = await self.handlers["goods"].audit_facts()
        users = await self.handlers["user"].audit_facts()
        coupons = await self.handlers["coupon"].audit_facts()
        payments = (await self.handlers["pay"].audit_facts())["payments"]
        logged = (await self.handlers["log"].audit_facts())["logged"]
        # Work in flight at the start or at the end of the reading counts as in flight.
        pending = max(pending, await self._pending()) + sum(1 for o in orders.values() if o.order_status == 0)
        dead = await self.broker.dead()
        violations = check(orders, goods, users, coupons, pending=pending, dead=dead, payments=payments, logged=logged)
        return AuditReport(consistent=not violations, violations=violations, pending=pending)

    async def _pending(self) -> int:
        n = await self.broker.pending()
        for r in self.relays:
            n += await r.outbox.count_due(r.db)
        return n


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
    log_h = LogHandlers(dbs["log"])
    users = local_client(user_h, "user", deadline("user"))
    goods = local_client(goods_h, "goods", deadline("goods"))
    coupons = local_client(coupon_h, "coupon", deadline("coupon"))

    outboxes = {s: Outbox(MODELS[s].outbox, f"{s}-producer") for s in SERVICES}
    inboxes = {s: Inbox(MODELS[s].inbox) for s in SERVICES}

    order_h = OrderHandlers(
        dbs["order"], ids, outboxes["order"], users=users, goods=goods, coupons=coupons, faults=faults,
        cancel_after_s=settings.order_cancel_after_s, pay_timeout_s=settings.order_pay_timeout_s,
    )
    orders = local_client(order_h, "order", deadline("order"))

    # The payment platform: the sandbox, in this process, with its own database and key pair.
    private_pem, public_pem = load_or_create_key_pair(settings.data_dir)
    http = httpx.AsyncClient()
    sandbox = Sandbox(
        SqliteDatabase(str((settings.data_dir / "sandbox.db").resolve())), private_pem, public_pem,
        send=http_sender(http), schedule_s=settings.notify_schedule(), ids=ids,
    )
    platform_key = settings.pay_platform_public_key.read_bytes() if settings.pay_platform_public_key else public_pem
    pay_h = PayHandlers(
        dbs["pay"], ids, outboxes["pay"], orders=orders, platform=local_client(sandbox, "platform", None),
        verifier=Verifier(platform_key), notify_url=settings.pay_notify_url, faults=faults,
        window_s=settings.pay_notify_window_s,
    )

    def sub(service: str, topic: str, handlers: dict[str, Any], before: dict[str, Any] | None = None) -> Subscription:
        return Subscription(
            group=f"{service}-{topic}-group", service=service, topic=topic, db=dbs[service], inbox=inboxes[service],
            handlers=handlers, before=before or {},
        )

    subscriptions = [
        sub("goods", ORDER_TOPIC, {TAG_CANCEL: goods_h.on_order_cancel, TAG_REFUND: goods_h.on_order_cancel}),
        sub("coupon", ORDER_TOPIC, {TAG_CANCEL: coupon_h.on_order_cancel, TAG_REFUND: coupon_h.on_order_cancel}),
        sub("user", ORDER_TOPIC, {TAG_CANCEL: user_h.on_order_cancel, TAG_PAID: user_h.on_order_paid,
                                  TAG_REFUND: user_h.on_order_refund}),
        sub("order", ORDER_TOPIC, {TAG_CANCEL: order_h.on_order_cancel}),
        sub("order", PAY_TOPIC, {PAY_PAID: order_h.on_pay_paid}),
        sub("pay", ORDER_TOPIC, {TAG_REFUND: pay_h.on_refund, TAG_REFUND_PAYMENT: pay_h.on_refund},
            before={TAG_REFUND: pay_h.refund_at_platform, TAG_REFUND_PAYMENT: pay_h.refund_at_platform}),
        sub("log", ORDER_TOPIC, {TAG_PAID: log_h.on_order_paid}),
    ]
    broker: Any
    if settings.broker_url:
        broker = RabbitBroker(
            settings.broker_url, subscriptions, faults, max_attempts=settings.message_max_attempts,
            backoff_base_ms=settings.message_backoff_ms, backoff_cap_ms=settings.message_backoff_cap_ms,
            prefix=settings.broker_prefix,
        )
    else:
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
    by_name = {r.name: r for r in relays}
    pay_h.on_outbox = by_name["pay"].wake

    async def settle(tag: str, key: str) -> None:
        # A failed, cancelled or refunded order: publish its message now and wait (bounded) for
        # every group to handle it, so the caller sees stock, coupon and balance already back.
        await by_name["order"].run_once()
        await broker.wait_handled(tag, key, timeout_s=2.0)

    order_h.settle = settle
    handlers = {"user": user_h, "goods": goods_h, "coupon": coupon_h, "order": order_h, "pay": pay_h, "log": log_h}
    return Shop(
        settings=settings, ids=ids, faults=faults, tokens=tokens, admin_token=admin_token, dbs=dbs, broker=broker,
        relays=relays, handlers=handlers, users=users, goods=goods, coupons=coupons,
        # Placing an order waits on the others and may settle a failure: a longer deadline.
        orders=local_client(order_h, "order", settings.rpc_deadline_s * 4),
        pay=local_client(pay_h, "pay", settings.rpc_deadline_s * 2), sandbox=sandbox, http=http,
    )


def _sync_engine(path: str) -> Any:
    import sqlalchemy as sa

    return sa.create_engine(f"sqlite:///{path}")
