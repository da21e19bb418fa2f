"""An operator's restock (GoodsService.restock) on every backend: each one a signed row of the goods
ledger, a refused one changes nothing, the audit counts restocks with the orders and still finds a
stock changed without its row; and, on the servers, a removal racing orders for the last units."""
import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa

from shop.common.codes import ShopCode
from shop.common.errors import ShopError
from shop.common.ids import IdWorker
from shop.infra.db import Query
from shop.infra.ledger import adjustment_key
from shop.services.goods import repository as goods_repo
from shop.services.goods.contracts import MAX_STOCK, ReduceStock, Restock, StockLine
from shop.services.goods.handlers import GoodsHandlers
from shop.services.goods.models import goods, goods_number_log
from shop.services.order.domain import OrderStatus
from tests.integration.test_ledger import open_all
from tests.support import new_id, place, quiet, world

ADJUST = goods_repo.ADJUST
GOODS_ROWS = Query(sa.select(goods_number_log).where(goods_number_log.c.goods_id == sa.bindparam("goods_id")))


async def stock(shop, goods_id):
    return (await shop.goods.find_goods(goods_id)).goods_number


async def ledger(shop, goods_id):
    """The goods' ledger rows: [(order_id, kind, amount)], in key order."""
    rows = await shop.runtime.dbs["goods"].fetchall(GOODS_ROWS, goods_id=goods_id)
    return sorted((r["order_id"], r["log_type"], r["goods_number"]) for r in rows)


async def sums(shop, goods_id):
    """The goods' ledger sum as the audit reads it both ways: from its rows, and from the database's SUM."""
    async with shop.runtime.dbs["goods"].unit_of_work() as uow:
        facts = await goods_repo.LEDGER.facts(uow)
        totals = await goods_repo.LEDGER.totals(uow, goods_id, goods_id + 1)
    return facts.ledger[goods_id], totals[goods_id]


async def refused(call):
    with pytest.raises(ShopError) as e:
        await call
    return e.value.code


@pytest.mark.all_backends
async def test_each_restock_is_a_signed_row_of_its_own_counted_in_the_ledger(shop):
    w = await world(shop, stock=10, coupon=None)
    g = w.goods_id
    assert await shop.goods.restock(Restock(g, 5)) == 15
    assert await shop.goods.restock(Restock(g, 5)) == 20  # the same again is a new adjustment
    assert await shop.goods.restock(Restock(g, -17)) == 3
    assert await stock(shop, g) == 3
    rows = await ledger(shop, g)
    assert rows[0] == (0, goods_repo.STOCK_IN, 10)
    adjustments = rows[1:]
    assert sorted(a for _, kind, a in adjustments if kind == ADJUST) == [-17, 5, 5] and len(adjustments) == 3
    assert len({o for o, _, _ in adjustments}) == 3 and all(o > 0 for o, _, _ in adjustments)  # fresh ids
    assert await sums(shop, g) == (3, 3)
    async with shop.runtime.dbs["goods"].unit_of_work() as uow:
        facts = await goods_repo.LEDGER.facts(uow)
    # No order's step: nothing taken nor given back under an adjustment's key, nothing in a timeline.
    assert not {o for o, _, _ in adjustments} & ({*facts.taken} | {*facts.returned})
    assert [await shop.goods.timeline(o) for o, _, _ in adjustments] == [[], [], []]


@pytest.mark.all_backends
async def test_a_refused_restock_changes_nothing(shop):
    w = await world(shop, stock=3, coupon=None)
    g = w.goods_id
    await shop.goods.reduce_stock(ReduceStock(new_id(), [StockLine(g, 1)]))
    before = (await stock(shop, g), await ledger(shop, g))
    assert before[0] == 2
    assert await refused(shop.goods.restock(Restock(g, -3))) == ShopCode.SHOP_GOODS_NUM_NOT_ENOUGH
    assert await refused(shop.goods.restock(Restock(g, MAX_STOCK - 1))) == ShopCode.SHOP_REQUEST_PARAMETER_VALID
    assert await refused(shop.goods.restock(Restock(g, 0))) == ShopCode.SHOP_REQUEST_PARAMETER_VALID
    assert await refused(shop.goods.restock(Restock(new_id(), 5))) == ShopCode.SHOP_GOODS_NO_EXIST
    assert (await stock(shop, g), await ledger(shop, g)) == before
    # The bounds themselves are allowed: down to 0, up to the maximum.
    assert await shop.goods.restock(Restock(g, -2)) == 0
    assert await shop.goods.restock(Restock(g, MAX_STOCK)) == MAX_STOCK
    assert await sums(shop, g) == (MAX_STOCK, MAX_STOCK)


@pytest.mark.all_backends
async def test_a_keyed_restock_is_made_once_and_a_repeat_answers_the_stock_as_it_is(shop):
    g = (await world(shop, stock=10, coupon=None)).goods_id
    other = (await world(shop, stock=1, coupon=None)).goods_id
    assert await shop.goods.restock(Restock(g, 5, "k-1")) == 15
    assert await shop.goods.restock(Restock(g, 5, "k-1")) == 15  # a retry whose answer was lost
    assert await shop.goods.restock(Restock(g, -4)) == 11
    assert await shop.goods.restock(Restock(g, 5, "k-1")) == 11  # still once: the stock as it is now
    assert await refused(shop.goods.restock(Restock(g, 6, "k-1"))) == ShopCode.SHOP_REQUEST_PARAMETER_VALID
    assert await refused(shop.goods.restock(Restock(g, -5, "k-1"))) == ShopCode.SHOP_REQUEST_PARAMETER_VALID
    assert await shop.goods.restock(Restock(g, 5, "k-2")) == 16  # another key, another change
    assert await shop.goods.restock(Restock(other, 5, "k-1")) == 6  # a key names a change of one goods
    rows = await ledger(shop, g)
    assert [(o, a) for o, kind, a in rows if kind == ADJUST and o < 0] == sorted(
        [(adjustment_key("k-1"), 5), (adjustment_key("k-2"), 5)])
    assert len([o for o, kind, _ in rows if kind == ADJUST]) == 3
    assert await sums(shop, g) == (16, 16) and await sums(shop, other) == (6, 6)
    full = (await shop.operator.full_audit()).json()
    assert full == {"consistent": True, "violations": [], "pending": 0}, full


@pytest.mark.all_backends
async def test_a_refused_keyed_restock_leaves_its_key_unused(shop):
    g = (await world(shop, stock=3, coupon=None)).goods_id
    before = await ledger(shop, g)
    assert await refused(shop.goods.restock(Restock(g, -5, "take-5"))) == ShopCode.SHOP_GOODS_NUM_NOT_ENOUGH
    assert await refused(shop.goods.restock(Restock(g, MAX_STOCK, "add-max"))) == ShopCode.SHOP_REQUEST_PARAMETER_VALID
    assert (await stock(shop, g), await ledger(shop, g)) == (3, before)
    assert await shop.goods.restock(Restock(g, 4)) == 7
    assert await shop.goods.restock(Restock(g, -5, "take-5")) == 2  # now it can be made, under its key
    assert await shop.goods.restock(Restock(g, -5, "take-5")) == 2
    assert await sums(shop, g) == (2, 2)


REPEATS = 6  # one keyed restock sent this many times at once
HOLD_KEY_S = 0.2  # how long the first keeps its change uncommitted once every repeat has started


@pytest.mark.parametrize("backend", ["postgresql", "mysql"], indirect=True)
async def test_a_keyed_restock_sent_several_times_at_once_is_made_once(shop, monkeypatch):
    """The repeats' ledger rows meet the first's on the key's unique index: each waits for the first's
    commit, then finds its row and changes nothing. Only one reaches the stock's update (a restock
    that updated first and recorded after would add the delta once per repeat), and every repeat's
    answer came only after the first's commit (they raced: none could go first)."""
    base = shop.runtime.dbs["goods"]
    db = type(base)(base.url, pool_size=REPEATS)
    await db.connect()
    await open_all(db, REPEATS)
    handlers = GoodsHandlers(db, IdWorker(30, 30))
    g = (await world(shop, stock=10, coupon=None)).goods_id
    loop = asyncio.get_running_loop()
    started, updates, released = asyncio.Event(), [], [0.0]
    real_adjust = goods_repo.adjust

    async def adjust(uow, goods_id, delta):  # the stock's update, after the ledger row
        updates.append(goods_id)
        changed = await real_adjust(uow, goods_id, delta)
        await started.wait()
        await asyncio.sleep(HOLD_KEY_S)  # the repeats' rows reach the index meanwhile, and wait
        released[0] = loop.time()
        return changed

    monkeypatch.setattr(goods_repo, "adjust", adjust)

    async def send():
        number = await handlers.restock(Restock(g, 7, "at-once"))
        return number, loop.time()

    try:
        sent = [asyncio.create_task(send()) for _ in range(REPEATS)]
        await asyncio.sleep(0.05)  # every one has begun its transaction and written (or is writing) its row
        started.set()
        results = await asyncio.gather(*sent)
    finally:
        await db.close()
    assert updates == [g]
    assert [n for n, _ in results] == [17] * REPEATS
    assert sorted(t for _, t in results)[1] > released[0], "a repeat was answered before the first committed"
    assert await sums(shop, g) == (17, 17)


@pytest.mark.all_backends
@pytest.mark.shop_settings(order_cancel_after_s=600)  # no payment timeout gives stock back meanwhile
async def test_the_audit_accounts_for_restocks_with_the_orders(shop):
    w = await world(shop, money="100.00", stock=2, price="30.00", coupon=None)
    g = w.goods_id
    first = await shop.orders.confirm_order(place(w.user_id, g, w.price, 2))
    assert first.order_status == OrderStatus.CONFIRMED
    with pytest.raises(ShopError) as e:  # sold out
        await shop.orders.confirm_order(place(w.user_id, g, w.price, 1))
    assert e.value.code == ShopCode.SHOP_GOODS_NUM_NOT_ENOUGH
    assert await shop.goods.restock(Restock(g, 4)) == 4
    # The front door remembers the goods sold out for a TTL at most (services/order/sold_out.py).
    second = await sold_within_a_second(shop, place(w.user_id, g, w.price, 3))
    assert second.order_status == OrderStatus.CONFIRMED and await stock(shop, g) == 1
    await shop.orders.cancel_order(second.order_id, w.user_id)  # its 3 units come back by message
    assert (await quiet(shop))["pending"] == 0 and await stock(shop, g) == 4
    assert await shop.goods.restock(Restock(g, -1)) == 3
    report = await quiet(shop)
    assert report == {"consistent": True, "violations": [], "pending": 0}, report
    assert await sums(shop, g) == (3, 3)
    full = (await shop.operator.full_audit()).json()
    assert full == {"consistent": True, "violations": [], "pending": 0}, full


async def sold_within_a_second(shop, cmd):
    loop = asyncio.get_running_loop()
    end = loop.time() + 1.0
    while True:
        try:
            return await shop.orders.confirm_order(cmd)
        except ShopError as exc:
            if exc.code != ShopCode.SHOP_GOODS_NUM_NOT_ENOUGH or loop.time() > end:
                raise
        await asyncio.sleep(0.02)


@pytest.mark.all_backends
async def test_a_stock_change_without_its_ledger_row_is_reported(shop):
    w = await world(shop, stock=10, coupon=None)
    g = w.goods_id
    await shop.goods.restock(Restock(g, 5))
    assert (await shop.operator.full_audit()).consistent
    async with shop.runtime.dbs["goods"].unit_of_work() as uow:  # a restock by hand, with no ledger row
        await uow.execute(Query(sa.update(goods).where(goods.c.goods_id == g)
                                .values(goods_number=goods.c.goods_number + 7)))
        await uow.commit()
    full = (await shop.operator.full_audit()).json()
    assert full["violations"] == [f"goods {g}: stock 22 but its ledger says 15"], full


ROUNDS = 6  # goods per interleaving, raced at once
HOLD_S = 0.05  # how long the first writer keeps its update uncommitted once the second has started


@dataclass
class Race:
    """One goods of 2 units: an order's step for 1 and a removal of 2, one of them updating first
    and keeping that uncommitted while the other's update starts."""

    goods_id: int
    removal_first: bool
    first_went: asyncio.Event = field(default_factory=asyncio.Event)  # the first's update is done
    second_went: asyncio.Event = field(default_factory=asyncio.Event)  # the second's update has started
    released: float = 0.0  # when the first stopped holding (and went on to commit)
    second: tuple[float, float] = (0.0, 0.0)  # the second's update: start, end

    async def hold(self) -> None:
        self.first_went.set()
        await self.second_went.wait()
        await asyncio.sleep(HOLD_S)
        self.released = asyncio.get_running_loop().time()

    async def timed(self, update: Awaitable[bool]) -> bool:
        loop = asyncio.get_running_loop()
        start = loop.time()
        self.second_went.set()
        try:
            return await update
        finally:
            self.second = (start, loop.time())

    @property
    def waited(self) -> bool:
        """The second's update was under way while the first's was uncommitted, and came back only after."""
        return self.second[0] < self.released < self.second[1]


@pytest.mark.parametrize("backend", ["postgresql", "mysql"], indirect=True)
async def test_a_removal_racing_an_order_for_the_last_units_never_takes_stock_below_zero(shop, monkeypatch):
    """Whichever updates first holds the row; the other waits for its commit and decides on what it
    left: an order first leaves 1 unit, and the removal of 2 is refused; a removal first leaves 0,
    and the order is refused. Both are shown to have waited (the race happened), and the stock never
    goes below 0 (a plain `stock + delta` would leave -1 where the order went first)."""
    base = shop.runtime.dbs["goods"]
    db = type(base)(base.url, pool_size=4 * ROUNDS)
    await db.connect()
    await open_all(db, 4 * ROUNDS)
    handlers = GoodsHandlers(db, IdWorker(30, 30))
    races = {}
    for i in range(2 * ROUNDS):
        g = (await world(shop, stock=2, coupon=None)).goods_id
        races[g] = Race(g, removal_first=i % 2 == 1)
    real_adjust, real_take = goods_repo.adjust, goods_repo.take

    async def adjust(uow, goods_id, delta):  # the handler's conditional update, in the handler's transaction
        race = races[goods_id]
        if not race.removal_first:
            await race.first_went.wait()
            return await race.timed(real_adjust(uow, goods_id, delta))
        changed = await real_adjust(uow, goods_id, delta)
        await race.hold()
        return changed

    monkeypatch.setattr(goods_repo, "adjust", adjust)

    async def order(race):
        if race.removal_first:
            await race.first_went.wait()
        async with db.unit_of_work() as uow:
            async def change():
                if race.removal_first:
                    return await race.timed(real_take(uow, race.goods_id, 1))
                changed = await real_take(uow, race.goods_id, 1)
                await race.hold()
                return changed

            try:
                await goods_repo.LEDGER.take(uow, race.goods_id, new_id(), 1, change, goods_repo.REFUSAL)
            except ShopError as e:
                return e.code
            await uow.commit()
            return None

    async def removal(race):
        try:
            return await handlers.restock(Restock(race.goods_id, -2))
        except ShopError as e:
            return e.code

    try:
        results = await asyncio.gather(*(asyncio.gather(order(r), removal(r)) for r in races.values()))
    finally:
        await db.close()

    for race, (ordered, removed) in zip(races.values(), results, strict=True):
        g = race.goods_id
        if race.removal_first:
            assert (ordered, removed, await stock(shop, g)) == (ShopCode.SHOP_GOODS_NUM_NOT_ENOUGH, 0, 0), g
        else:
            assert (ordered, removed, await stock(shop, g)) == (None, ShopCode.SHOP_GOODS_NUM_NOT_ENOUGH, 1), g
        assert await sums(shop, g) == ((0, 0) if race.removal_first else (1, 1))
        assert race.waited, f"goods {g}: the second update did not wait for the first's commit: nothing raced"
