"""A cluster's name lock on the real Zookeeper: one holder per name, names independent, the holder
described to whoever finds it taken, and freed when its session ends."""
from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from shop.cluster import LOCK_NODE, ClusterConfig, ClusterRunning, held_by, lock_data, purge
from shop.infra.registry import ZkRegistry
from tests.conftest import _unavailable

ZK_HOSTS = os.environ.get("SHOP_TEST_ZK_HOSTS", "127.0.0.1:2181")


@pytest.fixture
def names() -> list[str]:
    tag = f"{os.getpid()}_{os.urandom(3).hex()}"
    return [f"shop_lock_{tag}_a", f"shop_lock_{tag}_b"]


@pytest.fixture
async def sessions(names: list[str]) -> AsyncIterator[list[ZkRegistry]]:
    """Two sessions on each name's root, as two supervisors would have."""
    made = [ZkRegistry(ZK_HOSTS, f"/{n}") for n in names for _ in range(2)]
    try:
        for r in made:
            await r.start()
    except Exception as exc:  # noqa: BLE001
        _unavailable("Zookeeper", exc)
    try:
        yield made
    finally:
        for r in made:
            await r.close()
        zk = KazooClient(hosts=ZK_HOSTS)
        zk.start(10)
        for n in names:
            zk.delete(f"/{n}", recursive=True)
        zk.stop()
        zk.close()


async def test_one_holder_per_name_and_names_apart(sessions: list[ZkRegistry], names: list[str],
                                                   tmp_path: Path) -> None:
    a1, a2, b1, b2 = sessions
    config = ClusterConfig(name=names[0], port=9100, data_dir=tmp_path)
    assert await a1.hold(LOCK_NODE, lock_data(config, "shop cluster up")) is None
    assert await b1.hold(LOCK_NODE, b"{}") is None  # another name: another lock
    holder = await a2.hold(LOCK_NODE, b"{}")
    assert holder is not None
    said = held_by(names[0], holder)
    assert said.startswith(f"cluster '{names[0]}' is held by `shop cluster up` (pid {os.getpid()} on ")
    assert "http://127.0.0.1:9100" in said and str(tmp_path) in said
    # A purge of a running cluster is refused, and leaves its registry alone.
    with pytest.raises(ClusterRunning, match="is held by `shop cluster up`"):
        await purge(config, {"SHOP_REGISTRY_URL": ZK_HOSTS, "SHOP_REGISTRY_ROOT": f"/{names[0]}"})
    assert await a2.holder(LOCK_NODE) == holder
    # The holder's session ends (a stop, or a crash once it expires): the name is free again.
    await a1.close()
    assert await a2.hold(LOCK_NODE, b"{}") is None
    assert await b2.hold(LOCK_NODE, b"{}") is not None
