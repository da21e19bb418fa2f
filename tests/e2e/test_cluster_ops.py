"""Operating `shop cluster` (on PostgreSQL, RabbitMQ and Zookeeper): a taken port stops `up` before
anything starts; one name is one cluster (a second `up` of that name refuses, and so does `down
--purge` while it runs); `down --purge` removes its databases, queues, exchanges and registry nodes;
and a fault armed right after a process was killed skips that process and says so."""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import asyncpg
import httpx
import pytest
from aio_pika.exceptions import ChannelNotFoundEntity

from shop.infra.config import SERVICES
from shop.infra.rabbit import exchange_name, queue_name, reports_exchange_name
from shop.infra.registry import zk_client
from shop.services.catalog import TOPOLOGY
from tests.cluster import Cluster, free_ports
from tests.conftest import PG_URL, _unavailable

ADMIN_SERVICE = "shop.v1.AdminService"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster("postgresql", tmp_path / "one")
    missing = c.missing()
    if missing:
        _unavailable("the distributed shop's servers", ", ".join(missing))
    try:
        yield c
    finally:
        c.stop()
        c.clean_up()


def _shop(c: Cluster, *argv: str) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-m", "shop", *argv], env=c.env, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
    return r


def _up(c: Cluster, port: int, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return _shop(c, "cluster", "up", "--db", "postgresql", "--port", str(port), "--data-dir", str(data_dir),
                 "--name", c.name)


def _left_behind(c: Cluster) -> dict[str, list[str]]:
    """What of cluster c is on the servers: its databases, queues and exchanges, registry root and
    the nodes under it."""
    async def databases() -> list[str]:
        conn = await asyncpg.connect(f"{PG_URL}/postgres")
        try:
            rows = await conn.fetch("SELECT datname FROM pg_database WHERE datname = ANY($1::text[])",
                                    [f"{c.name}_{s}" for s in SERVICES])
            return sorted(r["datname"] for r in rows)
        finally:
            await conn.close()

    async def broker() -> list[str]:
        env = c.process_env()
        prefix = env["SHOP_BROKER_PREFIX"]
        queues = {queue_name(g, prefix) + suffix for g, _, _ in TOPOLOGY for suffix in ("", ".retry", ".dead")}
        exchanges = {exchange_name(t, prefix) for _, t, _ in TOPOLOGY} | {reports_exchange_name(prefix)}
        found = []
        async with await aio_pika.connect(env["SHOP_BROKER_URL"]) as conn:
            for name in sorted(queues | exchanges):
                ch = await conn.channel()  # a passive declaration of a missing one closes its channel
                try:
                    if name in queues:
                        await ch.declare_queue(name, passive=True)
                    else:
                        await ch.get_exchange(name, ensure=True)
                    found.append(name)
                except ChannelNotFoundEntity:
                    pass
        return found

    env = c.process_env()
    zk = zk_client(env["SHOP_REGISTRY_URL"], env.get("SHOP_REGISTRY_AUTH"))
    zk.start(10)
    try:
        root = [c.registry_root, *zk.get_children(c.registry_root)] if zk.exists(c.registry_root) else []
    finally:
        zk.stop()
        zk.close()
    return {"databases": asyncio.run(databases()), "broker": asyncio.run(broker()), "registry": root}


def test_a_taken_port_stops_up_before_anything_starts(cluster: Cluster) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", cluster.port + 1))  # the sandbox's
        holder.listen()
        r = _up(cluster, cluster.port, cluster.data_dir)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"127.0.0.1:{cluster.port + 1} (sandbox's HTTP port) is taken" in r.stderr, r.stderr
    # Nothing was made but the (empty) registry root its lock was taken under.
    assert _left_behind(cluster) == {"databases": [], "broker": [], "registry": [cluster.registry_root]}


def test_one_name_is_one_cluster_and_purge_removes_it(cluster: Cluster) -> None:
    cluster.start()
    assert cluster.proc is not None
    other_dir = cluster.data_dir.parent / "two"
    other_dir.mkdir()

    # A second cluster of the same name, on other ports and another data dir, would share the first's
    # databases, queues and registry: it refuses and names the one running.
    r = _up(cluster, free_ports(), other_dir)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"cluster '{cluster.name}' is held by `shop cluster up` (pid {cluster.proc.pid}" in r.stderr, r.stderr
    # And it is not purged from under its processes.
    r = _shop(cluster, "cluster", "down", "--purge", cluster.name, "--db", "postgresql")
    assert r.returncode == 1 and "not purged" in r.stdout and str(cluster.proc.pid) in r.stdout, r.stdout
    assert len(_left_behind(cluster)["databases"]) == len(SERVICES)
    assert httpx.get(f"{cluster.url}/healthz").status_code == 200

    cluster.stop()
    r = _shop(cluster, "cluster", "down", "--purge", cluster.name, "--db", "postgresql")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"purged cluster '{cluster.name}'" in r.stdout
    assert _left_behind(cluster) == {"databases": [], "broker": [], "registry": []}


def test_a_fault_armed_right_after_a_crash_skips_the_dead_process(cluster: Cluster) -> None:
    cluster.start()
    providers = cluster.providers(ADMIN_SERVICE)
    assert len(providers) == len(SERVICES), providers
    victim = next(p for p in providers if p["application"] == "log")
    os.kill(int(victim["pid"]), signal.SIGKILL)
    host, port = victim["address"].rsplit(":", 1)
    end = time.monotonic() + 5
    while time.monotonic() < end:  # until its port refuses: the kernel has closed its sockets
        try:
            socket.create_connection((host, int(port)), timeout=0.5).close()
            time.sleep(0.02)
        except OSError:
            break
    # Still registered (its session lasts a few seconds more); arming at once skips it.
    assert victim["address"] in {p["address"] for p in cluster.providers(ADMIN_SERVICE)}
    admin = {"Authorization": f"Bearer {cluster.admin_token}"}
    r = httpx.post(f"{cluster.url}/admin/faults", headers=admin, timeout=30,
                   json={"point": "log.on_order_paid", "action": "delay", "delayMs": 1, "times": 1})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert [s["address"] for s in data["skipped"]] == [victim["address"]], data
    assert "refused" in data["skipped"][0]["reason"]
    assert {p["address"] for p in providers} - {victim["address"]} <= set(data["armed"]), data
    assert data["point"] == "log.on_order_paid" and data["action"] == "delay"
    assert httpx.delete(f"{cluster.url}/admin/faults", headers=admin, timeout=30).status_code == 200
