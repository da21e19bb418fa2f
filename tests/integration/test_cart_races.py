"""Carts racing on every backend: many carts for the last units of one of their lines (all or
nothing per cart, whatever the other lines hold), and two carts that share goods in opposite line
orders (the goods step locks rows in goods-id order: no deadlock on PostgreSQL or MariaDB)."""
from __future__ import annotations

import asyncio
import os
from decimal import Decimal
from typing import Any

import pytest

from shop.common.codes import ShopCode
from shop.common.errors import ShopError
from shop.services.goods import repository as goods_repo
from shop.services.goods.contracts import CreateGoods
from shop.services.goods.handlers import GoodsHandlers
from shop.services.order.contracts import Order
from shop.services.order.domain import OrderStatus
from shop.services.user.contracts import CreateUser
from tests.support import D, cart, cart_json, quiet

PRICE = D("10.00")
RACE_MS = 1000  # each cart is held after its pre-order: longer than it takes every racer to get there


class InFlight:
    """How many goods steps (a cart's transaction on the goods database) run at once: the proof that
    the carts raced, not merely ran one after another."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real = GoodsHandlers.reduce_stock

        async def reduce_stock(handlers: GoodsHandlers, cmd: Any) -> None:
            self.now += 1
            self.peak = max(self.peak, self.now)
            try:
                await real(handlers, cmd)
            finally:
                self.now -= 1

        # Before the shop's first call: the in-process client binds the method then.
        monkeypatch.setattr(GoodsHandlers, "reduce_stock", reduce_stock)


async def _goods(shop: Any, n: int) -> int:
    return await shop.goods.create_goods(CreateGoods("cart-goods", n, PRICE))


async def _user(shop: Any) -> int:
    return await shop.users.create_user(CreateUser(f"racer-{os.urandom(5).hex()}", "secret", D("10.00")))


async def _stock(shop: Any, goods_id: int) -> int:
    return (await shop.goods.find_goods(goods_id)).goods_number


async def _taken(shop: Any) -> dict[int, dict[int, Decimal]]:
    """order -> goods -> units the goods ledger recorded taken (a barrier: 0)."""
    async with shop.runtime.dbs["goods"].unit_of_work(readonly=True) as uow:
        return (await goods_repo.LEDGER.facts(uow)).taken


@pytest.mark.all_backends
@pytest.mark.shop_settings(order_cancel_after_s=30.0)  # no deadline may cancel a cart held by the race
async def test_twenty_carts_for_the_last_five_units_of_one_line(shop, monkeypatch):
    # A is made last: its id is the highest, so each cart's step takes B and C first, then is refused
    # at A, and must take B and C back with it (one transaction).
    b, c, a = await _goods(shop, 100), await _goods(shop, 100), await _goods(shop, 5)
    users = [await _user(shop) for _ in range(20)]
    in_flight = InFlight()
    in_flight.install(monkeypatch)
    shop.faults.arm("order.after_pre_order", "delay", delay_ms=RACE_MS)
    try:
        results = await asyncio.gather(
            *(shop.orders.confirm_order(cart(u, [(a, PRICE, 1), (b, PRICE, 1), (c, PRICE, 1)])) for u in users),
            return_exceptions=True)
    finally:
        shop.faults.clear()
    won = [r for r in results if isinstance(r, Order)]
    lost = [r for r in results if not isinstance(r, Order)]
    assert all(isinstance(e, ShopError) for e in lost), lost
    # The race happened: every cart passed validation while A had units (a cart refused there saves
    # nothing), and several goods steps ran at once.
    saved = (await shop.orders.audit_facts()).orders
    assert len(saved) == 20
    assert in_flight.peak >= 5, in_flight.peak
    assert len(won) == 5
    for e in lost:
        assert e.code == ShopCode.SHOP_GOODS_NUM_NOT_ENOUGH and e.data is not None, e
        assert e.data["goodsId"] == str(a), e.data  # the line refused, though the cart lists it first
    lost_ids = {int(e.data["orderId"]) for e in lost}  # type: ignore[index]
    assert {i for i, o in saved.items() if o.order_status == OrderStatus.CANCELLED} == lost_ids
    assert {i for i, o in saved.items() if o.order_status == OrderStatus.CONFIRMED} == {o.order_id for o in won}

    report = await quiet(shop)
    assert report == {"consistent": True, "violations": [], "pending": 0}
    assert [await _stock(shop, g) for g in (a, b, c)] == [0, 95, 95]
    taken = await _taken(shop)
    for o in won:
        assert taken[o.order_id] == {a: 1, b: 1, c: 1}
    for order_id in lost_ids:  # nothing of any line; at most the barrier its cancel left
        assert all(n == 0 for n in taken.get(order_id, {}).values()), taken.get(order_id)


ROUNDS = 30


@pytest.mark.parametrize("backend", ["postgresql", "mysql"], indirect=True)
@pytest.mark.shop_settings(order_cancel_after_s=30.0)
async def test_carts_sharing_goods_in_opposite_order_never_deadlock(shop, client, monkeypatch):
    """Two carts (X, Y) and (Y, X), released together at the goods step, round after round: with the
    rows locked in the lines' order they would deadlock, and the database would fail one of them."""
    from tests.conftest import ADMIN
    from tests.support import Api

    api = Api(client, ADMIN)
    x, y = await _goods(shop, 10 * ROUNDS), await _goods(shop, 10 * ROUNDS)
    buyers: list[tuple[str, dict[str, str]]] = []
    for _ in range(2):
        name = f"opposite-{os.urandom(5).hex()}"
        buyers.append((await api.create_user(name, "10.00"), await api.login(name)))
    in_flight = InFlight()
    in_flight.install(monkeypatch)
    # Both carts wait here after their pre-order, and reach the goods step at the same moment.
    shop.faults.arm("order.after_pre_order", "delay", delay_ms=100)
    raced = 0
    statuses: list[int] = []
    try:
        for n in range(ROUNDS):
            in_flight.peak = 0
            lines: list[list[tuple[int | str, str, int]]] = [[(x, "10.00", 1 + n % 3), (y, "10.00", 2)],
                                                             [(y, "10.00", 1), (x, "10.00", 1 + n % 2)]]
            rs = await asyncio.gather(*(api.confirm(auth, cart_json(uid, ls))
                                        for (uid, auth), ls in zip(buyers, lines, strict=True)))
            statuses += [r.status_code for r in rs]
            assert all(r.status_code == 200 for r in rs), [r.text for r in rs if r.status_code != 200]
            raced += in_flight.peak >= 2
    finally:
        shop.faults.clear()
    assert statuses == [200] * 2 * ROUNDS
    # The two steps overlapped in most rounds (each waited at the other's lock, not behind its commit).
    assert raced >= ROUNDS // 2, raced
    report = await quiet(shop)
    assert report == {"consistent": True, "violations": [], "pending": 0}
    took_x = sum(1 + n % 3 + 1 + n % 2 for n in range(ROUNDS))
    assert (await _stock(shop, x), await _stock(shop, y)) == (10 * ROUNDS - took_x, 10 * ROUNDS - 3 * ROUNDS)
