"""One process of the shop as bootstrap() builds it: what its front doors call (`Shop`), and what
runs in it and must be started and stopped in order (`Runtime`)."""
from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc
import httpx

from shop.admin.auditor import Auditor
from shop.admin.operator import Operator
from shop.infra import metrics
from shop.infra.auth import Tokens
from shop.infra.config import Settings
from shop.infra.db import Database
from shop.infra.faults import Faults
from shop.infra.messaging import Broker, Relay, Subscription
from shop.infra.registry import ZkRegistry
from shop.infra.rpc.admin import ADMIN_SERVICE
from shop.infra.rpc.client import GrpcClient
from shop.infra.rpc.server import Service, serve
from shop.infra.tls import Tls
from shop.infra.tracing import Tracing
from shop.sandbox.client import HttpPlatform
from shop.sandbox.platform import Sandbox
from shop.services.coupon.contracts import CouponService
from shop.services.goods.contracts import GoodsService
from shop.services.log.contracts import LogService
from shop.services.order.contracts import OrderService
from shop.services.pay.contracts import PayService
from shop.services.user.contracts import UserService

log = logging.getLogger("shop")


@dataclass
class Runtime:
    """What runs in this process. start() connects, serves and registers over gRPC (a service
    process of the distributed mode), and runs the relays, the consumers and the sandbox's
    notifier, which also resume what a crash left; stop() undoes it in the reverse order."""

    settings: Settings
    role: str
    dbs: dict[str, Database]  # by service: the services that run here
    broker: Broker
    relays: list[Relay]
    subscriptions: list[Subscription]  # the consumer groups that run here
    faults: Faults
    registry: ZkRegistry | None = None
    exposed: Sequence[tuple[Service, object]] = ()  # what this process serves over gRPC
    tls: Tls | None = None  # how it serves it: mutual TLS, unless SHOP_RPC_TLS=off
    remote: list[GrpcClient] = field(default_factory=list)  # gRPC clients, closed on stop
    sandbox: Sandbox | None = None  # the payment platform stand-in, when it runs in this process
    platform: HttpPlatform | None = None  # or the client of the sandbox process
    http: httpx.AsyncClient | None = None  # the sandbox's, for its notifications
    tracing: Tracing = Tracing.OFF  # this process's (the front door instruments its app with it)
    auditor: Auditor | None = None  # the audit's background checker, where GET /admin/audit is served
    _rpc_server: grpc.aio.Server | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def connect(self) -> None:
        for db in self.dbs.values():
            await db.connect()
        await self.broker.connect()
        if self.registry is not None:
            await self.registry.start()

    async def close(self) -> None:
        # The registry first: a clean stop leaves it at once, so nobody calls a closing process.
        if self.registry is not None:
            await self.registry.close()
        if self._rpc_server is not None:
            await self._rpc_server.stop(1.0)
            self._rpc_server = None
        for client in self.remote:
            await client.close()
        for db in self.dbs.values():
            await db.close()
        await self.broker.close()
        for platform in (self.sandbox, self.platform):
            if platform is not None:
                await platform.close()
        if self.http is not None:
            await self.http.aclose()

    async def start(self) -> None:
        await self.connect()
        # /metrics before the registry: once registered, callers come, and a start that fails after
        # that leaves them an address that refuses them until the registry's session times out.
        if self.settings.metrics_port is not None and self.exposed:
            metrics.serve(self.settings.metrics_port, self.settings.rpc_host)
        if self.registry is not None and self.exposed:
            s = self.settings
            self._rpc_server = await serve(self.exposed, s.rpc_host, s.rpc_port, tls=self.tls, faults=self.faults,
                                           tracing=self.tracing)
            address = f"{s.advertise_host or _advertised(s.rpc_host)}:{self._rpc_server.port}"
            for service, _ in self.exposed:
                await self.registry.register(service.full_name, address, application=self.role)
            await self.registry.register(ADMIN_SERVICE, address, application=self.role)
            log.info("%s serving gRPC on %s", self.role, address)
        self._tasks = [asyncio.create_task(r.run(), name=f"relay-{r.name}") for r in self.relays]
        samples = [r.sample for r in self.relays] + ([self._sample_dead] if self.subscriptions else [])
        if samples:  # a front door has no outbox and no consumer group of its own
            self._tasks.append(asyncio.create_task(metrics.Sampler(samples).run(), name="metrics"))
        if self.subscriptions:
            self._tasks.append(asyncio.create_task(self.broker.run(self.subscriptions), name="consumers"))
        if self.sandbox is not None:
            self._tasks.append(asyncio.create_task(self.sandbox.run(), name="sandbox"))
        if self.auditor is not None:
            self._tasks.append(asyncio.create_task(self.auditor.run(), name="auditor"))

    async def _sample_dead(self) -> None:
        counts = await self.broker.dead_counts()
        for sub in self.subscriptions:
            metrics.dead_sampled(sub.group, counts.get(sub.group, 0))

    async def stop(self) -> None:
        if self.registry is not None:
            await self.registry.close()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks = []
        if self.auditor is not None:
            await self.auditor.stop()  # a recount in progress
        await self.broker.drain()
        await self.close()
        await self.tracing.shutdown()  # the last spans out, after the last work that made them


@dataclass
class Shop:
    """What the front doors and the command line use: the six services (here, or over gRPC), the
    operator's view, the tokens, and the payment platform; and the runtime that starts and stops."""

    settings: Settings
    role: str
    tokens: Tokens
    admin_token: str
    faults: Faults
    users: UserService
    goods: GoodsService
    coupons: CouponService
    orders: OrderService
    pay: PayService
    log: LogService
    operator: Operator
    sandbox: Sandbox | HttpPlatform | None  # what /sandbox serves: the platform here, or a proxy to it
    runtime: Runtime

    async def start(self) -> None:
        await self.runtime.start()

    async def stop(self) -> None:
        await self.runtime.stop()


def freeze_the_lasting() -> None:
    """Called by a shop process once it has started (cli.py), not by one started inside another
    program (the tests): what the process keeps for its life is built by then (modules, routes,
    schemas, services, connections: about 190,000 objects), and Python's full collection walks
    every one of them, the event loop stopped meanwhile: 90-120 ms here, every few seconds under
    load, the payment notification's answer p99 (issue 13). Frozen, they are never walked again; the
    full collections left walk only what was made since (about 12,000 objects, 2-4 ms)."""
    gc.collect()  # the start's own garbage is not kept forever
    gc.freeze()


def _advertised(host: str) -> str:
    """The host others reach a server by: the one it listens on, unless that is every interface;
    then this machine's (container's) address. SHOP_ADVERTISE_HOST overrides both."""
    if host not in ("0.0.0.0", "::", ""):
        return host
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return socket.gethostname()
