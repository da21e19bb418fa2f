"""`shop cluster up` as the end-to-end tests drive it: a real process tree on the local PostgreSQL
or MariaDB, RabbitMQ and Zookeeper, each cluster with its own databases, queues and registry root."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from shop.cluster import ClusterConfig, remove, unreachable
from shop.cluster import free_ports as cluster_ports
from shop.infra.auth import Tokens
from shop.infra.config import Settings

TOKEN_SECRET = "test-token-secret-of-at-least-32-bytes"

# The same fast clocks as the in-process tests (tests/conftest.make_settings).
TEST_ENV = {
    "SHOP_FAULTS": "1", "SHOP_ORDER_CANCEL_AFTER_S": "2", "SHOP_MESSAGE_BACKOFF_MS": "50",
    "SHOP_MESSAGE_BACKOFF_CAP_MS": "400", "SHOP_MESSAGE_MAX_ATTEMPTS": "4",
    "SHOP_SANDBOX_NOTIFY_SCHEDULE_S": "0.1,0.2,0.4,0.8", "SHOP_PASSWORD_TIME_COST": "1",
    "SHOP_PASSWORD_MEMORY_KIB": "1024", "SHOP_TOKEN_SECRET": TOKEN_SECRET,
    # Zookeeper's minimum with its default tickTime (2 s): a crashed provider is dropped within ~4 s.
    "SHOP_REGISTRY_SESSION_TIMEOUT_S": "4",
    "SHOP_SANDBOX": "1",  # the payment tests pay at the sandbox (off by default: API.md)
    "SHOP_ADMISSION_ACTIVE": "0",  # as tests/conftest.make_settings says
    # The registry's credential on, as in docker-compose.yml: the processes, the supervisor's lock,
    # the purge and the tests' own reads of the registry all go through it.
    "SHOP_REGISTRY_AUTH": "shop:e2e-registry-password",
}


def free_ports(n: int = 4) -> int:
    """A port p with p+1 ... p+n-1 free too (web, sandbox, order-web, pay-web), below the ephemeral
    range (shop.cluster.free_ports says why)."""
    return cluster_ports("127.0.0.1", n)


class Cluster:
    def __init__(self, db: str, data_dir: Path, *, scale: str = "", admin_token: str = "test-admin-token") -> None:
        self.db = db
        self.data_dir = data_dir
        self.scale = scale
        self.admin_token = admin_token
        self.name = f"shop_e2e_{os.getpid()}_{db}_{time.monotonic_ns() % 10**6}"
        self.port = free_ports()
        self.config = ClusterConfig(db=db, port=self.port, data_dir=data_dir, name=self.name, sandbox=True)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / "cluster.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = {**os.environ, **TEST_ENV, "SHOP_ADMIN_TOKEN": admin_token}
        for key in [k for k in self.env if k.endswith("_DB_URL") or k in ("SHOP_BROKER_URL", "SHOP_REGISTRY_URL",
                                                                           "SHOP_REGISTRY_ROOT", "SHOP_BROKER_PREFIX")]:
            del self.env[key]  # the cluster names its own
        # What a test needs of the shop's configuration: the token secret and the sandbox's keys.
        self.settings = Settings(data_dir=data_dir, token_secret=TOKEN_SECRET, admin_token=admin_token)
        self.tokens = Tokens(TOKEN_SECRET, self.settings.token_ttl_s)

    def process_env(self) -> dict[str, str]:
        """What `shop cluster up` gives each of its processes (a test starts one more with it)."""
        return self.config.environment(self.admin_token, base=self.env)

    def missing(self) -> list[str]:
        """The servers this cluster needs that do not answer (the check `shop cluster up` makes)."""
        return unreachable(self.config, self.process_env())

    @property
    def registry_root(self) -> str:
        return self.process_env()["SHOP_REGISTRY_ROOT"]

    def start(self, timeout_s: float = 120.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "shop", "cluster", "up", "--db", self.db, "--port", str(self.port),
                "--data-dir", str(self.data_dir), "--name", self.name]
        if self.scale:
            argv += ["--scale", self.scale]
        log = self.log_path.open("ab")
        # Its own process group: whatever happens to the test, every process of it can be ended.
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        log.close()
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if b"shop cluster serving on" in self.log_path.read_bytes():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"shop cluster up exited with {self.proc.returncode}:\n{self.log_tail()}")
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"shop cluster up was not ready in {timeout_s}s:\n{self.log_tail()}")

    @contextmanager
    def serving(self) -> Iterator[Cluster]:
        """The cluster started (the test skipped, or failed under CI, when a server it needs does not
        answer), then stopped and its leftovers removed from the shared servers, whatever happened."""
        from tests.conftest import _unavailable

        missing = self.missing()
        if missing:
            _unavailable("the distributed shop's servers", ", ".join(missing))
        try:
            self.start()
            yield self
        finally:
            self.stop()
            self.clean_up()

    def stop(self, timeout_s: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything left behind
        except ProcessLookupError:
            pass
        self.proc.wait()
        return self.proc.returncode

    def clean_up(self) -> None:
        """Remove what the cluster left on the shared servers (queues, registry root, databases)."""
        remove(self.config, self.process_env())

    def troubles(self, most: int = 40) -> list[str]:
        """What went wrong in the cluster's processes, from its log: processes that exited and
        every ERROR (with the first line of any traceback), for a run whose tests failed in CI."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return []
        marks = ("exited with", "ERROR", "CRITICAL", "Traceback", "Error:")
        return [line for line in text.splitlines() if any(m in line for m in marks)][-most:]

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def providers(self, interface: str) -> list[dict[str, str]]:
        """The registered providers of an interface, read straight from Zookeeper: address and pid."""
        from shop.infra.registry import zk_client

        env = self.process_env()
        zk = zk_client(env["SHOP_REGISTRY_URL"], env.get("SHOP_REGISTRY_AUTH"))
        zk.start(10)
        try:
            path = f"{self.registry_root}/{interface}/providers"
            children = zk.get_children(path) if zk.exists(path) else []
        finally:
            zk.stop()
            zk.close()
        out = []
        for child in children:
            url = urlsplit(unquote(child))
            q = parse_qs(url.query)
            out.append(
                {"address": url.netloc, "pid": q.get("pid", [""])[0], "application": q.get("application", [""])[0]}
            )
        return out
