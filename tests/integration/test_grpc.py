"""The participant services over a real grpc.aio server on 127.0.0.1, with the real handlers on a
SQLite database per service: values round-trip exactly, the order's steps stay idempotent,
ShopErrors cross as the same codes, and a dead or slow server is ServiceUnavailable within the deadline.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest
from argon2 import PasswordHasher

from shop.common.codes import ShopCode
from shop.common.errors import ServiceUnavailable, ShopError
from shop.common.ids import IdWorker
from shop.infra.db import Database
from shop.infra.rpc.client import GrpcClient
from shop.infra.rpc.errors import MD_CODE
from shop.infra.rpc.server import serve
from shop.infra.tls import server_name
from shop.rpc.v1 import participants_pb2 as pb
from shop.rpc.v1 import participants_pb2_grpc as pb_grpc
from shop.services.coupon import rpc as coupon_rpc
from shop.services.coupon.contracts import CreateCoupon, UseCoupon
from shop.services.coupon.handlers import CouponHandlers
from shop.services.goods import rpc as goods_rpc
from shop.services.goods.contracts import MAX_STOCK, CreateGoods, ReduceStock, Restock, StockLine
from shop.services.goods.handlers import GoodsHandlers
from shop.services.user import rpc as user_rpc
from shop.services.user.contracts import ChangeMoney, CreateUser, MoneyLogType
from shop.services.user.handlers import UserHandlers
from tests.conftest import TlsFor
from tests.support import service_db, tracebacks

DEADLINE_S = 3.0


class Participants:
    """The participants' clients as the order service holds them: with its certificate (the only
    role that may take stock, use a coupon or move a balance)."""

    def __init__(self, handlers: dict[str, Any], server: grpc.aio.Server, target: str, tls: TlsFor) -> None:
        self.handlers = handlers
        self.server = server
        self.target = target
        self.tls = tls
        self.users = GrpcClient(user_rpc.SERVICE, target, DEADLINE_S, tls=tls("order"))
        self.goods = GrpcClient(goods_rpc.SERVICE, target, DEADLINE_S, tls=tls("order"))
        self.coupons = GrpcClient(coupon_rpc.SERVICE, target, DEADLINE_S, tls=tls("order"))


@pytest.fixture
async def net(tmp_path: Path, tls: TlsFor) -> AsyncIterator[Participants]:
    dbs: dict[str, Database] = {}
    for service in ("user", "goods", "coupon"):
        dbs[service] = await service_db(service, tmp_path)
    ids = IdWorker(1, 1)
    handlers = {
        "user": UserHandlers(dbs["user"], ids, PasswordHasher(time_cost=1, memory_cost=1024)),
        "goods": GoodsHandlers(dbs["goods"], ids),
        "coupon": CouponHandlers(dbs["coupon"], ids),
    }
    rpcs = {"user": user_rpc.SERVICE, "goods": goods_rpc.SERVICE, "coupon": coupon_rpc.SERVICE}
    server = await serve([(rpcs[s], h) for s, h in handlers.items()], "127.0.0.1", 0, tls=tls("test-server"))
    p = Participants(handlers, server, f"127.0.0.1:{server.port}", tls)
    try:
        yield p
    finally:
        for c in (p.users, p.goods, p.coupons):
            await c.close()
        await server.stop(None)
        for db in dbs.values():
            await db.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_values_round_trip_exactly(net: Participants) -> None:
    user_id = await net.users.create_user(CreateUser("alice", "secret-pw", Decimal("4800.00")))
    goods_id = await net.goods.create_goods(CreateGoods("phone", 10, Decimal("1999.99"), "a phone"))
    coupon_id = await net.coupons.create_coupon(CreateCoupon(user_id, Decimal("20.05")))
    # Snowflake ids pass 2^53: a double on the way would have rounded them.
    assert min(user_id, goods_id, coupon_id) > 2**53

    user = await net.users.find_user(user_id)
    assert user == await net.handlers["user"].find_user(user_id)
    assert user.user_id == user_id and user.user_mobile is None
    assert user.user_money == Decimal("4800.00") and str(user.user_money) == "4800.00"

    goods = await net.goods.find_goods(goods_id)
    assert goods == await net.handlers["goods"].find_goods(goods_id)
    assert str(goods.goods_price) == "1999.99" and goods.goods_desc == "a phone"

    coupon = await net.coupons.find_coupon(coupon_id)
    assert coupon == await net.handlers["coupon"].find_coupon(coupon_id)
    assert coupon.order_id is None and coupon.used_time is None and str(coupon.coupon_price) == "20.05"

    assert (await net.users.login("alice", "secret-pw")).user_id == user_id


async def test_order_steps_succeed_and_repeat_idempotently(net: Participants) -> None:
    user_id = await net.users.create_user(CreateUser("bob", "pw", Decimal("100.00"), "13800000000"))
    goods_id = await net.goods.create_goods(CreateGoods("book", 5, Decimal("30.00")))
    coupon_id = await net.coupons.create_coupon(CreateCoupon(user_id, Decimal("5.00")))
    order_id = 2**60 + 7

    for _ in range(2):  # the second call is a repeat: it finds the first one's ledger row
        await net.goods.reduce_stock(ReduceStock(order_id, [StockLine(goods_id, 2)]))
        # The coupon's price crosses exactly, on the first use and on the repeat (the order's pricing).
        assert await net.coupons.use_coupon(UseCoupon(coupon_id, user_id, order_id)) == Decimal("5.00")
        await net.users.change_money(ChangeMoney(user_id, order_id, Decimal("25.50"), MoneyLogType.PAID))

    assert (await net.goods.find_goods(goods_id)).goods_number == 3
    coupon = await net.coupons.find_coupon(coupon_id)
    assert coupon.is_used == 1 and coupon.order_id == order_id and coupon.used_time is not None
    user = await net.users.find_user(user_id)
    assert user.user_money == Decimal("74.50") and user.user_mobile == "13800000000"


async def expect_code(code: ShopCode, call: Any) -> ShopError:
    with pytest.raises(ShopError) as info:
        await call
    assert info.value.code is code, info.value
    assert info.value.http_status == code.http_status
    return info.value


async def test_errors_cross_as_the_same_codes(net: Participants) -> None:
    user_id = await net.users.create_user(CreateUser("carol", "right", Decimal("10.00")))
    other_id = await net.users.create_user(CreateUser("dave", "pw", Decimal("0.00")))
    goods_id = await net.goods.create_goods(CreateGoods("pen", 1, Decimal("2.00")))
    coupon_id = await net.coupons.create_coupon(CreateCoupon(other_id, Decimal("1.00")))

    # The goods' refusals name it and say what is left (the front door's sold-out gate reads it).
    short = await expect_code(ShopCode.SHOP_GOODS_NUM_NOT_ENOUGH,
                              net.goods.reduce_stock(ReduceStock(1, [StockLine(goods_id, 2)])))
    assert short.data == {"goodsId": str(goods_id), "goodsNumber": 1}
    missing = await expect_code(ShopCode.SHOP_GOODS_NO_EXIST, net.goods.find_goods(12345))
    assert missing.data == {"goodsId": "12345"}
    missing = await expect_code(ShopCode.SHOP_GOODS_NO_EXIST,
                                net.goods.reduce_stock(ReduceStock(2, [StockLine(12345, 1)])))
    assert missing.data == {"goodsId": "12345"}
    # Nobody else's refusal tells what it found: not a coupon's state, not a user's balance.
    used = await expect_code(ShopCode.SHOP_COUPON_INVALID, net.coupons.use_coupon(UseCoupon(coupon_id, user_id, 3)))
    assert used.data is None
    await expect_code(ShopCode.SHOP_COUPON_NO_EXIST, net.coupons.find_coupon(12345))
    poor = await expect_code(
        ShopCode.SHOP_MONEY_PAID_INVALID,
        net.users.change_money(ChangeMoney(user_id, 4, Decimal("10.01"), MoneyLogType.PAID)),
    )
    assert poor.data is None
    await expect_code(ShopCode.SHOP_USER_NO_EXIST, net.users.find_user(12345))
    await expect_code(ShopCode.SHOP_USER_NAME_TAKEN, net.users.create_user(CreateUser("carol", "x", Decimal(0))))
    bad = await expect_code(ShopCode.SHOP_USER_NOT_AUTHORIZED, net.users.login("carol", "wrong"))
    assert bad.message == "wrong user name or password"  # the handler's own message, not the code's
    await expect_code(ShopCode.SHOP_USER_NOT_AUTHORIZED, net.users.login("nobody", "right"))
    # Nothing the refusals touched has moved.
    assert (await net.goods.find_goods(goods_id)).goods_number == 1
    assert (await net.users.find_user(user_id)).user_money == Decimal("10.00")


async def test_a_throttled_login_crosses_with_its_retry_after(net: Participants) -> None:
    """The distributed mode's login: the user service throttles, the front door answers 429 with
    Retry-After from the error's data (infra/web.py), which crosses the wire with it."""
    await net.users.create_user(CreateUser("frank", "right", Decimal("0.00")))
    for _ in range(5):
        await expect_code(ShopCode.SHOP_USER_NOT_AUTHORIZED, net.users.login("frank", "wrong"))
    throttled = await expect_code(ShopCode.SHOP_USER_LOGIN_THROTTLED, net.users.login("frank", "right"))
    assert 1 <= throttled.data["retryAfter"] <= 300
    async with net.tls("web").channel(net.target, server_name("user")) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await pb_grpc.UserServiceStub(channel).Login(pb.LoginRequest(user_name="frank", password="right"),
                                                         timeout=DEADLINE_S)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_status_and_metadata_on_the_wire(net: Participants) -> None:
    """What a client in another language sees: a sensible status, the code in the metadata."""
    async with net.tls("web").channel(net.target, server_name("goods")) as channel:
        stub = pb_grpc.GoodsServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.FindGoods(pb.FindGoodsRequest(goods_id=1), timeout=DEADLINE_S)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert (MD_CODE, "SHOP_GOODS_NO_EXIST") in tuple(info.value.trailing_metadata())
        with pytest.raises(grpc.aio.AioRpcError) as info:
            req = pb.CreateGoodsRequest(goods_name="x", goods_number=1, goods_price="1e400x")
            await stub.CreateGoods(req, timeout=DEADLINE_S)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (MD_CODE, "SHOP_REQUEST_PARAMETER_VALID") in tuple(info.value.trailing_metadata())


async def test_no_server_is_unavailable_within_the_deadline(tls: TlsFor) -> None:
    async with GrpcClient(goods_rpc.SERVICE, f"127.0.0.1:{free_port()}", deadline_s=1.0, tls=tls("order")) as goods:
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable):
            await goods.find_goods(1)
        assert time.monotonic() - started < 1.5


class Slow:
    """The goods handlers, but a read that outlasts any caller's patience."""

    def __init__(self, inner: GoodsHandlers, delay_s: float) -> None:
        self.inner = inner
        self.delay_s = delay_s

    async def find_goods(self, goods_id: int) -> Any:
        await asyncio.sleep(self.delay_s)
        return await self.inner.find_goods(goods_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_a_slow_server_is_unavailable_after_the_deadline(net: Participants) -> None:
    goods_id = await net.goods.create_goods(CreateGoods("slow", 1, Decimal("1.00")))
    server = await serve([(goods_rpc.SERVICE, Slow(net.handlers["goods"], 3.0))], "127.0.0.1", 0,
                         tls=net.tls("test-server"))
    try:
        async with GrpcClient(goods_rpc.SERVICE, f"127.0.0.1:{server.port}", deadline_s=0.4,
                              tls=net.tls("order")) as goods:
            started = time.monotonic()
            with pytest.raises(ServiceUnavailable, match="timed out"):
                await goods.find_goods(goods_id)
            elapsed = time.monotonic() - started
            assert 0.3 < elapsed < 1.2  # the deadline, not the handler's 3 s; not retried
    finally:
        await server.stop(None)


class Flaky:
    """Counts calls and answers every one with ServiceUnavailable (status UNAVAILABLE)."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    def _hit(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        raise ServiceUnavailable("the database is away")

    async def find_goods(self, goods_id: int) -> Any:
        self._hit("find_goods")

    async def reduce_stock(self, cmd: ReduceStock) -> None:
        self._hit("reduce_stock")

    async def create_goods(self, cmd: CreateGoods) -> int:
        self._hit("create_goods")
        return 0

    async def restock(self, cmd: Restock) -> int:
        self._hit("restock")
        return 0


async def test_only_idempotent_calls_are_retried_once(tls: TlsFor) -> None:
    flaky = Flaky()
    server = await serve([(goods_rpc.SERVICE, flaky)], "127.0.0.1", 0, tls=tls("test-server"))
    try:
        async with GrpcClient(goods_rpc.SERVICE, f"127.0.0.1:{server.port}", deadline_s=DEADLINE_S,
                              tls=tls("order")) as goods:
            with pytest.raises(ServiceUnavailable, match="the database is away"):
                await goods.find_goods(1)
            with pytest.raises(ServiceUnavailable):
                await goods.reduce_stock(ReduceStock(1, [StockLine(1, 1)]))
            with pytest.raises(ServiceUnavailable):
                await goods.create_goods(CreateGoods("x", 1, Decimal("1.00")))
        async with GrpcClient(goods_rpc.SERVICE, f"127.0.0.1:{server.port}", deadline_s=DEADLINE_S,
                              tls=tls("web")) as web:
            with pytest.raises(ServiceUnavailable):
                await web.restock(Restock(1, 1))  # each call is a new adjustment: a repeat would add twice
    finally:
        await server.stop(None)
    assert flaky.calls == {"find_goods": 2, "reduce_stock": 2, "create_goods": 1, "restock": 1}


async def test_a_restock_crosses_for_the_operators_roles_only(net: Participants) -> None:
    goods_id = await net.goods.create_goods(CreateGoods("restocked", 10, Decimal("1.00")))
    for role in ("order", "pay", "goods", "order-web", "pay-web"):
        async with GrpcClient(goods_rpc.SERVICE, net.target, DEADLINE_S, tls=net.tls(role)) as caller:
            with pytest.raises(ServiceUnavailable, match="PERMISSION_DENIED"):
                await caller.restock(Restock(goods_id, 5))
    assert (await net.goods.find_goods(goods_id)).goods_number == 10
    for role, delta, after in (("web", 5, 15), ("admin", -15, 0)):
        async with GrpcClient(goods_rpc.SERVICE, net.target, DEADLINE_S, tls=net.tls(role)) as operator:
            assert await operator.restock(Restock(goods_id, delta)) == after
    async with GrpcClient(goods_rpc.SERVICE, net.target, DEADLINE_S, tls=net.tls("web")) as web:
        for cmd, code in ((Restock(goods_id, -1), ShopCode.SHOP_GOODS_NUM_NOT_ENOUGH),
                          (Restock(goods_id + 1, 1), ShopCode.SHOP_GOODS_NO_EXIST),
                          (Restock(goods_id, MAX_STOCK + 1), ShopCode.SHOP_REQUEST_PARAMETER_VALID)):
            with pytest.raises(ShopError) as e:
                await web.restock(cmd)
            assert e.value.code == code, cmd
    assert (await net.goods.find_goods(goods_id)).goods_number == 0


class Refusing:
    async def find_goods(self, goods_id: int) -> Any:
        raise ShopError(ShopCode.SHOP_GOODS_PRICE_INVALID, "prix changé: 100 % — naïve", http_status=400)


async def test_a_shop_error_keeps_its_message_and_http_status(tls: TlsFor) -> None:
    """Metadata is ASCII only: the message is percent-encoded on the way and decoded back."""
    server = await serve([(goods_rpc.SERVICE, Refusing())], "127.0.0.1", 0, tls=tls("test-server"))
    try:
        async with GrpcClient(goods_rpc.SERVICE, f"127.0.0.1:{server.port}", deadline_s=DEADLINE_S,
                              tls=tls("order")) as goods:
            with pytest.raises(ShopError) as info:
                await goods.find_goods(1)
    finally:
        await server.stop(None)
    assert info.value.code is ShopCode.SHOP_GOODS_PRICE_INVALID
    assert info.value.message == "prix changé: 100 % — naïve"
    assert info.value.http_status == 400


class Broken:
    """A bug in one method, a database gone in another (infra/failures.py tells them apart)."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    async def find_goods(self, goods_id: int) -> Any:
        self.calls["find_goods"] = self.calls.get("find_goods", 0) + 1
        raise KeyError("goods_number")

    async def reduce_stock(self, cmd: ReduceStock) -> None:
        self.calls["reduce_stock"] = self.calls.get("reduce_stock", 0) + 1
        raise ConnectionResetError("the database went away")


async def test_a_bug_is_a_500_and_a_dependency_down_a_503_across_the_wire(caplog: pytest.LogCaptureFixture,
                                                                          tls: TlsFor) -> None:
    broken = Broken()
    server = await serve([(goods_rpc.SERVICE, broken)], "127.0.0.1", 0, tls=tls("test-server"))
    try:
        async with GrpcClient(goods_rpc.SERVICE, f"127.0.0.1:{server.port}", deadline_s=DEADLINE_S,
                              tls=tls("order")) as goods:
            with caplog.at_level(logging.INFO, logger="shop"):
                with pytest.raises(ShopError) as bug:
                    await goods.find_goods(1)
            with pytest.raises(ServiceUnavailable) as down:
                await goods.reduce_stock(ReduceStock(1, [StockLine(1, 1)]))
    finally:
        await server.stop(None)
    # The bug: SHOP_FAIL "internal error" (the class name stays in the server's log), never retried.
    assert (bug.value.code, bug.value.http_status, bug.value.message) == (ShopCode.SHOP_FAIL, 500, "internal error")
    logged = tracebacks(caplog.records)
    assert len(logged) == 1 and isinstance(logged[0].exc_info[1], KeyError)  # type: ignore[index]
    # The database gone: unavailable, and retried once (reduce_stock is keyed by the order).
    assert down.value.http_status == 503 and "goods.reduce_stock is unavailable" in down.value.message
    assert broken.calls == {"find_goods": 1, "reduce_stock": 2}


# Calls sent together (infra/rpc/batch.py): a client with `in_flight` calls out sends the calls made
# meanwhile in one gRPC call, each handled and answered as if it had come alone.


class Counting:
    """A participant's handlers that count the batches and lone calls reaching the server."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.running = 0
        self.most_at_once = 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        async def counted(*args: Any) -> Any:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
            try:
                await asyncio.sleep(0.01)  # long enough for the others to arrive beside it
                return await method(*args)
            finally:
                self.running -= 1
        return counted


async def test_calls_made_while_one_is_out_go_together_and_are_answered_alone(net: Participants) -> None:
    goods_id = await net.goods.create_goods(CreateGoods("batched", 10, Decimal("3.00")))
    other_id = await net.goods.create_goods(CreateGoods("other", 1, Decimal("5.00")))
    counting = Counting(net.handlers["goods"])
    server = await serve([(goods_rpc.SERVICE, counting)], "127.0.0.1", 0, tls=net.tls("test-server"))
    try:
        async with GrpcClient(goods_rpc.SERVICE, f"127.0.0.1:{server.port}", DEADLINE_S, tls=net.tls("order"),
                              in_flight=1, hold_s=60) as goods:
            order = 2**60
            calls = [
                *(goods.reduce_stock(ReduceStock(order + i, [StockLine(goods_id, 1, Decimal("3.00"))]))
                  for i in range(8)),
                goods.reduce_stock(ReduceStock(order, [StockLine(goods_id, 1, Decimal("3.00"))])),  # a repeat
                goods.reduce_stock(ReduceStock(order + 20, [StockLine(other_id, 2)])),  # more than there is
                goods.reduce_stock(ReduceStock(order + 21, [StockLine(goods_id, 1, Decimal("2.99"))])),  # wrong price
                goods.reduce_stock(ReduceStock(order + 22, [StockLine(12345, 1)])),  # no such goods
                goods.find_goods(other_id),
                goods.find_goods(12345),
            ]
            results = await asyncio.gather(*calls, return_exceptions=True)
            # The first went alone; the others waited for it and went in one gRPC call.
            assert goods.batches_sent == 1 and counting.most_at_once == len(calls) - 1
    finally:
        await server.stop(None)

    assert results[:9] == [None] * 9
    assert isinstance(results[9], ShopError) and results[9].code is ShopCode.SHOP_GOODS_NUM_NOT_ENOUGH
    assert results[9].data == {"goodsId": str(other_id), "goodsNumber": 1}  # a refusal's data crosses too
    assert isinstance(results[10], ShopError) and results[10].code is ShopCode.SHOP_GOODS_PRICE_INVALID
    assert isinstance(results[11], ShopError) and results[11].code is ShopCode.SHOP_GOODS_NO_EXIST
    assert results[12] == await net.handlers["goods"].find_goods(other_id)
    assert isinstance(results[13], ShopError) and results[13].code is ShopCode.SHOP_GOODS_NO_EXIST
    # Eight orders took one each; the repeat found the first one's row; the refusals took nothing.
    assert (await net.goods.find_goods(goods_id)).goods_number == 2
    assert (await net.goods.find_goods(other_id)).goods_number == 1


async def three_behind_one(goods: GrpcClient, then: Any = None) -> list[Any]:
    """A lone call out (not safe to repeat) and, while it is, three calls that go together: a read
    and a step (both safe to repeat) and another create. Flaky refuses them all."""
    first = asyncio.ensure_future(goods.create_goods(CreateGoods("x", 1, Decimal("1.00"))))
    await asyncio.sleep(0)
    if then is not None:
        then()
    results = await asyncio.gather(goods.find_goods(2), goods.reduce_stock(ReduceStock(1, [StockLine(1, 1)])),
                                   goods.create_goods(CreateGoods("y", 1, Decimal("1.00"))), return_exceptions=True)
    with pytest.raises(ServiceUnavailable, match="the database is away"):
        await first
    assert goods.batches_sent >= 1
    return results


async def test_calls_refused_in_a_batch_are_retried_as_alone(tls: TlsFor) -> None:
    """The handler's own ServiceUnavailable: the retry-safe calls go once more, the others fail."""
    flaky = Flaky()
    server = await serve([(goods_rpc.SERVICE, Counting(flaky))], "127.0.0.1", 0, tls=tls("test-server"))
    try:
        async with GrpcClient(goods_rpc.SERVICE, f"127.0.0.1:{server.port}", DEADLINE_S, tls=tls("order"),
                              in_flight=1, hold_s=60) as goods:
            results = await three_behind_one(goods)
    finally:
        await server.stop(None)
    assert all(isinstance(r, ServiceUnavailable) and "the database is away" in r.message for r in results), results
    assert flaky.calls == {"find_goods": 2, "reduce_stock": 2, "create_goods": 2}


async def test_a_batch_that_cannot_arrive_is_sent_again_where_safe(tls: TlsFor) -> None:
    """The provider it went to is gone: it is marked failed, and each call goes once more to the
    next provider, as alone (a call that never left may go again even if not safe to repeat)."""
    flaky = Flaky()
    live = await serve([(goods_rpc.SERVICE, Counting(flaky))], "127.0.0.1", 0, tls=tls("test-server"))

    class TwoProviders:  # the registry's live list: a provider that is gone, picked when asked to
        def __init__(self) -> None:
            self.up, self.dead = f"127.0.0.1:{live.port}", f"127.0.0.1:{free_port()}"
            self.dead_next = False
            self.failed: list[str] = []

        async def pick(self) -> str:
            return self.dead if self.dead_next and self.dead not in self.failed else self.up

        def mark_failed(self, address: str) -> None:
            self.failed.append(address)

        def live(self) -> None:
            return None

    target = TwoProviders()
    try:
        async with GrpcClient(goods_rpc.SERVICE, target, DEADLINE_S, tls=tls("order"), in_flight=1, hold_s=60) as goods:
            # One call out to the live provider; the calls made meanwhile go together to the dead one.
            results = await three_behind_one(goods, then=lambda: setattr(target, "dead_next", True))
    finally:
        await live.stop(None)
    assert target.failed == [target.dead] * 3  # each call of the batch marked it
    assert all(isinstance(r, ServiceUnavailable) and "the database is away" in r.message for r in results), results
    # Each reached the live provider once: the batch never connected, and the retry spends the one
    # retry (so the handler's ServiceUnavailable is not tried a third time).
    assert flaky.calls == {"find_goods": 1, "reduce_stock": 1, "create_goods": 2}


async def test_a_call_that_waited_past_its_deadline_is_not_sent(net: Participants) -> None:
    goods_id = await net.goods.create_goods(CreateGoods("late", 5, Decimal("1.00")))
    server = await serve([(goods_rpc.SERVICE, Slow(net.handlers["goods"], 0.5))], "127.0.0.1", 0,
                         tls=net.tls("test-server"))
    try:
        async with GrpcClient(goods_rpc.SERVICE, f"127.0.0.1:{server.port}", deadline_s=0.3,
                              tls=net.tls("order"), in_flight=1, hold_s=60) as goods:
            slow = asyncio.ensure_future(goods.find_goods(goods_id))  # holds the one call out past 0.3 s
            await asyncio.sleep(0)
            with pytest.raises(ServiceUnavailable, match="timed out"):
                await goods.reduce_stock(ReduceStock(7, [StockLine(goods_id, 1)]))
            with pytest.raises(ServiceUnavailable, match="timed out"):
                await slow
            await asyncio.sleep(0.3)
    finally:
        await server.stop(None)
    assert (await net.goods.find_goods(goods_id)).goods_number == 5  # the step that waited never went


async def test_a_batch_with_a_call_not_for_the_callers_role_is_refused_whole(net: Participants) -> None:
    user_id = await net.users.create_user(CreateUser("grace", "pw", Decimal("50.00")))
    server = await serve([(user_rpc.SERVICE, Counting(net.handlers["user"]))], "127.0.0.1", 0,
                         tls=net.tls("test-server"))
    try:
        async with GrpcClient(user_rpc.SERVICE, f"127.0.0.1:{server.port}", DEADLINE_S, tls=net.tls("web"),
                              in_flight=1, hold_s=60) as web:
            first = asyncio.ensure_future(web.find_user(user_id))
            await asyncio.sleep(0)
            results = await asyncio.gather(
                web.find_user(user_id), web.change_money(ChangeMoney(user_id, 9, Decimal("1.00"), MoneyLogType.PAID)),
                return_exceptions=True)
            assert (await first).user_id == user_id
            assert web.batches_sent == 1
    finally:
        await server.stop(None)
    assert all(isinstance(r, ServiceUnavailable) and "PERMISSION_DENIED" in r.message for r in results), results
    assert (await net.users.find_user(user_id)).user_money == Decimal("50.00")
