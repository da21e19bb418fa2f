"""The Zookeeper registry against a real Zookeeper (SHOP_TEST_ZK_HOSTS, default 127.0.0.1:2181).

Under CI a missing Zookeeper fails these tests; elsewhere they are skipped with the reason.
Each test works under a root of its own (/shop-test-<random>), deleted afterwards.
"""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from decimal import Decimal
from urllib.parse import unquote

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from shop.common.errors import ServiceUnavailable
from shop.infra.registry import ZkRegistry
from tests.conftest import TlsFor, _unavailable
from tests.support import service_db

ZK_HOSTS = os.environ.get("SHOP_TEST_ZK_HOSTS", "127.0.0.1:2181")
IFACE = "shop.goods.GoodsService"
A, B = "127.0.0.1:50051", "127.0.0.1:50052"
# The shortest the server allows with its default tickTime=2000 (it clamps to 2..20 ticks).
SHORT_SESSION_S = 4.0

MakeRegistry = Callable[..., Awaitable[ZkRegistry]]


@pytest.fixture
def zk() -> Iterator[tuple[KazooClient, str]]:
    """An admin session to look at the nodes directly, and this test's root."""
    host, _, port = ZK_HOSTS.split(",")[0].rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()  # refused fails fast
        admin = KazooClient(hosts=ZK_HOSTS, timeout=SHORT_SESSION_S)
        admin.start(timeout=5)
    except Exception as exc:  # noqa: BLE001
        _unavailable(f"Zookeeper at {ZK_HOSTS}", exc)
    root = f"/shop-test-{os.urandom(4).hex()}"
    try:
        yield admin, root
    finally:
        try:
            admin.delete(root, recursive=True)
        except NoNodeError:
            pass
        admin.stop()
        admin.close()


@pytest.fixture
async def make(zk: tuple[KazooClient, str]) -> AsyncIterator[MakeRegistry]:
    """Registries on their own sessions under the test's root, closed after the test."""
    _, root = zk
    made: list[ZkRegistry] = []

    async def make_registry(session_timeout_s: float = 6.0) -> ZkRegistry:
        registry = ZkRegistry(ZK_HOSTS, root=root, session_timeout_s=session_timeout_s)
        await registry.start()
        made.append(registry)
        return registry

    yield make_registry
    for registry in made:
        await registry.close()


async def test_consumer_sees_both_providers_in_dubbo_layout_and_round_robins(zk, make: MakeRegistry) -> None:
    admin, root = zk
    p1, p2, consumer = await make(), await make(), await make()
    path1 = await p1.register(IFACE, A, application="goods", version="1.0.0")
    await p2.register(IFACE, B, application="goods", version="1.0.0")

    view = await consumer.providers(IFACE)
    assert await view.wait_for(2, 5.0) == [A, B]

    picks = [view.pick() for _ in range(6)]
    assert set(picks) == {A, B}
    assert all(x != y for x, y in zip(picks, picks[1:], strict=False)), picks

    # Dubbo's layout: /<root>/<interface>/providers/<URL-quoted URL>, ephemeral, one per instance.
    assert path1.startswith(f"{root}/{IFACE}/providers/grpc%3A%2F%2F127.0.0.1%3A50051%2F")
    children = sorted(admin.get_children(f"{root}/{IFACE}/providers"))
    assert len(children) == 2
    url = unquote(children[0])
    assert url.startswith(f"grpc://{A}/{IFACE}?"), url
    for param in (f"interface={IFACE}", "side=provider", "application=goods", "version=1.0.0", f"pid={os.getpid()}"):
        assert param in url.split("?", 1)[1].split("&"), url
    assert sorted(view.urls) == sorted(unquote(c) for c in children)
    stat1, stat2 = (admin.exists(f"{root}/{IFACE}/providers/{c}") for c in children)
    assert stat1.ephemeralOwner == p1.client.client_id[0]
    assert stat2.ephemeralOwner == p2.client.client_id[0]
    assert admin.exists(f"{root}/{IFACE}/providers").ephemeralOwner == 0  # parents are persistent


async def test_closed_provider_leaves_the_view_at_once_and_deregister_too(make: MakeRegistry) -> None:
    p1, p2, consumer = await make(), await make(), await make()
    await p1.register(IFACE, A)
    path2 = await p2.register(IFACE, B)
    view = await consumer.providers(IFACE)
    await view.wait_for(2, 5.0)

    started = time.monotonic()
    await p1.close()
    assert await view.wait_for(1, 1.0, exactly=True) == [B]
    assert time.monotonic() - started < 1.0
    assert [view.pick() for _ in range(3)] == [B, B, B]

    await p2.deregister(path2)
    assert await view.wait_for(0, 1.0, exactly=True) == []
    with pytest.raises(ServiceUnavailable):
        view.pick()


async def test_mark_failed_makes_pick_skip_an_address_until_the_mark_ends(make: MakeRegistry) -> None:
    p1, p2, consumer = await make(), await make(), await make()
    await p1.register(IFACE, A)
    await p2.register(IFACE, B)
    view = await consumer.providers(IFACE)
    await view.wait_for(2, 5.0)

    view.mark_failed(A, for_s=0.5)
    assert [view.pick() for _ in range(4)] == [B, B, B, B]
    assert view.addresses == [A, B]  # marked, still registered

    view.mark_failed(B, for_s=0.5)  # all marked: pick among all rather than refuse
    assert {view.pick() for _ in range(4)} == {A, B}

    await asyncio.sleep(0.6)
    assert {view.pick() for _ in range(4)} == {A, B}


CRASHING_PROVIDER = """
import asyncio, sys
from shop.infra.registry import ZkRegistry

async def main():
    hosts, root, session_s, iface, address = sys.argv[1:]
    registry = ZkRegistry(hosts, root=root, session_timeout_s=float(session_s))
    await registry.start()
    print(await registry.register(iface, address), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_crashed_provider_lingers_until_session_expiry_and_callers_fail_over(zk, make: MakeRegistry) -> None:
    admin, root = zk
    live, consumer = await make(), await make()
    await live.register(IFACE, A)
    view = await consumer.providers(IFACE)

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CRASHING_PROVIDER, ZK_HOSTS, root, str(SHORT_SESSION_S), IFACE, B,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(15):
            path = (await proc.stdout.readline()).decode().strip()  # type: ignore[union-attr]
        assert path, "the provider process registered nothing"
        await view.wait_for(2, 5.0)
    finally:
        proc.send_signal(signal.SIGKILL)  # a crash: no session close, no delete
        await proc.wait()
    killed = time.monotonic()

    # The server keeps a dead client's session (and so its node) until the session times out.
    await asyncio.sleep(0.3)
    assert view.addresses == [A, B]
    assert admin.exists(path) is not None
    # Meanwhile a caller whose call to B failed fails over to the others.
    view.mark_failed(B)
    assert [view.pick() for _ in range(3)] == [A, A, A]

    assert await view.wait_for(1, SHORT_SESSION_S + 3.0, exactly=True) == [A]
    gone_after = time.monotonic() - killed
    assert admin.exists(path) is None
    assert gone_after > 1.0, f"gone after {gone_after:.1f}s: that was no session expiry"


async def test_provider_registers_again_after_its_session_is_lost(zk, make: MakeRegistry) -> None:
    admin, _ = zk
    provider, consumer = await make(session_timeout_s=SHORT_SESSION_S), await make()
    path = await provider.register(IFACE, A)
    view = await consumer.providers(IFACE)
    await view.wait_for(1, 5.0)
    old_session = provider.client.client_id

    # Expire the provider's session the way Zookeeper's own tests do: another client takes the
    # session over (its id and password) and closes it. The server deletes its ephemeral nodes.
    thief = KazooClient(hosts=ZK_HOSTS, client_id=old_session, timeout=SHORT_SESSION_S)
    await asyncio.to_thread(thief.start, 5)
    await asyncio.to_thread(lambda: (thief.stop(), thief.close()))

    async with asyncio.timeout(10):
        while True:
            session = provider.client.client_id
            stat = await asyncio.to_thread(admin.exists, path)
            if session and session[0] != old_session[0] and stat and stat.ephemeralOwner == session[0]:
                break
            await asyncio.sleep(0.1)
    assert await view.wait_for(1, 2.0, exactly=True) == [A]


class _Cuttable:
    """A TCP proxy to Zookeeper that can be cut (listener closed, connections dropped) and resumed on
    the same port: Zookeeper going away and coming back, for one client only."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.server: asyncio.Server | None = None
        self.pipes: set[asyncio.Task[None]] = set()

    async def resume(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self.pipes):
            task.cancel()
        await asyncio.gather(*self.pipes, return_exceptions=True)
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.pipes.add(task)
        up_reader, up_writer = await asyncio.open_connection(*self.target)

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            writer.close()
            up_writer.close()
            self.pipes.discard(task)


async def test_a_provider_is_back_within_seconds_of_zookeeper_coming_back(zk) -> None:
    # kazoo's reconnect backs off to an hour by default: after a 7 s outage its next try came ~6 s
    # after Zookeeper was back (issue 11), and a minute's outage would have cost about a minute more.
    _, root = zk
    host, _, port = ZK_HOSTS.split(",")[0].rpartition(":")
    proxy = _Cuttable(host, int(port))
    await proxy.resume()
    provider = ZkRegistry(f"127.0.0.1:{proxy.port}", root=root, session_timeout_s=SHORT_SESSION_S)
    consumer = ZkRegistry(ZK_HOSTS, root=root)
    await provider.start()
    await consumer.start()
    try:
        await provider.register(IFACE, A)
        view = await consumer.providers(IFACE)
        await view.wait_for(1, 5.0)
        await proxy.cut()
        await view.wait_for(0, 10.0, exactly=True)  # its session expired: the node went with it
        await asyncio.sleep(max(0.0, 7.0 - SHORT_SESSION_S))
        await proxy.resume()
        back = time.monotonic()
        assert await view.wait_for(1, 10.0, exactly=True) == [A]
        assert time.monotonic() - back < 2.5, f"registered again {time.monotonic() - back:.1f} s after"
    finally:
        await provider.close()
        await consumer.close()
        await proxy.cut()


class _Counting:
    """A handler object that counts the calls it serves."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.calls = 0

    def __getattr__(self, name: str) -> object:
        target = getattr(self.inner, name)

        async def call(*args: object) -> object:
            self.calls += 1
            return await target(*args)

        return call


async def test_grpc_clients_balance_over_the_registry_and_fail_over(zk, make: MakeRegistry, tmp_path,
                                                                     tls: TlsFor) -> None:
    from shop.common.ids import IdWorker
    from shop.infra.registry import Discovered
    from shop.infra.rpc.client import GrpcClient
    from shop.infra.rpc.server import serve
    from shop.services.goods import rpc as goods_rpc
    from shop.services.goods.contracts import CreateGoods, ReduceStock, StockLine
    from shop.services.goods.handlers import GoodsHandlers

    db = await service_db("goods", tmp_path)
    goods = GoodsHandlers(db, IdWorker(1, 1))
    a, b = _Counting(goods), _Counting(goods)
    server_a = await serve([(goods_rpc.SERVICE, a)], "127.0.0.1", 0, tls=tls("goods"))
    server_b = await serve([(goods_rpc.SERVICE, b)], "127.0.0.1", 0, tls=tls("goods"))
    server_c = None
    provider, consumer = await make(), await make()
    iface = "shop.v1.GoodsService"
    addr_a, addr_b = f"127.0.0.1:{server_a.port}", f"127.0.0.1:{server_b.port}"
    node_a = await provider.register(iface, addr_a)
    await provider.register(iface, addr_b)
    client = GrpcClient(goods_rpc.SERVICE, Discovered(consumer, iface), deadline_s=2.0, tls=tls("order"))
    try:
        await (await consumer.providers(iface)).wait_for(2)
        goods_id = await client.create_goods(CreateGoods("g", 100, Decimal("1.00")))
        for _ in range(10):
            await client.find_goods(goods_id)
        assert a.calls >= 5 and b.calls >= 5, (a.calls, b.calls)  # round-robin over both

        # A dies without leaving the registry (as a crash would): its node stays, calls fail over.
        await server_a.stop(None)
        before_b = b.calls
        for i in range(10):
            assert (await client.find_goods(goods_id)).goods_id == goods_id  # retry-safe: retried on B
            await client.reduce_stock(ReduceStock(order_id=1000 + i, lines=[StockLine(goods_id, 1)]))
        assert b.calls - before_b == 20
        # Not retry-safe, but A refuses connections: the request never left, so it goes to B too,
        # even from a caller that has not marked A yet (another process, with a view of its own).
        other = GrpcClient(goods_rpc.SERVICE, Discovered(await make(), iface), deadline_s=2.0, tls=tls("web"))
        try:
            before_b = b.calls
            for _ in range(4):
                await other.create_goods(CreateGoods("g", 1, Decimal("1.00")))
            assert b.calls - before_b == 4
        finally:
            await other.close()
        assert (await client.find_goods(goods_id)).goods_number == 90

        # A comes back on a new port (a restart) and its old node goes: the client's channel to the
        # old address is closed when it first opens one to the new address.
        assert client.open_addresses == sorted([addr_a, addr_b])
        c = _Counting(goods)
        server_c = await serve([(goods_rpc.SERVICE, c)], "127.0.0.1", 0, tls=tls("goods"))
        addr_c = f"127.0.0.1:{server_c.port}"
        await provider.deregister(node_a)
        await provider.register(iface, addr_c)
        view = await consumer.providers(iface)
        for _ in range(100):  # the watch delivers the two changes one after the other
            if view.addresses == sorted([addr_b, addr_c]):
                break
            await asyncio.sleep(0.05)
        assert view.addresses == sorted([addr_b, addr_c])
        for _ in range(4):
            await client.find_goods(goods_id)
        assert c.calls >= 2
        assert client.open_addresses == sorted([addr_b, addr_c])
    finally:
        await client.close()
        await server_b.stop(None)
        if server_c is not None:
            await server_c.stop(None)
        await db.close()
