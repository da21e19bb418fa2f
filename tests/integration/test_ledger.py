"""The ledger (infra.ledger) on every backend: a step and its compensation in either order, repeated,
several steps in one transaction, and, on the servers, a step racing its compensation."""
import asyncio
import random

import pytest
import sqlalchemy as sa

from shop.common.codes import ShopCode
from shop.common.errors import ShopError
from shop.infra.db import Query
from shop.infra.ledger import Taken
from shop.services.goods import repository as goods_repo
from shop.services.goods.contracts import CreateGoods
from shop.services.goods.models import goods_number_log
from shop.services.user.contracts import ChangeMoney, MoneyLogType
from shop.services.user.models import user_money_log
from tests.support import D, new_id, world

STOCK = goods_repo.LEDGER
REDUCE, RESTORE = goods_repo.REDUCE, goods_repo.RESTORE
ORDER_ROWS = Query(sa.select(goods_number_log).where(goods_number_log.c.order_id == sa.bindparam("order_id")))
MONEY_ROWS = Query(sa.select(user_money_log).where(user_money_log.c.order_id == sa.bindparam("order_id")))


async def take(uow, goods_id, order_id, n):
    return await STOCK.take(uow, goods_id, order_id, n, lambda: goods_repo.take(uow, goods_id, n), goods_repo.REFUSAL)


async def step(db, goods_id, order_id, n):
    """One order's step on one goods, in its own transaction, committed unless refused."""
    async with db.unit_of_work() as uow:
        try:
            taken = await take(uow, goods_id, order_id, n)
        except ShopError as exc:
            if exc.code != ShopCode.SHOP_GOODS_NUM_NOT_ENOUGH:
                raise
            return None
        await uow.commit()
        return taken


async def compensate(db, goods_id, order_id):
    async with db.unit_of_work() as uow:
        given = await STOCK.give_back(uow, goods_id, order_id, lambda n: goods_repo.give_back(uow, goods_id, n))
        await uow.commit()
        return given


async def stock(shop, goods_id):
    return (await shop.goods.find_goods(goods_id)).goods_number


async def rows(db, order_id):
    """The order's ledger rows: {(goods, kind): amount}."""
    return {(r["goods_id"], r["log_type"]): r["goods_number"] for r in await db.fetchall(ORDER_ROWS, order_id=order_id)}


async def goods(shop, n):
    return await shop.goods.create_goods(CreateGoods("iphone7", n, D("10.00")))


@pytest.mark.all_backends
async def test_a_compensation_undoes_its_step(shop):
    db, g, order = shop.runtime.dbs["goods"], await goods(shop, 10), new_id()
    assert await step(db, g, order, 3) == Taken(3, repeated=False)
    assert (await stock(shop, g), await rows(db, order)) == (7, {(g, REDUCE): 3})
    assert await compensate(db, g, order) == 3
    assert (await stock(shop, g), await rows(db, order)) == (10, {(g, REDUCE): 3, (g, RESTORE): 3})
    async with db.unit_of_work() as uow:
        facts = await STOCK.facts(uow)
    assert facts.ledger[g] == 10 and facts.taken[order] == {g: 3} and facts.returned[order] == {g: 3}
    assert facts.held(order) == {}


@pytest.mark.all_backends
async def test_a_compensation_first_leaves_a_barrier_that_refuses_the_late_step(shop):
    db, g, order = shop.runtime.dbs["goods"], await goods(shop, 10), new_id()
    assert await compensate(db, g, order) == 0  # null compensation: nothing to give back
    barrier = {(g, REDUCE): 0, (g, RESTORE): 0}
    assert (await stock(shop, g), await rows(db, order)) == (10, barrier)
    with pytest.raises(ShopError) as e:
        await step(db, g, order, 3)
    assert e.value.code == ShopCode.SHOP_ORDER_STATUS_INVALID
    assert (await stock(shop, g), await rows(db, order)) == (10, barrier)
    assert await compensate(db, g, order) == 0
    assert (await stock(shop, g), await rows(db, order)) == (10, barrier)


@pytest.mark.all_backends
async def test_a_repeated_step_changes_nothing_and_the_first_stands(shop):
    db, g, order = shop.runtime.dbs["goods"], await goods(shop, 10), new_id()
    assert await step(db, g, order, 3) == Taken(3, repeated=False)
    assert await step(db, g, order, 3) == Taken(3, repeated=True)
    assert await step(db, g, order, 5) == Taken(3, repeated=True)  # the first call's amount, not this one's
    assert (await stock(shop, g), await rows(db, order)) == (7, {(g, REDUCE): 3})


@pytest.mark.all_backends
async def test_a_repeated_compensation_gives_back_once(shop):
    db, g, order = shop.runtime.dbs["goods"], await goods(shop, 10), new_id()
    await step(db, g, order, 4)
    assert await compensate(db, g, order) == 4
    # Again, one after another and then several at once (redelivered cancels on several consumers).
    assert await compensate(db, g, order) == 0
    assert await asyncio.gather(*(compensate(db, g, order) for _ in range(4))) == [0, 0, 0, 0]
    assert (await stock(shop, g), await rows(db, order)) == (10, {(g, REDUCE): 4, (g, RESTORE): 4})


@pytest.mark.all_backends
async def test_several_steps_in_one_transaction_are_all_or_nothing(shop):
    db, order = shop.runtime.dbs["goods"], new_id()
    a, b = await goods(shop, 5), await goods(shop, 1)
    async with db.unit_of_work() as uow:  # two lines of one order; the second finds too little stock
        assert await take(uow, a, order, 2) == Taken(2, repeated=False)
        with pytest.raises(ShopError) as e:
            await take(uow, b, order, 2)
        assert e.value.code == ShopCode.SHOP_GOODS_NUM_NOT_ENOUGH
    assert (await stock(shop, a), await stock(shop, b), await rows(db, order)) == (5, 1, {})

    async with db.unit_of_work() as uow:
        assert await take(uow, a, order, 2) == Taken(2, repeated=False)
        assert await take(uow, b, order, 1) == Taken(1, repeated=False)
        await uow.commit()
    assert (await stock(shop, a), await stock(shop, b)) == (3, 0)
    assert await rows(db, order) == {(a, REDUCE): 2, (b, REDUCE): 1}
    assert [await compensate(db, a, order), await compensate(db, b, order)] == [2, 1]
    assert (await stock(shop, a), await stock(shop, b)) == (5, 1)
    assert await rows(db, order) == {(a, REDUCE): 2, (b, REDUCE): 1, (a, RESTORE): 2, (b, RESTORE): 1}


@pytest.mark.all_backends
async def test_the_balance_ledger_keeps_money_and_its_barrier_to_the_cent(shop):
    w = await world(shop, money="100.00", coupon=None)
    db, paid, cancelled = shop.runtime.dbs["user"], new_id(), new_id()

    async def money_rows(order_id):
        return {r["money_log_type"]: r["use_money"] for r in await db.fetchall(MONEY_ROWS, order_id=order_id)}

    async def balance():
        return (await shop.users.find_user(w.user_id)).user_money

    await shop.users.change_money(ChangeMoney(w.user_id, paid, D("30.01"), MoneyLogType.PAID))
    await shop.users.change_money(ChangeMoney(w.user_id, paid, D("30.01"), MoneyLogType.PAID))
    assert (await balance(), await money_rows(paid)) == (D("69.99"), {MoneyLogType.PAID: D("30.01")})
    for _ in range(2):
        await shop.users.change_money(ChangeMoney(w.user_id, paid, D("1.00"), MoneyLogType.REFUND))
    assert await balance() == D("100.00")
    assert await money_rows(paid) == {MoneyLogType.PAID: D("30.01"), MoneyLogType.REFUND: D("30.01")}

    await shop.users.change_money(ChangeMoney(w.user_id, cancelled, D("1.00"), MoneyLogType.REFUND))
    with pytest.raises(ShopError) as e:
        await shop.users.change_money(ChangeMoney(w.user_id, cancelled, D("5.00"), MoneyLogType.PAID))
    assert e.value.code == ShopCode.SHOP_ORDER_STATUS_INVALID
    assert await balance() == D("100.00")
    assert await money_rows(cancelled) == {MoneyLogType.PAID: D("0.00"), MoneyLogType.REFUND: D("0.00")}


PAIRS = 24


async def open_all(db, n):
    """Open the pool's n connections before the race: opening one takes longer than the race."""
    everyone = asyncio.Barrier(n)

    async def hold():
        async with db.unit_of_work(readonly=True):
            await everyone.wait()

    await asyncio.gather(*(hold() for _ in range(n)))


@pytest.mark.parametrize("backend", ["postgresql", "mysql"], indirect=True)
async def test_a_step_racing_its_compensation_never_loses_stock_nor_takes_for_a_cancelled_order(shop):
    """Each order's step and compensation start together on connections of their own; the step
    holds its ledger row uncommitted a moment, so a compensation arriving then must wait on the key."""
    g, loop = await goods(shop, 1000), asyncio.get_running_loop()
    db = type(shop.runtime.dbs["goods"])(shop.runtime.dbs["goods"].url, pool_size=2 * PAIRS)
    await db.connect()
    await open_all(db, 2 * PAIRS)
    spans: dict[tuple[str, int], tuple[float, float]] = {}
    written: dict[int, float] = {}
    orders = {new_id(): random.randint(1, 3) for _ in range(PAIRS)}
    row_written = {o: asyncio.Event() for o in orders}
    undone = {o: asyncio.Event() for o in orders}

    async def timed(name, order_id, work, jitter=0.02):
        await asyncio.sleep(random.uniform(0, jitter))  # each starts at its own moment, in either order
        start = loop.time()
        try:
            return await work
        except ShopError as e:
            return e
        finally:
            spans[name, order_id] = (start, loop.time())

    async def slow_step(order_id, n):
        async with db.unit_of_work() as uow:
            async def change():
                written[order_id] = loop.time()
                row_written[order_id].set()
                await asyncio.sleep(random.uniform(0.005, 0.02))  # the ledger row is written, not committed
                return await goods_repo.take(uow, g, n)

            taken = await STOCK.take(uow, g, order_id, n, change, goods_repo.REFUSAL)
            await uow.commit()
            return taken

    async def step_of(k, o, n):
        if k % 4 == 1:  # after its compensation, for sure: on a busy machine (CI's parallel workers)
            await undone[o].wait()  # the random moments alone once never had a compensation first
        return await timed("step", o, slow_step(o, n))

    async def undo(k, o):
        try:
            if k % 2:  # at its own moment: before the step, or after it, or in between
                return await timed("undo", o, compensate(db, g, o))
            # While the step's row is uncommitted, for sure: the random moments alone once never
            # met that window either.
            await row_written[o].wait()
            return await timed("undo", o, compensate(db, g, o), jitter=0)
        finally:
            undone[o].set()

    try:
        results = await asyncio.gather(*(step_of(k, o, n) for k, (o, n) in enumerate(orders.items())),
                                       *(undo(k, o) for k, o in enumerate(orders)))
    finally:
        await db.close()

    applied, refused, waited = 0, 0, 0
    for (o, n), took, gave in zip(orders.items(), results[:PAIRS], results[PAIRS:], strict=True):
        ledger = await rows(shop.runtime.dbs["goods"], o)
        if took == Taken(n, repeated=False):
            assert (gave, ledger) == (n, {(g, REDUCE): n, (g, RESTORE): n}), o
            applied += 1
            # It started after the step's row was written and before that was committed: its own
            # insert had to wait on the key, then find the step and give back what it took.
            waited += written[o] < spans["undo", o][0] < spans["step", o][1]
        else:
            assert isinstance(took, ShopError) and took.code == ShopCode.SHOP_ORDER_STATUS_INVALID, took
            assert (gave, ledger) == (0, {(g, REDUCE): 0, (g, RESTORE): 0}), o
            refused += 1
    assert await stock(shop, g) == 1000
    async with shop.runtime.dbs["goods"].unit_of_work() as uow:
        facts = await STOCK.facts(uow)
    assert facts.ledger[g] == 1000 and all(facts.held(o) == {} for o in orders)
    assert applied and refused, (applied, refused)  # both interleavings happened
    assert waited, "no compensation arrived while its step's row was uncommitted: nothing raced"


# A step in one statement (Ledger.take_at_once), where the database writes at once (PostgreSQL).

PRICE = D("10.00")  # goods()'s


async def at_once(db, goods_id, order_id, n, price=PRICE):
    return await STOCK.take_at_once(db, goods_repo.TAKE_AT_ONCE, goods_id, order_id, n,
                                    goods_id=goods_id, n=n, price=price)


@pytest.mark.all_backends
async def test_a_step_at_once_is_taken_in_one_statement_on_postgresql_only(shop):
    db, g, order = shop.runtime.dbs["goods"], await goods(shop, 10), new_id()
    row = await at_once(db, g, order, 3)
    if shop.runtime.dbs["goods"].dialect != "postgresql":  # not at once: nothing written, the caller's take decides
        assert (row, await stock(shop, g), await rows(db, order)) == (None, 10, {})
        return
    assert row["goods_id"] == g
    assert (await stock(shop, g), await rows(db, order)) == (7, {(g, REDUCE): 3})
    assert await compensate(db, g, order) == 3
    assert (await stock(shop, g), await rows(db, order)) == (10, {(g, REDUCE): 3, (g, RESTORE): 3})


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_a_step_at_once_that_is_refused_repeated_or_late_writes_nothing(shop):
    """Each leaves the database as it was and answers None; the step's transaction (take) then tells why."""
    db, g = shop.runtime.dbs["goods"], await goods(shop, 10)
    too_many, wrong_price, repeated, late = new_id(), new_id(), new_id(), new_id()

    assert await at_once(db, g, too_many, 11) is None
    assert await at_once(db, g, wrong_price, 1, price=D("9.99")) is None
    assert await at_once(db, new_id(), new_id(), 1) is None  # no such goods
    assert (await stock(shop, g), await rows(db, too_many), await rows(db, wrong_price)) == (10, {}, {})

    assert await at_once(db, g, repeated, 2) is not None
    assert await at_once(db, g, repeated, 2) is None  # its update undone with the broken key
    assert await at_once(db, g, repeated, 5) is None
    assert (await stock(shop, g), await rows(db, repeated)) == (8, {(g, REDUCE): 2})
    assert await step(db, g, repeated, 2) == Taken(2, repeated=True)

    assert await compensate(db, g, late) == 0  # the barrier first
    assert await at_once(db, g, late, 3) is None
    assert (await stock(shop, g), await rows(db, late)) == (8, {(g, REDUCE): 0, (g, RESTORE): 0})
    with pytest.raises(ShopError) as e:
        await step(db, g, late, 3)
    assert e.value.code == ShopCode.SHOP_ORDER_STATUS_INVALID


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_a_step_at_once_racing_its_compensation_waits_on_the_key_and_never_hangs(shop):
    """Each order's compensation holds its rows uncommitted a moment; its step, in one statement,
    starts while they are (every other order, for sure), or at once while the compensation starts
    at a moment of its own. Either the step was
    taken and the compensation gave it back, or the step wrote nothing and its transaction is
    refused as late: stock whole, no order holding any."""
    g, loop = await goods(shop, 1000), asyncio.get_running_loop()
    db = type(shop.runtime.dbs["goods"])(shop.runtime.dbs["goods"].url, pool_size=2 * PAIRS)
    await db.connect()
    await open_all(db, 2 * PAIRS)
    orders = {new_id(): random.randint(1, 3) for _ in range(PAIRS)}
    holding = {o: asyncio.Event() for o in orders}
    held: dict[int, tuple[float, float]] = {}  # order -> when its compensation's rows were written, committed
    spans: dict[int, tuple[float, float]] = {}

    async def slow_compensation(k, o):
        if k % 2:  # mostly after its step, now and then before it or while it runs
            await asyncio.sleep(random.uniform(0, 0.03))
        async with db.unit_of_work() as uow:
            given = await STOCK.give_back(uow, g, o, lambda n: goods_repo.give_back(uow, g, n))
            written = loop.time()
            holding[o].set()
            await asyncio.sleep(random.uniform(0.005, 0.02))
            await uow.commit()
        held[o] = (written, loop.time())
        return given

    async def step_at_once(k, o, n):
        if not k % 2:
            await holding[o].wait()
        start = loop.time()
        row = await at_once(db, g, o, n)
        spans[o] = (start, loop.time())
        return row

    try:
        results = await asyncio.gather(*(step_at_once(k, o, n) for k, (o, n) in enumerate(orders.items())),
                                       *(slow_compensation(k, o) for k, o in enumerate(orders)))
    finally:
        await db.close()

    took, late, waited = 0, 0, 0
    for (o, n), row, gave in zip(orders.items(), results[:PAIRS], results[PAIRS:], strict=True):
        ledger = await rows(shop.runtime.dbs["goods"], o)
        if row is not None:
            assert (gave, ledger) == (n, {(g, REDUCE): n, (g, RESTORE): n}), o
            took += 1
        else:
            assert (gave, ledger) == (0, {(g, REDUCE): 0, (g, RESTORE): 0}), o
            with pytest.raises(ShopError) as e:
                await step(shop.runtime.dbs["goods"], g, o, n)
            assert e.value.code == ShopCode.SHOP_ORDER_STATUS_INVALID
            late += 1
            # Began while the compensation's rows were uncommitted: it waited on the key, then broke it.
            waited += held[o][0] < spans[o][0] < held[o][1]
    assert await stock(shop, g) == 1000
    assert took and late, (took, late)  # both interleavings happened
    assert waited, "no step ran while its compensation's rows were uncommitted: nothing raced"


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_steps_asked_for_at_once_share_a_statement_and_are_each_taken_or_not_alone(shop):
    """Database.write_at_once: the steps asked for while one is written go together, the first on
    each goods in one statement, a second on a goods beside it; each is taken, or not (refused,
    repeated), as alone."""
    db = shop.runtime.dbs["goods"]
    g = [await goods(shop, 10) for _ in range(5)]
    repeated = new_id()
    assert await at_once(db, g[0], repeated, 1) is not None
    o = [new_id() for _ in range(6)]
    asks = [
        (g[4], o[5], 1, PRICE),
        (g[0], o[0], 2, PRICE),
        (g[1], o[1], 3, PRICE),
        (g[2], o[2], 11, PRICE),  # more than there is
        (g[3], o[3], 1, D("9.99")),  # not its price
        (g[0], repeated, 1, PRICE),  # taken before: left out
        (g[1], o[4], 4, PRICE),  # a second step on g[1]: in a statement of its own
    ]
    batch = db._at_once[goods_repo.TAKE_AT_ONCE]
    before = batch.batches
    results = await asyncio.gather(*(at_once(db, *ask) for ask in asks))
    assert batch.batches - before == 1  # one write: a statement for the first on each goods, and two beside it
    assert [r is not None for r in results] == [True, True, True, False, False, False, True]
    assert [await stock(shop, x) for x in g] == [7, 3, 10, 10, 9]
    assert [await rows(db, order) for order in o] == [
        {(g[0], REDUCE): 2}, {(g[1], REDUCE): 3}, {}, {}, {(g[1], REDUCE): 4}, {(g[4], REDUCE): 1}]
    assert await rows(db, repeated) == {(g[0], REDUCE): 1}
    # The slow way tells each why: the repeat finds its first step, the refusals are refused.
    assert await step(db, g[0], repeated, 1) == Taken(1, repeated=True)
    assert await step(db, g[2], o[2], 11) is None
