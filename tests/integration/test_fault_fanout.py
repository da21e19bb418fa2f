"""Arming a fault in every process of the distributed shop (the operator's AdminService over gRPC,
to every provider in the registry): a process that refuses the connection (just crashed, still
registered until its session expires) is skipped and named; one that does not answer is not. Only
the front door (and the operator's tools) may arm one: a service's certificate is refused."""
from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kazoo.client import KazooClient

from shop.admin.operator import Operator
from shop.common.errors import ServiceUnavailable
from shop.infra.faults import Faults
from shop.infra.registry import ZkRegistry
from shop.infra.rpc.admin import ADMIN_SERVICE, every_process
from shop.infra.rpc.server import serve
from tests.conftest import TlsFor, _unavailable

ZK_HOSTS = os.environ.get("SHOP_TEST_ZK_HOSTS", "127.0.0.1:2181")
ARM = {"point": "goods.on_order_cancel", "action": "error", "times": 1, "delayMs": 0}


def _refusing_address() -> str:
    """An address nothing listens on: a crashed process's."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
async def live(tls: TlsFor) -> AsyncIterator[tuple[str, Faults]]:
    """A process's AdminService (a goods process's), and the faults it arms."""
    faults = Faults(enabled=True)
    server = await serve([], "127.0.0.1", 0, tls=tls("goods"), faults=faults)
    try:
        yield f"127.0.0.1:{server.port}", faults
    finally:
        await server.stop(None)


async def test_a_refusing_process_is_skipped_and_named(live: tuple[str, Faults], tls: TlsFor) -> None:
    address, faults = live
    dead = _refusing_address()
    sent = await every_process([address, dead], "ArmFault", ARM, tls("web"))
    assert sent.reached == [address]
    assert [s["address"] for s in sent.skipped] == [dead] and "refused" in sent.skipped[0]["reason"]
    assert "goods.on_order_cancel" in faults.armed


async def test_only_the_front_door_and_the_operator_may_arm_a_fault(live: tuple[str, Faults], tls: TlsFor) -> None:
    address, faults = live
    for role in ("order", "goods", "order-web"):
        with pytest.raises(ServiceUnavailable, match="PERMISSION_DENIED"):
            await every_process([address], "ArmFault", ARM, tls(role))
        assert not faults.armed
    assert (await every_process([address], "Ping", {}, tls("order"))).reached == [address]
    assert (await every_process([address], "ArmFault", ARM, tls("admin"))).reached == [address]
    assert "goods.on_order_cancel" in faults.armed
    with pytest.raises(ServiceUnavailable, match="PERMISSION_DENIED"):
        await every_process([address], "ClearFaults", {}, tls("pay"))
    assert "goods.on_order_cancel" in faults.armed


async def test_a_process_that_does_not_answer_is_not_skipped(live: tuple[str, Faults], tls: TlsFor) -> None:
    # It accepts the connection and says nothing: it may be alive, so arming did not happen everywhere.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        with pytest.raises(ServiceUnavailable, match="did not reach every process"):
            await every_process([live[0], f"127.0.0.1:{silent.getsockname()[1]}"], "ArmFault", ARM, tls("web"))


async def test_no_process_reached_is_unavailable(tls: TlsFor) -> None:
    with pytest.raises(ServiceUnavailable, match="reached no process"):
        await every_process([_refusing_address()], "ArmFault", ARM, tls("web"))


async def test_the_operator_arms_every_registered_process_but_a_crashed_one(live: tuple[str, Faults],
                                                                            tls: TlsFor) -> None:
    root = f"/shop_test_fanout_{os.getpid()}_{os.urandom(3).hex()}"
    registry = ZkRegistry(ZK_HOSTS, root)
    try:
        await registry.start()
    except Exception as exc:  # noqa: BLE001
        _unavailable("Zookeeper", exc)
    dead = _refusing_address()
    try:
        for address in (live[0], dead):  # the crashed one's node is still there
            await registry.register(ADMIN_SERVICE, address, application="goods")
        services: dict[str, Any] = dict.fromkeys(("users", "goods", "coupons", "orders", "pay", "log", "broker",
                                                  "auditor"))
        operator = Operator(**services, faults=Faults(enabled=True), registry=registry, tls=tls("web"))
        sent = await operator.arm_fault("goods.on_order_cancel", "error", 1, 0)
        assert sent.reached == [live[0]] and [s["address"] for s in sent.skipped] == [dead]
        assert "goods.on_order_cancel" in live[1].armed and "goods.on_order_cancel" in operator.faults.armed
        cleared = await operator.clear_faults()
        assert cleared.reached == [live[0]] and not live[1].armed
    finally:
        await registry.close()
        zk = KazooClient(hosts=ZK_HOSTS)
        zk.start(10)
        zk.delete(root, recursive=True)
        zk.stop()
        zk.close()
