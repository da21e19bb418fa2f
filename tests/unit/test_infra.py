"""Statement compilation, fault arming, back-off, the ledger's facts, and the audit's rules on plain facts."""
import asyncio
import logging
from dataclasses import replace
from decimal import Decimal as D
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from pydantic import TypeAdapter

from shop.admin.audit import check
from shop.common.errors import ServiceUnavailable
from shop.infra.db import Query, insert_ignore
from shop.infra.faults import Faults
from shop.infra.ledger import LedgerFacts
from shop.infra.messaging import backoff_ms
from shop.infra.messaging.relay import poll_forever
from shop.services.coupon.contracts import CouponFacts, CouponState
from shop.services.goods.contracts import GoodsFacts
from shop.services.goods.repository import LEDGER as STOCK
from shop.services.user.contracts import UserFacts

t = sa.Table("t", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), sa.Column("n", sa.Integer))


@pytest.mark.parametrize("dialect,marker", [("sqlite", "?"), ("postgresql", "$1"), ("mysql", "%s")])
def test_a_query_compiles_once_per_dialect_with_its_parameters_in_order(dialect, marker):
    q = Query(
        sa.update(t).where(t.c.id == sa.bindparam("id"), t.c.n >= sa.bindparam("k")).values(n=t.c.n - sa.bindparam("k"))
    )
    sql, args = q.args(dialect, {"id": 5, "k": 2})
    assert marker in sql
    assert 5 in args and 2 in args
    assert q.compiled(dialect) is q.compiled(dialect)
    with pytest.raises(KeyError):
        q.args(dialect, {"id": 5})


def test_literal_values_in_a_statement_need_no_parameter():
    q = Query(sa.update(t).where(t.c.id == sa.bindparam("id")).values(n=None))
    assert q.args("sqlite", {"id": 1})[1] == (None, 1)


@pytest.mark.parametrize("dialect,text", [("sqlite", "ON CONFLICT DO NOTHING"),
                                          ("postgresql", "ON CONFLICT DO NOTHING"), ("mysql", "INSERT IGNORE")])
def test_insert_ignore_per_dialect(dialect, text):
    assert text in insert_ignore(t, id=sa.bindparam("id"), n=1).compiled(dialect)[0]


async def test_faults_fire_the_given_number_of_times():
    f = Faults(enabled=True)
    f.arm("p", "error", times=2)
    for _ in range(2):
        with pytest.raises(ServiceUnavailable):
            await f.hit("p")
    await f.hit("p")  # disarmed
    await f.hit("other")
    with pytest.raises(ValueError):
        f.arm("p", "explode")


def test_backoff_doubles_up_to_a_cap():
    assert [backoff_ms(a, 100, 1000) for a in range(1, 6)] == [100, 200, 400, 800, 1000]


def _order(oid, status, n=1, money="0.00", coupon=None):
    return SimpleNamespace(order_id=oid, user_id=1, items={10: n}, order_status=status, money_paid=D(money),
                           coupon_id=coupon)


def _facts(goods_taken=None, goods_returned=None, stock=9, money="90.00", money_taken=None, money_returned=None,
           coupons=None, coupon_taken=None, seen=()):
    """Taken and returned as the ledger gives them: order -> entity -> amount."""
    goods = GoodsFacts({10: stock}, LedgerFacts({10: D(stock)}, goods_taken or {}, goods_returned or {}), set(seen))
    users = UserFacts({1: D(money)}, {}, LedgerFacts({1: D(money)}, money_taken or {}, money_returned or {}), set(seen))
    cps = CouponFacts(coupons or {}, LedgerFacts({}, coupon_taken or {}, {}), set(seen))
    return goods, users, cps


async def test_a_loop_says_a_dependency_down_in_one_line_and_a_bug_with_its_traceback(caplog):
    # A broker restart is expected and must not read as a crash in the logs (tests/cluster.troubles()
    # picks out ERROR and Traceback lines); a bug still must.
    failures = [ConnectionRefusedError(111, "Connection refused"), KeyError("payId")]

    async def step() -> int:
        if failures:
            raise failures.pop(0)
        raise asyncio.CancelledError

    with caplog.at_level(logging.WARNING, "shop.messaging"), pytest.raises(asyncio.CancelledError):
        await poll_forever(step, asyncio.Event(), 0.001, "relay order")
    down, bug = caplog.records
    assert down.levelname == "WARNING" and down.exc_info is None and "unavailable" in down.getMessage()
    assert bug.levelname == "ERROR" and bug.exc_info is not None


async def test_the_relay_loop_stops_when_a_cancel_comes_back_as_another_error():
    """A cancel that a library turns into its own error (asyncmy's 'Cancelled during execution')
    still stops the loop; before, the loop logged a database away and went on for ever."""
    inside = asyncio.Event()
    calls = 0

    async def step() -> int:
        nonlocal calls
        calls += 1
        if calls > 1:  # the loop went on: end it here, so that the test fails rather than hangs
            raise asyncio.CancelledError
        inside.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            raise RuntimeError("Cancelled during execution") from None
        return 0

    task = asyncio.create_task(poll_forever(step, asyncio.Event(), 0.001, "relay order"))
    await inside.wait()
    task.cancel()
    await asyncio.wait({task}, timeout=2.0)
    assert task.cancelled() and calls == 1


def test_audit_accepts_a_confirmed_order_with_all_its_effects():
    g, u, c = _facts({7: {10: D(1)}}, money_taken={7: {1: D("10.00")}}, coupons={3: CouponState(1, 7)},
                     coupon_taken={7: {3: D(1)}})
    assert check({7: _order(7, 1, money="10.00", coupon=3)}, g, u, c, pending=0, dead=[]) == []


def test_audit_finds_a_confirmed_order_missing_its_stock():
    g, u, c = _facts(stock=10)
    assert check({7: _order(7, 1)}, g, u, c, pending=0, dead=[])


def test_audit_finds_a_ledger_that_disagrees_with_the_stock():
    g, u, c = _facts({7: {10: D(1)}})
    g = replace(g, ledger=replace(g.ledger, ledger={10: D(8)}))
    assert any("ledger" in v for v in check({7: _order(7, 1)}, g, u, c, pending=0, dead=[]))


def test_audit_tolerates_a_cancel_in_flight_but_not_a_lost_one():
    g, u, c = _facts({7: {10: D(1)}})
    orders = {7: _order(7, 2)}
    assert check(orders, g, u, c, pending=1, dead=[]) == []  # the cancel is still on its way
    assert check(orders, g, u, c, pending=0, dead=[])  # nothing in flight: it was lost
    g2, u2, c2 = _facts({7: {10: D(1)}}, seen=[7])
    assert check(orders, g2, u2, c2, pending=1, dead=[])  # handled, yet still held


def test_audit_finds_effects_of_an_unknown_order_and_dead_messages():
    g, u, c = _facts({99: {10: D(1)}})
    assert check({}, g, u, c, pending=0, dead=[])
    g, u, c = _facts(stock=10)
    dead = [{"id": "1", "topic": "order", "tag": "cancel", "key": "7", "group": "goods"}]
    assert check({}, g, u, c, pending=0, dead=dead)


def test_the_ledger_sums_what_each_order_took_and_gave_back_per_entity():
    rows = [
        {"goods_id": 10, "order_id": 0, "log_type": 0, "goods_number": 9},  # put in
        {"goods_id": 11, "order_id": 0, "log_type": 0, "goods_number": 5},
        {"goods_id": 10, "order_id": 7, "log_type": 1, "goods_number": 2},  # one order, two goods (a cart)
        {"goods_id": 11, "order_id": 7, "log_type": 1, "goods_number": 1},
        {"goods_id": 10, "order_id": 8, "log_type": 1, "goods_number": 3},  # taken, then given back
        {"goods_id": 10, "order_id": 8, "log_type": 2, "goods_number": 3},
        {"goods_id": 11, "order_id": 9, "log_type": 1, "goods_number": 0},  # the barrier of a null compensation
        {"goods_id": 11, "order_id": 9, "log_type": 2, "goods_number": 0},
    ]
    facts = STOCK.summary(rows)
    assert facts.ledger == {10: D(7), 11: D(4)}
    assert facts.taken == {7: {10: D(2), 11: D(1)}, 8: {10: D(3)}, 9: {11: D(0)}}
    assert facts.returned == {8: {10: D(3)}, 9: {11: D(0)}}
    assert all(isinstance(n, D) for n in facts.ledger.values())
    assert (facts.held(7), facts.held(8), facts.held(9), facts.held(99)) == ({10: 2, 11: 1}, {}, {}, {})


@pytest.mark.parametrize("facts", [
    GoodsFacts({10: 7}, LedgerFacts({10: D(7)}, {7: {10: D(2), 11: D(1)}}, {7: {11: D(1)}}), {7, 8}),
    UserFacts({1: D("9.50")}, {1: 3}, LedgerFacts({1: D("9.50")}, {7: {1: D("0.50")}}, {}), set()),
    CouponFacts({3: CouponState(1, 7), 4: CouponState(0, None)}, LedgerFacts({3: D(-1)}, {7: {3: D(1)}}, {}), {9}),
], ids=["goods", "user", "coupon"])
def test_a_services_facts_cross_json_and_come_back_equal(facts):
    adapter = TypeAdapter(type(facts))
    back = adapter.validate_json(adapter.dump_json(facts))
    assert back == facts
    assert all(isinstance(k, int) for k in back.ledger.taken)
