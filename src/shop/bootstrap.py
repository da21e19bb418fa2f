"""Wires the shop for a mode and a role. Only this module knows which adapters a mode uses.

Embedded (role "all", no registry): every service in one process, a SQLite file per service (or
any URL per service), RPC as direct calls through LocalClient, messages through each service's
outbox, the embedded broker (or RabbitMQ, given SHOP_BROKER_URL) and each consumer group's inbox.

Distributed (SHOP_REGISTRY_URL and SHOP_BROKER_URL set, one role per process, `shop serve ROLE`):
- a service role (user, goods, coupon, order, pay, log) runs that service's handlers on its own
  database, serves them over gRPC, registers them in Zookeeper, relays its own outbox to RabbitMQ
  and consumes its own groups; the services it calls are gRPC clients over the registry.
- a web role (web: all of API.md; order-web, pay-web: their parts) serves HTTP by calling the
  services; the operator's audit asks each service for its own facts.
- sandbox runs the payment platform stand-in on its own (sandbox_platform()); the others reach it
  over HTTP.

The handlers are the same objects in both modes: only what they are handed differs. Each service
declares its own parts (services/catalog.py); this module builds them in dependency order, so that
nothing is patched in after construction.
"""
from __future__ import annotations

import functools
import logging
import secrets
from typing import Any

import httpx
from argon2 import PasswordHasher
from sqlalchemy.engine import make_url

from shop.admin.auditor import Auditor
from shop.admin.operator import Operator
from shop.admin.recount_child import recount_in_child
from shop.common.ids import IdWorker
from shop.infra import metrics
from shop.infra.auth import Tokens, load_or_create_secret
from shop.infra.config import SERVICES, Settings
from shop.infra.db import Database, SqliteDatabase, ensure_databases, open_database, weak_durability
from shop.infra.faults import Faults, with_faults
from shop.infra.files import private_dir
from shop.infra.messaging import Broker, EmbeddedBroker, Inbox, Outbox, Relay, Settler, Subscription
from shop.infra.rabbit import RabbitBroker
from shop.infra.registry import Discovered, ZkRegistry
from shop.infra.rpc.client import GrpcClient
from shop.infra.rpc.local import local_client
from shop.infra.signing import Verifier, load_or_create_key_pair
from shop.infra.tls import ensure_material, tls_dir
from shop.infra.tls import load as load_tls
from shop.infra.tracing import Tracing, process_tracing
from shop.runtime import Runtime, Shop
from shop.sandbox.client import HttpPlatform, NoPlatform
from shop.sandbox.notify import http_sender
from shop.sandbox.platform import Sandbox
from shop.services.catalog import CONSUMERS, PARTS, TOPOLOGY, migrate_service
from shop.services.coupon.contracts import CouponService
from shop.services.coupon.handlers import CouponHandlers
from shop.services.goods.contracts import GoodsService
from shop.services.goods.handlers import GoodsHandlers
from shop.services.log.contracts import LogService
from shop.services.log.handlers import LogHandlers
from shop.services.order.contracts import TAG_CANCEL, OrderService
from shop.services.order.handlers import OrderHandlers, guard_cancel
from shop.services.order.participants import FAULTS_AFTER, FAULTS_BEFORE, Participants
from shop.services.order.repository import SagaStore
from shop.services.order.sold_out import sold_out_gate
from shop.services.pay.contracts import PaymentPlatform, PayService
from shop.services.pay.handlers import PayHandlers
from shop.services.user.contracts import UserService
from shop.services.user.domain import LoginLimits
from shop.services.user.handlers import UserHandlers

WEB_ROLES = ("web", "order-web", "pay-web")
ROLES = ("all", *SERVICES, *WEB_ROLES, "sandbox")
ADMIN_ROLES = ("all", "web")  # the roles that serve /admin (app.ROUTERS): the audit's checker runs there
# A failed order's request waits (bounded) until its cancel is handled everywhere (Settler).
SETTLE_TAGS = (TAG_CANCEL,)
SETTLE_TIMEOUT_S = 2.0
# The saga's steps as shop_saga_step_seconds labels them: the participants' and the order's own.
SAGA_STEPS = {"reduce_stock": "reduce_stock", "use_coupon": "use_coupon", "pay_from_balance": "pay_from_balance",
              "save_pre_order": "pre_order", "confirm": "confirm"}
# Only these services send messages (the others only consume): only they have a relay.
SENDERS = ("order", "pay")


def migrate(settings: Settings, services: tuple[str, ...] = SERVICES) -> None:
    for service in services:
        migrate_service(service, settings.db_url(service))


def prepare(settings: Settings) -> None:
    """What the processes of a distributed shop share, made once before any starts (`shop prepare`,
    `shop cluster up`, the compose file's prepare job): each service's database where missing, the
    migrations, and in the data dir the token secret (unless SHOP_TOKEN_SECRET is set), the
    sandbox's key pair and, unless the operator brings their own, the CA and every role's
    certificate for the calls between processes (infra/tls.py). Several processes starting at once
    would race to make them. Warns of a database server that acknowledges commits it could lose
    (infra/db/durability.py)."""
    private_dir(settings.data_dir)
    for service in SERVICES:
        url = make_url(settings.db_url(service))
        if url.get_backend_name() != "sqlite" and url.database:
            ensure_databases(url.set(database=None).render_as_string(hide_password=False), [url.database])
    migrate(settings)
    # Said, not refused: the operator may have reasons (a test bed), and the shop runs either way.
    for warning in weak_durability([settings.db_url(s) for s in SERVICES]):
        logging.getLogger("shop.prepare").warning(warning)
    if not settings.token_secret:
        load_or_create_secret(settings.data_dir / "token.secret")
    merchant_key(settings)
    load_or_create_key_pair(settings.data_dir)
    if settings.rpc_tls == "on" and not (settings.tls_ca and settings.tls_cert and settings.tls_key):
        ensure_material(tls_dir(settings))


def merchant_key(settings: Settings) -> str:
    """The secret the shop presents to the payment platform (the sandbox checks it)."""
    return settings.merchant_key or load_or_create_secret(settings.data_dir / "merchant.key")


def sandbox_platform(settings: Settings) -> tuple[Sandbox, httpx.AsyncClient]:
    """The payment platform stand-in, with the HTTP client it notifies the shop through."""
    private_pem, public_pem = load_or_create_key_pair(private_dir(settings.data_dir))
    http = httpx.AsyncClient()
    sandbox = Sandbox(
        SqliteDatabase(str((settings.data_dir / "sandbox.db").resolve()), settings.sqlite_durability),
        private_pem, public_pem,
        send=http_sender(http), schedule_s=settings.notify_schedule(), ids=IdWorker(settings.worker_id,
                                                                                    settings.datacenter_id),
        notify_url=settings.pay_notify_url, merchant_key=merchant_key(settings),
    )
    return sandbox, http


class _Wiring:
    """Builds, once each and in dependency order, the parts one process needs for its role."""

    def __init__(self, settings: Settings, role: str, tracing: Tracing) -> None:
        self.s = settings
        self.role = role
        self.tracing = tracing
        if role != "all" and not (settings.registry_url and settings.broker_url):
            raise ValueError(f"role {role!r} is the distributed mode: set SHOP_REGISTRY_URL and SHOP_BROKER_URL")
        self.local = set(SERVICES) if role == "all" else {role} & set(SERVICES)
        self.ids = IdWorker(settings.worker_id, settings.datacenter_id)
        self.faults = Faults(settings.faults)
        self.registry = (
            ZkRegistry(settings.registry_url, settings.registry_root, settings.registry_session_timeout_s,
                       auth=settings.registry_auth)
            if role != "all" and settings.registry_url else None
        )
        # The calls between processes: this role's certificate (the embedded shop makes none).
        self.tls = load_tls(settings, role) if self.registry is not None else None
        self.dbs: dict[str, Database] = {
            s: open_database(settings.db_url(s), settings.sqlite_durability) for s in sorted(self.local)
        }
        self.outboxes = {s: Outbox(PARTS[s].outbox, f"{s}-producer") for s in self.dbs}
        self.broker = self._broker()
        self.relays = {
            s: Relay(s, self.dbs[s], self.outboxes[s], self.broker,
                     guards={TAG_CANCEL: guard_cancel} if s == "order" else None,
                     retention_s=settings.message_retention_days * 86400, tracing=tracing)
            for s in SENDERS if s in self.local
        }
        self.remote: list[GrpcClient] = []
        self.handlers: dict[str, Any] = {}
        self._clients: dict[tuple[str, float], Any] = {}
        self.sandbox: Sandbox | None = None
        self.http: httpx.AsyncClient | None = None
        self.http_platform: HttpPlatform | None = None

    def _broker(self) -> Broker:
        s = self.s
        if s.broker_url:
            return RabbitBroker(
                s.broker_url, TOPOLOGY, self.faults, max_attempts=s.message_max_attempts,
                backoff_base_ms=s.message_backoff_ms, backoff_cap_ms=s.message_backoff_cap_ms,
                prefix=s.broker_prefix, report_tags=SETTLE_TAGS, listen_for_reports="order" in self.local,
                tracing=self.tracing,
            )
        return EmbeddedBroker(
            SqliteDatabase(str(s.broker_path()), s.sqlite_durability), TOPOLOGY, self.faults,
            max_attempts=s.message_max_attempts,
            backoff_base_ms=s.message_backoff_ms, backoff_cap_ms=s.message_backoff_cap_ms, tracing=self.tracing,
        )

    def client(self, service: str, factor: float = 1.0) -> Any:
        """How this process calls `service`: directly when it runs here, else over gRPC."""
        key = (service, factor)
        if key not in self._clients:
            if service in self.local:
                # A SQLite service runs inline on the loop: nothing in it waits but for the disk (its
                # commits' flush, durable.py), which a deadline would not hurry, so no timer.
                inline = isinstance(self.dbs[service], SqliteDatabase) and factor == 1.0
                deadline = None if inline else self.s.rpc_deadline_s * factor
                self._clients[key] = local_client(self.handler(service), service, deadline, rpc=PARTS[service].rpc,
                                                  tracing=self.tracing)
            else:
                assert self.registry is not None, f"{service} does not run here and there is no registry"
                rpc = PARTS[service].rpc
                c = GrpcClient(rpc, Discovered(self.registry, rpc.full_name), self.s.rpc_deadline_s * factor,
                               tls=self.tls, tracing=self.tracing, in_flight=self.s.rpc_in_flight or None,
                               hold_s=self.s.rpc_hold_ms / 1000)
                self.remote.append(c)
                self._clients[key] = c
        return self._clients[key]

    def handler(self, service: str) -> Any:
        if service not in self.handlers:
            self.handlers[service] = self._make_handler(service)
        return self.handlers[service]

    def _make_handler(self, service: str) -> Any:
        s, db = self.s, self.dbs[service]
        if service == "user":
            return UserHandlers(db, self.ids, PasswordHasher(time_cost=s.password_time_cost,
                                                             memory_cost=s.password_memory_kib),
                                LoginLimits(s.login_max_failures, round(s.login_window_s * 1000)))
        if service == "goods":
            return GoodsHandlers(db, self.ids)
        if service == "coupon":
            return CouponHandlers(db, self.ids)
        if service == "log":
            return LogHandlers(db)
        if service == "order":
            return OrderHandlers(
                db, self.ids, self.outboxes["order"], participants=self.participants(),
                store=metrics.timed_steps(SagaStore(db, self.outboxes["order"]), SAGA_STEPS),
                settle=Settler(self.relays["order"], self.broker, SETTLE_TIMEOUT_S).settle,
                cancel_after_s=s.order_cancel_after_s, pay_timeout_s=s.order_pay_timeout_s,
            )
        if service == "pay":
            _, public_pem = load_or_create_key_pair(s.data_dir)
            platform_key = s.pay_platform_public_key.read_bytes() if s.pay_platform_public_key else public_pem
            return PayHandlers(
                db, self.ids, self.outboxes["pay"], orders=self.client("order"), platform=self.platform(),
                verifier=Verifier(platform_key), notify_url=s.pay_notify_url, faults=self.faults,
                wake=self.relays["pay"].wake, window_s=s.pay_notify_window_s,
            )
        raise ValueError(service)

    def participants(self) -> Participants:
        p = metrics.timed_steps(Participants(goods=self.client("goods"), coupons=self.client("coupon"),
                                     users=self.client("user")), SAGA_STEPS)
        if not self.s.faults:
            return p
        # The saga's fault points wrap its steps: the saga itself carries no hooks.
        return with_faults(p, self.faults, before=FAULTS_BEFORE, after=FAULTS_AFTER)

    def platform(self) -> PaymentPlatform:
        """The payment platform: the sandbox in this process (embedded, SHOP_SANDBOX=1), else the
        platform at SHOP_SANDBOX_URL over HTTP (the sandbox process, in the distributed mode), else
        none: creating a payment is then a 503 that says what is missing."""
        if self.role == "all" and self.s.sandbox:
            if self.sandbox is None:
                self.sandbox, self.http = sandbox_platform(self.s)
            return local_client(self.sandbox, "platform", None)
        if self.s.sandbox_url:
            if self.http_platform is None:
                self.http_platform = HttpPlatform(self.s.sandbox_url, merchant_key(self.s),
                                                  timeout_s=self.s.rpc_deadline_s)
            return self.http_platform
        return NoPlatform()

    def subscriptions(self) -> list[Subscription]:
        return [c.subscribe(self.handler(c.service), self.dbs[c.service], Inbox(PARTS[c.service].inbox),
                            self.relays[c.service].wake if c.service in self.relays else None)
                for c in CONSUMERS if c.service in self.local]


def bootstrap(settings: Settings | None = None, *, run_migrations: bool = True, role: str = "all",
              tracing: Tracing | None = None) -> Shop:
    """The shop for one process. role "all" is the embedded mode; any other is one process of the
    distributed shop (see the module's docstring); the sandbox role is sandbox_platform().
    tracing: by default as the settings and OTEL_* variables say (infra/tracing.py); tests hand one
    that keeps the spans in memory."""
    if role not in ROLES or role == "sandbox":
        raise ValueError(f"unknown role {role!r}; one of {', '.join(r for r in ROLES if r != 'sandbox')}")
    settings = settings or Settings()
    private_dir(settings.data_dir)  # also an existing one, made by an older version or by hand
    telemetry = settings.telemetry == "on"
    metrics.switch(telemetry)  # before anything is wired: what is timed is decided as it is built
    w = _Wiring(settings, role, tracing or process_tracing(telemetry, role))
    if run_migrations and w.local:
        migrate(settings, tuple(sorted(w.local)))
    secret = settings.token_secret or load_or_create_secret(settings.data_dir / "token.secret")
    users: UserService = w.client("user")
    goods: GoodsService = w.client("goods")
    coupons: CouponService = w.client("coupon")
    # Placing an order waits on the others and may settle a failure: a longer deadline.
    orders: OrderService = w.client("order", 4)
    pay: PayService = w.client("pay", 2)
    log: LogService = w.client("log")
    if settings.sandbox and role != "all":
        if not settings.sandbox_url:
            raise ValueError("SHOP_SANDBOX=1 in the distributed mode needs SHOP_SANDBOX_URL (the sandbox process)")
        w.platform()  # the front door's proxy for /sandbox
    # The embedded shop recounts in a child process (admin/recount_child.py: the GIL), which needs
    # databases another process can open; a distributed front door's recount reads through the services.
    in_child = role == "all" and not any(":memory:" in settings.db_url(s) for s in SERVICES)
    auditor = Auditor(users=users, goods=goods, coupons=coupons, orders=orders, pay=pay, log=log, broker=w.broker,
                      run_recount=functools.partial(recount_in_child, settings) if in_child else None)
    runtime = Runtime(
        settings=settings, role=role, dbs=w.dbs, broker=w.broker, relays=list(w.relays.values()),
        subscriptions=w.subscriptions(), faults=w.faults, registry=w.registry,
        exposed=[(PARTS[s].rpc, w.handler(s)) for s in sorted(w.local)] if w.registry else (), tls=w.tls,
        remote=w.remote, sandbox=w.sandbox, platform=w.http_platform, http=w.http, tracing=w.tracing,
        auditor=auditor if role in ADMIN_ROLES else None,
    )
    operator = Operator(users=users, goods=goods, coupons=coupons, orders=orders, pay=pay, log=log,
                        broker=w.broker, faults=w.faults, registry=w.registry, auditor=auditor, tls=w.tls)
    return Shop(
        settings=settings, role=role, tokens=Tokens(secret, settings.token_ttl_s),
        admin_token=settings.admin_token or secrets.token_urlsafe(24), faults=w.faults,
        users=users, goods=goods, coupons=coupons, pay=pay, log=log, operator=operator,
        # The front door's: a sold-out goods refused in this process, without a call (the audit and
        # the operator above read the service itself).
        orders=sold_out_gate(orders, settings.sold_out_ttl_s) if role in ("all", *WEB_ROLES) else orders,
        # What /sandbox serves: only with the sandbox on (a platform at SHOP_SANDBOX_URL otherwise
        # is a real one, the pay service's to call, not the public's).
        sandbox=(w.sandbox or w.http_platform) if settings.sandbox else None, runtime=runtime,
    )
