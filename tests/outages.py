"""The machine's shared servers taken down and brought back, the way this machine runs them, for the
tests that prove the shop survives it (tests/e2e/test_infra_restarts.py).

Every restart starts the server again in a `finally` and waits until it answers: the whole suite, CI
and other sessions use these servers. `ensure_answering` is the last line for a test that was cut
short before its own `finally` ran (a fixture's teardown calls it)."""
from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import MYSQL_URL, PG_URL


@dataclass
class Window:
    """When a dependency was away, on the test's clock (time.time(), which the shop's timestamps share):
    from just before it was stopped to the moment it answered again."""

    what: str
    start: float
    end: float

    def covers(self, t0: float, t1: float, grace_s: float) -> bool:
        """Whether [t0, t1] meets the window extended by grace_s after its end."""
        return t0 <= self.end + grace_s and t1 >= self.start


async def _run(*argv: str, timeout_s: float = 90.0) -> None:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"{' '.join(argv)} did not finish in {timeout_s}s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {proc.returncode}: {err.decode(errors='replace')}")


def _pg_version() -> str:
    return next(Path("/etc/postgresql").iterdir()).name


async def _pg_answers() -> bool:
    import asyncpg

    conn = await asyncpg.connect(f"{PG_URL}/postgres", timeout=2)
    try:
        return await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


async def _mysql_answers() -> bool:
    import asyncmy
    from sqlalchemy.engine import make_url

    u = make_url(MYSQL_URL)
    conn = await asyncmy.connect(host=u.host or "127.0.0.1", port=u.port or 3306, user=u.username or "root",
                                 password=u.password or "", connect_timeout=2)
    try:
        async with conn.cursor() as cur:
            await cur.execute("SELECT 1")
            return (await cur.fetchone()) == (1,)
    finally:
        conn.close()


async def _rabbitmq_answers() -> bool:
    import aiormq

    conn = await asyncio.wait_for(aiormq.connect("amqp://guest:guest@127.0.0.1:5672/"), 3)
    await conn.close()
    return True


async def _zookeeper_answers() -> bool:
    # `srvr` is the four-letter word Zookeeper 3.5+ answers by default; "Mode:" appears only once it
    # serves requests (scripts/test-services.sh's zk_serving).
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", 2181), 2)
    try:
        writer.write(b"srvr")
        await writer.drain()
        return b"Mode: " in await asyncio.wait_for(reader.read(), 2)
    finally:
        writer.close()


@dataclass(frozen=True)
class Server:
    name: str
    stop: Callable[[], tuple[str, ...]]
    start: Callable[[], tuple[str, ...]]
    answers: Callable[[], Awaitable[bool]]


SERVERS = {
    "postgresql": Server(
        "postgresql",
        lambda: ("pg_ctlcluster", "--skip-systemctl-redirect", _pg_version(), "main", "stop", "--", "-m", "fast"),
        lambda: ("pg_ctlcluster", "--skip-systemctl-redirect", _pg_version(), "main", "start"),
        _pg_answers),
    "mysql": Server(
        "mysql",
        lambda: ("start-stop-daemon", "--stop", "--exec", "/usr/sbin/mariadbd", "--retry", "30"),
        lambda: ("start-stop-daemon", "--start", "--oknodo", "--background", "--exec", "/usr/sbin/mariadbd"),
        _mysql_answers),
    "rabbitmq": Server("rabbitmq", lambda: ("rabbitmqctl", "stop_app"), lambda: ("rabbitmqctl", "start_app"),
                       _rabbitmq_answers),
    "zookeeper": Server("zookeeper", lambda: ("/etc/init.d/zookeeper", "stop"),
                        lambda: ("/etc/init.d/zookeeper", "start"), _zookeeper_answers),
}


async def answering(server: Server, timeout_s: float = 90.0) -> float:
    """Wait until the server answers; the time it did."""
    end = time.monotonic() + timeout_s
    while True:
        try:
            if await server.answers():
                return time.time()
        except Exception:  # noqa: BLE001 - not yet: refused, reset, still starting
            if time.monotonic() > end:
                raise
        await asyncio.sleep(0.1)


async def restart(name: str, down_s: float = 0.0) -> Window:
    """Stop the server, keep it down for down_s, start it again and wait until it answers. It is
    started again whatever happens, cancellation included."""
    server = SERVERS[name]
    start = time.time()
    try:
        await _run(*server.stop())
        await asyncio.sleep(down_s)
    finally:
        await asyncio.shield(_bring_back(server))
    return Window(name, start, await answering(server))


async def _bring_back(server: Server) -> None:
    try:
        if await server.answers():
            return
    except Exception:  # noqa: BLE001 - it does not answer: start it
        pass
    await _run(*server.start())
    await answering(server)


def ensure_answering(*names: str) -> None:
    """Start each server that does not answer (synchronously: for a teardown)."""
    async def all_back() -> None:
        for name in names:
            await _bring_back(SERVERS[name])

    asyncio.run(all_back())
