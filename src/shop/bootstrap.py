"""Wires the shop for a mode and a role. Only this module knows which adapters a mode uses.

Embedded (role "all", no registry): every service in one process, a SQLite file per service (or
any URL per service), RPC as direct calls through LocalClient, messages through each service's
outbox, the embedded broker (or RabbitMQ, given SHOP_BROKER_URL) and each consumer group's inbox.

Distributed (SHOP_REGISTRY_URL and SHOP_BROKER_URL set, one role per process, `shop serve ROLE`):
- a service role (user, goods, coupon, order, pay, log) runs that service's handlers on its own
  database, serves them over gRPC, registers them in Zookeeper, relays its own outbox to RabbitMQ
  and consumes its own groups; the services it calls are gRPC clients over the registry.
- a web role (web: all of API.md; order-web, pay-web: their parts) serves HTTP by calling the
  services. `web` also answers the operator's audit, which reads every service's database.
- sandbox runs the payment platform stand-in on its own; the others reach it over HTTP.

The handlers are the same objects in both modes: only what they are handed differs.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
from dataclasses import dataclass, field
from typing import Any

import httpx
from argon2 import PasswordHasher
from sqlalchemy.engine import make_url

from shop.admin.audit import AuditReport, check
from shop.common.errors import ServiceUnavailable
from shop.common.ids import IdWorker
from shop.infra import grpc_transport as rpc
from shop.infra.auth import Tokens, load_or_create_secret
from shop.infra.config import SERVICES, Settings
from shop.infra.db import Database, SqliteDatabase, ensure_databases, open_database
from shop.infra.faults import Faults
from shop.infra.messaging import EmbeddedBroker, Inbox, Outbox, Relay, Subscription, broker_metadata
from shop.infra.migrate import upgrade
from shop.infra.rabbit import RabbitBroker
from shop.infra.registry import Discovered, ZkRegistry
from shop.infra.rpc import local_client
from shop.infra.signing import Verifier, load_or_create_key_pair
from shop.sandbox.client import HttpPlatform
from shop.sandbox.notify import http_sender
from shop.sandbox.platform import Sandbox
from shop.services.coupon import models as coupon_models
from shop.services.coupon.handlers import CouponHandlers
from shop.services.goods import models as goods_models
from shop.services.goods.handlers import GoodsHandlers
from shop.services.log import models as log_models
from shop.services.log.handlers import LogHandlers
from shop.services.order import models as order_models
from shop.services.order.contracts import ORDER_TOPIC, TAG_CANCEL, TAG_PAID, TAG_REFUND, TAG_REFUND_PAYMENT
from shop.services.order.domain import OrderStatus
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
WEB_ROLES = ("web", "order-web", "pay-web")
ROLES = ("all", *SERVICES, *WEB_ROLES, "sandbox")

# Who consumes what: (service, topic, {tag: handler method}, {tag: method run before the transaction}).
# Each line is one consumer group, `<service>-<topic>-group`, as in the original.
CONSUMERS: list[tuple[str, str, dict[str, str], dict[str, str]]] = [
    ("goods", ORDER_TOPIC, {TAG_CANCEL: "on_order_cancel", TAG_REFUND: "on_order_cancel"}, {}),
    ("coupon", ORDER_TOPIC, {TAG_CANCEL: "on_order_cancel", TAG_REFUND: "on_order_cancel"}, {}),
    ("user", ORDER_TOPIC, {TAG_CANCEL: "on_order_cancel", TAG_PAID: "on_order_paid", TAG_REFUND: "on_order_refund"}, {}),
    ("order", ORDER_TOPIC, {TAG_CANCEL: "on_order_cancel"}, {}),
    ("order", PAY_TOPIC, {PAY_PAID: "on_pay_paid"}, {}),
    ("pay", ORDER_TOPIC, {TAG_REFUND: "on_refund", TAG_REFUND_PAYMENT: "on_refund"},
     {TAG_REFUND: "refund_at_platform", TAG_REFUND_PAYMENT: "refund_at_platform"}),
    ("log", ORDER_TOPIC, {TAG_PAID: "on_order_paid"}, {}),
]
TOPOLOGY = [(f"{s}-{t}-group", t, tuple(tags)) for s, t, tags, _ in CONSUMERS]
# A failed order's request waits (bounded) until its cancel is handled everywhere: see settle().
SETTLE_TAGS = (TAG_CANCEL,)
SETTLE_TIMEOUT_S = 2.0


@dataclass
class Shop:
    settings: Settings
    role: str
    ids: IdWorker
    faults: Faults
    tokens: Tokens
    admin_token: str
    dbs: dict[str, Database]
    outboxes: dict[str, Outbox]
    broker: Any  # EmbeddedBroker, RabbitBroker, or None (the sandbox role)
    relays: list[Relay]
    handlers: dict[str, Any]
    users: Any
    goods: Any
    coupons: Any
    orders: Any
    pay: Any
    sandbox: Any  # the Sandbox here, or an HttpPlatform to it elsewhere
    http: httpx.AsyncClient | None = None  # the sandbox's client for its notifications
    registry: ZkRegistry | None = None
    exposed: dict[str, Any] = field(default_factory=dict)  # what this process serves over gRPC
    remote: list[Any] = field(default_factory=list)  # gRPC clients, closed on stop
    rpc_server: Any = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def connect(self) -> None:
        for db in self.dbs.values():
            await db.connect()
        if self.broker is not None:
            await self.broker.connect()
        if self.registry is not None:
            await self.registry.start()

    async def close(self) -> None:
        # The registry first: a clean stop leaves it at once, so nobody calls a closing process.
        if self.registry is not None:
            await self.registry.close()
        if self.rpc_server is not None:
            await self.rpc_server.stop(1.0)
            self.rpc_server = None
        for client in self.remote:
            await client.close()
        for db in self.dbs.values():
            await db.close()
        if self.broker is not None:
            await self.broker.close()
        if self.sandbox is not None:
            await self.sandbox.close()
        if self.http is not None:
            await self.http.aclose()

    async def start(self) -> None:
        """Connect; serve and register over gRPC (distributed); run the relays, the consumers and
        the sandbox's notifier (which also resume what a crash left)."""
        await self.connect()
        if self.role in SERVICES and self.registry is not None:
            s = self.settings
            self.rpc_server = await rpc.serve(self.exposed, s.rpc_host, s.rpc_port, faults=self.faults)
            address = f"{s.advertise_host or _advertised(s.rpc_host)}:{self.rpc_server.port}"
            for name in self.exposed:
                await self.registry.register(rpc.SERVICES[name].full_name, address, application=self.role)
            await self.registry.register(rpc.ADMIN_SERVICE, address, application=self.role)
            log.info("%s serving gRPC on %s", self.role, address)
        self._tasks = [asyncio.create_task(r.run(), name=f"relay-{r.name}") for r in self.relays]
        if self.broker is not None and self.broker.subscriptions:
            self._tasks.append(asyncio.create_task(self.broker.run(), name="consumers"))
        if isinstance(self.sandbox, Sandbox):
            self._tasks.append(asyncio.create_task(self.sandbox.run(), name="sandbox"))

    async def stop(self) -> None:
        if self.registry is not None:
            await self.registry.close()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks = []
        if self.broker is not None:
            await self.broker.drain()
        await self.close()

    # -- the operator's --------------------------------------------------------------------------

    async def arm_fault(self, point: str, action: str, times: int | None, delay_ms: int) -> None:
        """Here, and in every process of the distributed shop (faults live where their points are)."""
        self.faults.arm(point, action, times, delay_ms)
        await self._every_process("ArmFault", {"point": point, "action": action, "times": times, "delayMs": delay_ms})

    async def clear_faults(self) -> None:
        self.faults.clear()
        await self._every_process("ClearFaults", {})

    async def _every_process(self, method: str, body: dict[str, Any]) -> None:
        if self.registry is None:
            return
        view = await self.registry.providers(rpc.ADMIN_SERVICE)
        results = await asyncio.gather(*(rpc.admin_call(a, method, body) for a in view.addresses),
                                       return_exceptions=True)
        failed = [f"{a}: {r!r}" for a, r in zip(view.addresses, results, strict=True) if isinstance(r, BaseException)]
        if failed:
            raise ServiceUnavailable(f"{method} did not reach every process: {'; '.join(failed)}")

    async def audit(self) -> AuditReport:
        """Each service's facts are read one after another, not in one snapshot: work that moves
        between two reads can look like a violation for an instant. A real violation stays, so
        only what two readings a moment apart both find is reported."""
        missing = [s for s in SERVICES if s not in self.handlers]
        if missing:
            raise ServiceUnavailable(f"the audit reads every service's database; this process lacks {missing}")
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
        pending = max(pending, await self._pending()) + sum(o.order_status == OrderStatus.UNCONFIRMED for o in orders.values())
        dead = await self.broker.dead()
        violations = check(orders, goods, users, coupons, pending=pending, dead=dead, payments=payments, logged=logged)
        return AuditReport(consistent=not violations, violations=violations, pending=pending)

    async def _pending(self) -> int:
        n = await self.broker.pending()
        for s, outbox in self.outboxes.items():
            n += await outbox.count_due(self.dbs[s])
        return n


def _advertised(host: str) -> str:
    """The host others reach a server by: the one it listens on, unless that is every interface;
    then this machine's (container's) address. SHOP_ADVERTISE_HOST overrides both."""
    if host not in ("0.0.0.0", "::", ""):
        return host
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return socket.gethostname()


def migrate(settings: Settings, services: tuple[str, ...] = SERVICES) -> None:
    for service in services:
        upgrade(service, settings.db_url(service))


def prepare(settings: Settings) -> None:
    """What the processes of a distributed shop share, made once before any starts (`shop prepare`,
    `shop cluster up`, the compose file's prepare job): each service's database where missing, the
    migrations, and in the data dir the token secret (unless SHOP_TOKEN_SECRET is set) and the
    sandbox's key pair. Several processes starting at once would race to make them."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    for service in SERVICES:
        url = make_url(settings.db_url(service))
        if url.get_backend_name() != "sqlite" and url.database:
            ensure_databases(url.set(database=None).render_as_string(hide_password=False), [url.database])
    migrate(settings)
    if not settings.token_secret:
        load_or_create_secret(settings.data_dir / "token.secret")
    load_or_create_key_pair(settings.data_dir)


class _Wiring:
    """Builds, once each, the parts one process needs for its role."""

    def __init__(self, settings: Settings, role: str) -> None:
        self.s = settings
        self.role = role
        distributed = role != "all"
        if distributed and role != "sandbox" and not (settings.registry_url and settings.broker_url):
            raise ValueError(f"role {role!r} is the distributed mode: set SHOP_REGISTRY_URL and SHOP_BROKER_URL")
        if role == "all":
            self.local = set(SERVICES)
        elif role in SERVICES:
            self.local = {role}
        else:
            self.local = set()
        # A front door reads every database it is given, for the audit (never for the hot path).
        self.read = set(SERVICES) if role == "all" or (role == "web" and all(
            getattr(settings, f"{s}_db_url") for s in SERVICES)) else set(self.local)
        self.ids = IdWorker(settings.worker_id, settings.datacenter_id)
        self.faults = Faults(settings.faults)
        self.registry = (
            ZkRegistry(settings.registry_url, settings.registry_root, settings.registry_session_timeout_s)
            if distributed and settings.registry_url else None
        )
        self.dbs = {s: open_database(settings.db_url(s)) for s in sorted(self.read)}
        self.outboxes = {s: Outbox(MODELS[s].outbox, f"{s}-producer") for s in self.dbs}
        self.inboxes = {s: Inbox(MODELS[s].inbox) for s in self.dbs}
        self.remote: list[Any] = []
        self._handlers: dict[str, Any] = {}
        self._clients: dict[str, Any] = {}
        self.sandbox: Any = None
        self.http: httpx.AsyncClient | None = None
        self.settle_relay: Relay | None = None
        self.broker: Any = None

    def deadline(self, service: str, factor: float = 1.0) -> float | None:
        # A SQLite service runs inline on the loop: nothing in it can wait, so no timer is needed.
        if service in self.local and isinstance(self.dbs[service], SqliteDatabase) and factor == 1.0:
            return None
        return self.s.rpc_deadline_s * factor

    def client(self, service: str, factor: float = 1.0) -> Any:
        """How this process calls `service`: directly when it runs here, else over gRPC."""
        key = f"{service}x{factor}"
        if key not in self._clients:
            if service in self.local:
                self._clients[key] = local_client(self.handler(service), service, self.deadline(service, factor))
            else:
                assert self.registry is not None, f"{service} does not run here and there is no registry"
                target = Discovered(self.registry, rpc.SERVICES[service].full_name)
                c = rpc.CLIENTS[service](target, self.s.rpc_deadline_s * factor)
                self.remote.append(c)
                self._clients[key] = c
        return self._clients[key]

    def handler(self, service: str) -> Any:
        if service not in self._handlers:
            self._handlers[service] = self._make_handler(service)
        return self._handlers[service]

    def _make_handler(self, service: str) -> Any:
        s, db = self.s, self.dbs[service]
        if service == "user":
            hasher = PasswordHasher(time_cost=s.password_time_cost, memory_cost=s.password_memory_kib)
            return UserHandlers(db, self.ids, hasher)
        if service == "goods":
            return GoodsHandlers(db, self.ids)
        if service == "coupon":
            return CouponHandlers(db, self.ids)
        if service == "log":
            return LogHandlers(db)
        if service == "order":
            return OrderHandlers(
                db, self.ids, self.outboxes["order"], users=self.client("user"), goods=self.client("goods"),
                coupons=self.client("coupon"), faults=self.faults, cancel_after_s=s.order_cancel_after_s,
                pay_timeout_s=s.order_pay_timeout_s,
            )
        if service == "pay":
            private_pem, public_pem = load_or_create_key_pair(s.data_dir)
            platform_key = s.pay_platform_public_key.read_bytes() if s.pay_platform_public_key else public_pem
            return PayHandlers(
                db, self.ids, self.outboxes["pay"], orders=self.client("order"), platform=self.platform(),
                verifier=Verifier(platform_key), notify_url=s.pay_notify_url, faults=self.faults,
                window_s=s.pay_notify_window_s,
            )
        raise ValueError(service)

    def platform(self) -> Any:
        """The payment platform: the sandbox in this process (embedded, or the sandbox role), else
        the sandbox process over HTTP."""
        if self.sandbox is None:
            if self.role in ("all", "sandbox"):
                private_pem, public_pem = load_or_create_key_pair(self.s.data_dir)
                self.http = httpx.AsyncClient()
                self.sandbox = Sandbox(
                    SqliteDatabase(str((self.s.data_dir / "sandbox.db").resolve())), private_pem, public_pem,
                    send=http_sender(self.http), schedule_s=self.s.notify_schedule(), ids=self.ids,
                )
            else:
                self.sandbox = HttpPlatform(self.s.sandbox_url, timeout_s=self.s.rpc_deadline_s)
        if isinstance(self.sandbox, Sandbox):
            return local_client(self.sandbox, "platform", None)
        return self.sandbox

    def subscriptions(self) -> list[Subscription]:
        out = []
        for service, topic, tags, before in CONSUMERS:
            if service in self.local:
                h = self.handler(service)
                out.append(Subscription(
                    group=f"{service}-{topic}-group", service=service, topic=topic, db=self.dbs[service],
                    inbox=self.inboxes[service], handlers={t: getattr(h, m) for t, m in tags.items()},
                    before={t: getattr(h, m) for t, m in before.items()},
                ))
        return out

    def make_broker(self) -> Any:
        s = self.s
        subs = self.subscriptions()
        if s.broker_url:
            return RabbitBroker(
                s.broker_url, subs, self.faults, max_attempts=s.message_max_attempts,
                backoff_base_ms=s.message_backoff_ms, backoff_cap_ms=s.message_backoff_cap_ms,
                prefix=s.broker_prefix, topology=TOPOLOGY, report_tags=SETTLE_TAGS,
                listen_for_reports="order" in self.local,
            )
        broker_db = SqliteDatabase(str(s.broker_path()))
        broker_metadata.create_all(_sync_engine(broker_db.path))
        return EmbeddedBroker(
            broker_db, subs, self.faults, max_attempts=s.message_max_attempts,
            backoff_base_ms=s.message_backoff_ms, backoff_cap_ms=s.message_backoff_cap_ms,
        )


def bootstrap(settings: Settings | None = None, *, run_migrations: bool = True, role: str = "all") -> Shop:
    """The shop for one process. role "all" is the embedded mode; any other is one process of the
    distributed shop (see the module's docstring)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    settings = settings or Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    w = _Wiring(settings, role)
    if run_migrations and w.local:
        migrate(settings, tuple(sorted(w.local)))
    secret = settings.token_secret or load_or_create_secret(settings.data_dir / "token.secret")
    tokens = Tokens(secret, settings.token_ttl_s)
    admin_token = settings.admin_token or secrets.token_urlsafe(24)

    if role == "sandbox":
        w.platform()
        return Shop(
            settings=settings, role=role, ids=w.ids, faults=w.faults, tokens=tokens, admin_token=admin_token,
            dbs={}, outboxes={}, broker=None, relays=[], handlers={}, users=None, goods=None, coupons=None,
            orders=None, pay=None, sandbox=w.sandbox, http=w.http,
        )

    # Every handler this process has a database for: its own services' (and, on the front door,
    # the others' too, read by the audit only).
    handlers = {s: w.handler(s) for s in SERVICES if s in w.dbs}
    broker = w.make_broker()
    relays = [
        Relay(s, w.dbs[s], w.outboxes[s], broker,
              guards={TAG_CANCEL: handlers["order"].guard_cancel} if s == "order" else None)
        for s in SERVICES if s in w.local
    ]
    by_name = {r.name: r for r in relays}
    if "pay" in by_name:
        handlers["pay"].on_outbox = by_name["pay"].wake
    if "order" in by_name:
        order_relay = by_name["order"]

        async def settle(tag: str, key: str) -> None:
            # A failed, cancelled or refunded order: publish its message now and wait (bounded) for
            # every group to handle it, so the caller sees stock, coupon and balance already back.
            # Best effort: with the broker away the message stays in the outbox and leaves when it
            # is back; the caller's answer does not wait for that.
            try:
                await order_relay.run_once()
            except Exception as exc:  # noqa: BLE001
                log.warning("could not publish %s/%s now (%r); the relay will", tag, key, exc)
                return
            await broker.wait_handled(tag, key, timeout_s=SETTLE_TIMEOUT_S)

        handlers["order"].settle = settle
    if role != "all":
        w.platform()  # the pay service's, and the front door's proxy for /sandbox
    return Shop(
        settings=settings, role=role, ids=w.ids, faults=w.faults, tokens=tokens, admin_token=admin_token,
        dbs=w.dbs, outboxes=w.outboxes, broker=broker, relays=relays, handlers=handlers,
        users=w.client("user"), goods=w.client("goods"), coupons=w.client("coupon"),
        # Placing an order waits on the others and may settle a failure: a longer deadline.
        orders=w.client("order", 4), pay=w.client("pay", 2), sandbox=w.sandbox, http=w.http,
        registry=w.registry, exposed={s: handlers[s] for s in w.local if s in rpc.SERVICES},
        remote=w.remote,
    )


def _sync_engine(path: str) -> Any:
    import sqlalchemy as sa

    return sa.create_engine(f"sqlite:///{path}")
