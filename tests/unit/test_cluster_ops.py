"""`shop cluster up` and `down` without the servers: what it will listen on and refuse, what a name
keeps apart, and the supervisor giving up on a process whose port stays taken."""
from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shop import cluster
from shop.cluster import (
    EXIT_CANNOT_LISTEN,
    Child,
    ClusterConfig,
    check_name,
    children,
    default_data_dir,
    free_ports,
    listens,
    taken_ports,
)


@pytest.fixture
def listening() -> Iterator[int]:
    """A port something else listens on (below the ephemeral range, where the cluster's ports are)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", free_ports()))
        s.listen()
        yield s.getsockname()[1]


def _plan(config: ClusterConfig, env: dict[str, str] | None = None) -> list[str]:
    return taken_ports(listens(config, children(config, env or {})))


def test_every_port_is_checked_and_a_free_plan_passes(tmp_path: Path) -> None:
    config = ClusterConfig(port=free_ports(n=4), scale=cluster.parse_scale("goods=2,order-web=1,pay-web=1"),
                           data_dir=tmp_path, sandbox=True)
    wanted = listens(config, children(config, {}))
    assert {(w.process, w.what) for w in wanted if w.what == "HTTP"} == {
        ("web", "HTTP"), ("sandbox", "HTTP"), ("order-web", "HTTP"), ("pay-web", "HTTP")}
    assert sorted(w.process for w in wanted if w.what == "/metrics") == [
        "coupon", "goods", "goods-2", "log", "order", "pay", "user"]
    assert taken_ports(wanted) == []


def test_no_two_processes_are_given_one_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A /metrics port is drawn at random among the free ones, which include the HTTP ports the plan
    gave (nothing binds them yet) and the ports drawn before it: a bench's cluster drew its web's
    port for the user service's /metrics once, and would not start."""
    config = ClusterConfig(port=20000, scale=cluster.parse_scale("goods=2"), data_dir=tmp_path)
    draws = iter([20000, 20001, 21000, 21000, 20003, 21001, 21002, 21002, 21003, 21004, 21005, 21006])
    monkeypatch.setattr("shop.ports.free_ports", lambda host="127.0.0.1", n=1: next(draws))
    wanted = [w.port for w in listens(config, children(config, {}))]
    assert len(wanted) == len(set(wanted))


def test_a_taken_http_port_is_named_with_the_role_that_wanted_it(tmp_path: Path, listening: int) -> None:
    # The sandbox takes the front door's port + 1.
    problems = _plan(ClusterConfig(port=listening - 1, data_dir=tmp_path, sandbox=True))
    assert problems == [f"127.0.0.1:{listening} (sandbox's HTTP port) is taken (Address already in use; "
                        f"`ss -ltnp 'sport = :{listening}'` shows by what)"]


def test_a_taken_metrics_port_is_named(tmp_path: Path, listening: int) -> None:
    config = ClusterConfig(port=free_ports(n=4), data_dir=tmp_path)
    kids = children(config, {})
    kids[2].env = dict(kids[2].env, SHOP_METRICS_PORT=str(listening))
    [problem] = taken_ports(listens(config, kids))
    assert problem.startswith(f"127.0.0.1:{listening} ({kids[2].name}'s /metrics port) is taken (Address already")


def test_one_grpc_port_for_every_service_is_refused(tmp_path: Path) -> None:
    # SHOP_RPC_PORT reaches every process: six services cannot all listen on it.
    port = free_ports()
    problems = _plan(ClusterConfig(port=free_ports(n=4), data_dir=tmp_path), {"SHOP_RPC_PORT": str(port)})
    assert len(problems) == 5 and all(f"port {port} is wanted twice" in p and "SHOP_RPC_PORT" in p for p in problems)


def test_names_keep_clusters_apart(tmp_path: Path) -> None:
    envs = [ClusterConfig(name=n, data_dir=tmp_path).environment("t", base={}) for n in ("alpha", "beta")]
    for key in ["SHOP_REGISTRY_ROOT", "SHOP_BROKER_PREFIX"] + [k for k in envs[0] if k.endswith("_DB_URL")]:
        assert envs[0][key] != envs[1][key], key
    assert envs[0]["SHOP_REGISTRY_ROOT"] == "/alpha" and envs[1]["SHOP_BROKER_PREFIX"] == "beta"
    assert {e["SHOP_GOODS_DB_URL"].rsplit("/", 1)[1] for e in envs} == {"alpha_goods", "beta_goods"}
    # Their secrets, key pair and the sandbox's file too, unless told otherwise.
    assert len({default_data_dir(n) for n in ("shop", "alpha", "beta")}) == 3
    assert default_data_dir("shop") == Path("./var/cluster")  # where the default cluster always kept them


@pytest.mark.parametrize("name", ["", "Shop", "1shop", "shop-a", "shop/a", "a" * 41, "shop;drop"])
def test_a_name_is_plain(name: str) -> None:
    with pytest.raises(ValueError, match="cluster name"):
        check_name(name)


def test_serve_exits_with_its_own_code_when_its_port_is_taken(listening: int) -> None:
    r = subprocess.run([sys.executable, "-m", "shop", "serve", "web", "--port", str(listening)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == EXIT_CANNOT_LISTEN, (r.returncode, r.stderr)
    assert f"cannot listen on 127.0.0.1:{listening}" in r.stderr
    assert "Traceback" not in r.stderr


async def test_the_supervisor_gives_up_on_a_process_that_cannot_listen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster, "RESTART_BACKOFF_S", (0.01,))
    argv = [sys.executable, "-c", f"import sys; sys.exit({EXIT_CANNOT_LISTEN})"]
    child = Child("web", 0, 0, argv, {})
    spawned = 0
    spawn = child.spawn

    async def counting() -> None:
        nonlocal spawned
        spawned += 1
        await spawn()

    monkeypatch.setattr(child, "spawn", counting)
    await counting()
    async with asyncio.timeout(30):
        await cluster._supervise(child, asyncio.Event())  # returns: no more restarts
    assert spawned == cluster.MAX_LISTEN_FAILURES and child.listen_failures == cluster.MAX_LISTEN_FAILURES


async def test_a_process_that_fails_otherwise_is_started_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster, "RESTART_BACKOFF_S", (0.01,))
    child = Child("web", 0, 0, [sys.executable, "-c", "import sys; sys.exit(1)"], {})
    stopping = asyncio.Event()
    spawned = 0
    spawn = child.spawn

    async def counting() -> None:
        nonlocal spawned
        spawned += 1
        if spawned > cluster.MAX_LISTEN_FAILURES + 2:
            stopping.set()
        await spawn()

    monkeypatch.setattr(child, "spawn", counting)
    await counting()
    async with asyncio.timeout(30):
        await cluster._supervise(child, stopping)
    assert spawned > cluster.MAX_LISTEN_FAILURES + 2
