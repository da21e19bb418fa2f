"""`shop cluster up`: the whole distributed shop on this machine, one process per service.

What a supervisor (systemd, Kubernetes, docker compose's restart policy) does for a real
deployment, small enough to read: prepare what the processes share (databases and their
migrations, the token secret, the sandbox's key pair), start every role as `shop serve ROLE`,
start again any process that dies (with back-off), and on Ctrl-C or SIGTERM stop them all: each
leaves the registry, finishes its calls in flight and gives its unacknowledged deliveries back.

Every process of a role gets its own snowflake worker id, so two goods instances never mint one id.

A cluster is its name: its databases (NAME_<service>), its queues and exchanges (NAME.*) and its
registry root (/NAME; /dubbo for the default name "shop"). While it runs, its supervisor holds the
name's lock (an ephemeral node <root>/cluster-lock), so a second cluster of that name refuses to
start and `shop cluster down --purge NAME` refuses to remove it.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import signal
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from shop.cluster_lock import held_by, lock_data, session
from shop.infra.config import SERVICES, Settings
from shop.ports import Listen, _free_port, cannot_listen, free_ports, taken_ports  # noqa: F401 - free_ports: tests, benches

log = logging.getLogger("shop.cluster")

HTTP_ROLES = ("web", "sandbox", "order-web", "pay-web")  # port, port+1, port+2, port+3
DEFAULT_SCALE = {**{s: 1 for s in SERVICES}, "sandbox": 1, "web": 1, "order-web": 0, "pay-web": 0}
MAX_INSTANCES = 8
DB_URLS = {"postgresql": "postgresql://postgres@127.0.0.1:5432", "mysql": "mysql://root@127.0.0.1:3306"}
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}
RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)
STOP_GRACE_S = 10.0
# `shop serve` exits with this when its port is taken; the supervisor gives up on a process after
# this many such exits in a row rather than starting it again every few seconds for ever.
EXIT_CANNOT_LISTEN = 98  # EADDRINUSE's number on Linux
MAX_LISTEN_FAILURES = 3
LOCK_NODE = "cluster-lock"
_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


def check_name(name: str) -> str:
    """A cluster's name becomes database names, a Zookeeper path and queue names: keep it plain."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"cluster name {name!r}: lower-case letters, digits and _, starting with a letter, "
                         "at most 40 characters")
    return name


def default_data_dir(name: str) -> Path:
    """One per name, so two clusters never share their secrets, key pair or the sandbox's file."""
    return Path("./var/cluster") if name == "shop" else Path(f"./var/cluster-{name}")


def parse_scale(text: str) -> dict[str, int]:
    """"goods=2,order-web=1" over the defaults: every service 1 to 8 instances; web and the sandbox
    exactly one (they own a port); order-web and pay-web 0 or 1."""
    scale = dict(DEFAULT_SCALE)
    for part in filter(None, (p.strip() for p in text.split(","))):
        role, _, n = part.partition("=")
        role = role.strip()
        if role not in scale:
            raise ValueError(f"--scale: unknown role {role!r}; one of {', '.join(scale)}")
        try:
            count = int(n)
        except ValueError:
            raise ValueError(f"--scale: {part!r} is not ROLE=NUMBER") from None
        low, high = (1, MAX_INSTANCES) if role in SERVICES else (1, 1) if role in ("web", "sandbox") else (0, 1)
        if not low <= count <= high:
            raise ValueError(f"--scale: {role} takes {low} to {high} instances, not {count}")
        scale[role] = count
    return scale


@dataclass
class ClusterConfig:
    db: str = "postgresql"
    port: int = 8000
    scale: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_SCALE))
    data_dir: Path = Path("./var/cluster")
    name: str = "shop"  # databases NAME_<service>, queues NAME.<group>, registry root /dubbo (or /NAME)
    host: str = "127.0.0.1"
    demo: bool = False
    # The sandbox role (and the front door's /sandbox) only with SHOP_SANDBOX=1 or --demo; without
    # it the pay service calls the platform the environment names (SHOP_SANDBOX_URL), or none (503).
    sandbox: bool = False

    def __post_init__(self) -> None:
        if not self.sandbox:
            self.scale = {**self.scale, "sandbox": 0}

    def db_base_url(self) -> str:
        return os.environ.get(f"SHOP_CLUSTER_{self.db.upper()}_URL", DB_URLS[self.db])

    def db_url(self, service: str) -> str:
        return f"{self.db_base_url()}/{self.name}_{service}"

    def http_port(self, role: str) -> int:
        return self.port + HTTP_ROLES.index(role)

    def environment(self, admin_token: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """What every process is given, over the environment the cluster itself was started with
        (`base`, default this process's; so SHOP_FAULTS, the deadlines and the timeouts reach them all)."""
        env = dict(os.environ if base is None else base)
        env.setdefault("SHOP_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")
        env.setdefault("SHOP_REGISTRY_URL", "127.0.0.1:2181")
        env.setdefault("SHOP_REGISTRY_ROOT", "/dubbo" if self.name == "shop" else f"/{self.name}")
        env.setdefault("SHOP_BROKER_PREFIX", self.name)
        env["SHOP_DATA_DIR"] = str(self.data_dir.resolve())
        env["SHOP_ADMIN_TOKEN"] = admin_token
        env["SHOP_SANDBOX"] = "1" if self.sandbox else "0"
        if self.sandbox:
            env["SHOP_SANDBOX_URL"] = f"http://{self.host}:{self.http_port('sandbox')}"
        env["SHOP_PAY_NOTIFY_URL"] = f"http://{self.host}:{self.http_port('web')}/pay/callbackPayment"
        for s in SERVICES:
            env[f"SHOP_{s.upper()}_DB_URL"] = self.db_url(s)
        return env


@dataclass
class Child:
    """One process slot: a role's n-th instance, started again with the same worker id if it dies."""

    role: str
    index: int
    worker_id: int
    argv: list[str]
    env: dict[str, str]
    proc: asyncio.subprocess.Process | None = None
    restarts: int = 0
    listen_failures: int = 0  # exits in a row with EXIT_CANNOT_LISTEN

    @property
    def name(self) -> str:
        return self.role if self.index == 0 else f"{self.role}-{self.index + 1}"

    async def spawn(self) -> None:
        env = dict(self.env, SHOP_WORKER_ID=str(self.worker_id), SHOP_PROCESS_NAME=self.name)
        self.proc = await asyncio.create_subprocess_exec(*self.argv, env=env, preexec_fn=_die_with_parent)
        log.info("started %s (pid %d)", self.name, self.proc.pid)


def _die_with_parent() -> None:
    """Runs in the child before it starts: on Linux it gets SIGTERM when the supervisor dies, even
    by SIGKILL, so no orphan keeps serving (and registering) on its own."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the supervisor's own stop is all there is
        pass


def children(config: ClusterConfig, env: dict[str, str]) -> list[Child]:
    """One slot per process. A service process (gRPC only) also gets a port of its own for
    GET /metrics, kept across its restarts; the HTTP roles serve /metrics on their port."""
    out = []
    worker = 0
    planned = {config.http_port(role) for role in HTTP_ROLES}
    for role, count in config.scale.items():
        for i in range(count):
            argv = [sys.executable, "-m", "shop", "serve", role]
            child_env = env
            if role in HTTP_ROLES:
                argv += ["--host", config.host, "--port", str(config.http_port(role))]
            else:
                planned.add(port := _free_port(config.host, planned))
                child_env = dict(env, SHOP_METRICS_PORT=str(port))
            out.append(Child(role, i, worker, argv, child_env))
            worker += 1
    return out


def write_scrape_targets(config: ClusterConfig, kids: list[Child]) -> Path:
    """Prometheus's file-based discovery (file_sd_configs): every process's /metrics address."""
    targets = []
    for c in kids:
        port = config.http_port(c.role) if c.role in HTTP_ROLES else int(c.env["SHOP_METRICS_PORT"])
        targets.append({"targets": [f"{config.host}:{port}"],
                        "labels": {"job": "shop", "cluster": config.name, "role": c.role, "process": c.name}})
    path = (config.data_dir / "prometheus-targets.json").resolve()
    path.write_text(json.dumps(targets, indent=2) + "\n")
    return path


def listens(config: ClusterConfig, kids: list[Child]) -> list[Listen]:
    """Every port the processes will bind. A service's gRPC port is any free one (port 0, bound at
    once and registered) unless SHOP_RPC_PORT names one; its /metrics port is picked by children()."""
    out = []
    for c in kids:
        if c.role in HTTP_ROLES:
            out.append(Listen(c.name, "HTTP", config.host, config.http_port(c.role)))
            continue
        host = c.env.get("SHOP_RPC_HOST", "127.0.0.1")
        if int(c.env.get("SHOP_RPC_PORT") or 0):
            out.append(Listen(c.name, "gRPC", host, int(c.env["SHOP_RPC_PORT"])))
        out.append(Listen(c.name, "/metrics", host, int(c.env["SHOP_METRICS_PORT"])))
    return out


def prepare(config: ClusterConfig) -> None:
    """Databases, migrations and shared secrets (bootstrap.prepare)."""
    from shop.bootstrap import prepare as prepare_shop

    db_urls: dict[str, Any] = {f"{s}_db_url": config.db_url(s) for s in SERVICES}
    prepare_shop(Settings(data_dir=config.data_dir, **db_urls))


async def wait_ready(config: ClusterConfig, env: dict[str, str], timeout_s: float = 120.0) -> None:
    """Until every service process is registered and the HTTP roles answer /healthz."""
    from shop.infra.rpc.admin import ADMIN_SERVICE

    services = sum(n for r, n in config.scale.items() if r in SERVICES)
    async with asyncio.timeout(timeout_s):
        async with session(env) as registry:
            view = await registry.providers(ADMIN_SERVICE)
            while len(view.addresses) < services:
                await asyncio.sleep(0.1)
        async with httpx.AsyncClient() as http:
            for role in HTTP_ROLES:
                if config.scale.get(role):
                    url = f"http://{config.host}:{config.http_port(role)}/healthz"
                    while True:
                        try:
                            if (await http.get(url, timeout=1.0)).status_code == 200:
                                break
                        except httpx.HTTPError:
                            pass
                        await asyncio.sleep(0.1)


async def _supervise(child: Child, stopping: asyncio.Event) -> None:
    """Start the child again whenever it exits while the cluster is not stopping."""
    while True:
        assert child.proc is not None
        started = time.monotonic()
        rc = await child.proc.wait()
        if stopping.is_set():
            return
        if time.monotonic() - started > 30:
            child.restarts = 0  # it ran a good while: a fresh failure, not a crash loop
        child.listen_failures = child.listen_failures + 1 if rc == EXIT_CANNOT_LISTEN else 0
        if child.listen_failures >= MAX_LISTEN_FAILURES:
            # Its port stays taken (by a process outside the cluster): starting it again cannot help.
            log.error("%s cannot listen on its port (taken, %d times in a row): not starting it again; "
                      "free the port and start the cluster again", child.name, child.listen_failures)
            return
        delay = RESTART_BACKOFF_S[min(child.restarts, len(RESTART_BACKOFF_S) - 1)]
        child.restarts += 1
        log.warning("%s (pid %d) exited with %s; starting it again in %.1fs", child.name, child.proc.pid, rc, delay)
        try:
            async with asyncio.timeout(delay):
                await stopping.wait()
            return
        except TimeoutError:
            pass
        await child.spawn()


async def _stop_all(kids: list[Child]) -> None:
    live = [c for c in kids if c.proc is not None and c.proc.returncode is None]
    for c in live:
        assert c.proc is not None
        c.proc.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(STOP_GRACE_S):
            await asyncio.gather(*(c.proc.wait() for c in live if c.proc is not None))
    except TimeoutError:
        for c in live:
            if c.proc is not None and c.proc.returncode is None:
                log.warning("%s did not stop within %.0fs: killing it", c.name, STOP_GRACE_S)
                c.proc.kill()
        await asyncio.gather(*(c.proc.wait() for c in live if c.proc is not None))


async def _load_demo(env: dict[str, str], base: str, admin_token: str | None) -> None:
    """The demo data, through the services themselves (as the front door would create it)."""
    from shop.bootstrap import bootstrap
    from shop.demo import load_demo, usage

    os.environ.update(env)
    shop = bootstrap(Settings(), role="web", run_migrations=False)
    await shop.start()
    try:
        print(usage(base, await load_demo(shop), admin_token), flush=True)
    finally:
        await shop.stop()


def unreachable(config: ClusterConfig, env: dict[str, str]) -> list[str]:
    """The servers the cluster needs that do not accept a connection, said plainly up front rather
    than as processes that keep dying."""
    from sqlalchemy.engine import make_url

    db = make_url(config.db_base_url())
    broker = make_url(env["SHOP_BROKER_URL"].replace("amqp://", "postgresql://", 1))
    wanted = {f"the {config.db} server": (db.host or "127.0.0.1", db.port or DEFAULT_PORTS[config.db]),
              "RabbitMQ": (broker.host or "127.0.0.1", broker.port or 5672)}
    for i, hostport in enumerate(env["SHOP_REGISTRY_URL"].split("/")[0].split(",")):
        host, _, zk_port = hostport.strip().rpartition(":")
        wanted[f"Zookeeper {i + 1}"] = (host or "127.0.0.1", int(zk_port or 2181))
    missing = []
    for what, (host, port) in wanted.items():
        try:
            socket.create_connection((host, port), timeout=2).close()
        except OSError as exc:
            missing.append(f"{what} at {host}:{port} ({exc.strerror or exc})")
    # One Zookeeper of an ensemble is enough to start.
    zks = [m for m in missing if m.startswith("Zookeeper")]
    if len(zks) < sum(1 for w in wanted if w.startswith("Zookeeper")):
        missing = [m for m in missing if not m.startswith("Zookeeper")]
    return missing


def remove(config: ClusterConfig, env: Mapping[str, str]) -> None:
    """Remove what a cluster leaves on the shared servers once its processes are gone: its queues
    and exchanges (quorum queues by the hundred slow RabbitMQ down for everyone), its databases and
    its registry nodes. `env`: the processes' environment (ClusterConfig.environment). It does not
    ask whether the cluster runs: `purge` does, for the operator; tests call this after a stop."""
    from kazoo.exceptions import NoNodeError, NotEmptyError

    from shop.infra.db import drop_databases
    from shop.infra.rabbit import delete_topology
    from shop.infra.registry import zk_client
    from shop.services.catalog import TOPOLOGY

    asyncio.run(delete_topology(env["SHOP_BROKER_URL"], env["SHOP_BROKER_PREFIX"], TOPOLOGY))
    drop_databases(config.db_base_url(), [f"{config.name}_{s}" for s in SERVICES])
    root = "/" + env["SHOP_REGISTRY_ROOT"].strip("/")
    zk = zk_client(env["SHOP_REGISTRY_URL"], env.get("SHOP_REGISTRY_AUTH"))
    zk.start(10)
    try:
        # Only our nodes: the default root is Dubbo's /dubbo, which other applications may share.
        for child in zk.get_children(root):
            if child.startswith("shop.") or child == LOCK_NODE:
                zk.delete(f"{root}/{child}", recursive=True)
        zk.delete(root)
    except (NoNodeError, NotEmptyError):
        pass
    finally:
        zk.stop()
        zk.close()


class ClusterRunning(Exception):
    """The cluster's lock is held: by its running supervisor, or by a purge in progress."""


async def purge(config: ClusterConfig, env: Mapping[str, str]) -> None:
    """`shop cluster down --purge NAME`: remove a cluster that is not running. Holds the name's lock
    while it works, so the cluster cannot start meanwhile either."""
    async with session(env) as registry:
        holder = await registry.hold(LOCK_NODE, lock_data(config, "shop cluster down --purge"))
        if holder is not None:
            raise ClusterRunning(held_by(config.name, holder))
        await asyncio.to_thread(remove, config, env)


async def run_cluster(config: ClusterConfig) -> int:
    env = config.environment(os.environ.get("SHOP_ADMIN_TOKEN") or secrets.token_urlsafe(24))
    missing = unreachable(config, env)
    if missing:
        log.error("shop cluster needs these servers, which do not answer: %s", "; ".join(missing))
        return 1
    timeout_s = float(env.get("SHOP_REGISTRY_SESSION_TIMEOUT_S") or 6.0)
    # The lock lives as long as this session: a supervisor killed outright frees it when the
    # session expires (the timeout, a few seconds), with its processes (see _die_with_parent).
    registry = session(env, timeout_s)
    try:
        await registry.start()
    except ConnectionError as exc:
        log.error("shop cluster cannot take its name's lock: %s", exc)
        return 1
    try:
        holder = await registry.hold(LOCK_NODE, lock_data(config, "shop cluster up"))
        if holder is not None:
            log.error("%s. Two clusters of one name would share their databases, queues and registry: "
                      "stop that one first, or give this one another --name (a cluster killed just now "
                      "holds it until its Zookeeper session ends, within %.0fs)",
                      held_by(config.name, holder), timeout_s + 2)
            return 1
        kids = children(config, env)
        taken = taken_ports(listens(config, kids))
        if taken:
            log.error("shop cluster cannot listen where it must: %s. Choose another --port, or stop what "
                      "holds the port", "; ".join(taken))
            return 1
        return await _run(config, env, kids)
    finally:
        await registry.close()


async def _run(config: ClusterConfig, env: dict[str, str], kids: list[Child]) -> int:
    try:
        await asyncio.to_thread(prepare, config)
    except Exception as exc:  # noqa: BLE001 - said plainly: a missing server is the usual cause
        log.error("cannot prepare the %s databases at %s: %r", config.db, config.db_base_url(), exc)
        return 1
    admin_token = env["SHOP_ADMIN_TOKEN"]
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    targets = write_scrape_targets(config, kids)
    for c in kids:
        await c.spawn()
    supervisors = [asyncio.create_task(_supervise(c, stopping)) for c in kids]
    ready = asyncio.create_task(wait_ready(config, env))
    try:
        done, _ = await asyncio.wait({ready, asyncio.create_task(stopping.wait())}, return_when=asyncio.FIRST_COMPLETED)
        if ready in done:
            if ready.exception() is not None:
                log.error("the cluster did not come up: %r", ready.exception())
                stopping.set()
                return 1
            base = f"http://{config.host}:{config.port}"
            # Printed only when generated here: one the operator gave stays out of the terminal.
            generated = None if os.environ.get("SHOP_ADMIN_TOKEN") else admin_token
            print(f"shop cluster serving on {base} ({len(kids)} processes, {config.db}); "
                  f"admin token: {generated or '(from SHOP_ADMIN_TOKEN)'}", flush=True)
            print(f"prometheus scrape targets (file_sd_configs): {targets}", flush=True)
            if config.demo:
                await _load_demo(env, base, generated)
        await stopping.wait()
        return 0
    finally:
        stopping.set()
        ready.cancel()
        await _stop_all(kids)
        for t in supervisors:
            t.cancel()
        await asyncio.gather(*supervisors, ready, return_exceptions=True)
        log.info("cluster stopped")
