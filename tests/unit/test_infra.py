"""Statement compilation, fault arming, back-off, and the audit's rules on plain facts."""
from decimal import Decimal as D
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from shop.admin.audit import check
from shop.common.errors import ServiceUnavailable
from shop.infra.db import Query, insert_ignore
from shop.infra.faults import Faults
from shop.infra.messaging import backoff_ms

t = sa.Table("t", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), sa.Column("n", sa.Integer))


@pytest.mark.parametrize("dialect,marker", [("sqlite", "?"), ("postgresql", "$1"), ("mysql", "%s")])
def test_a_query_compiles_once_per_dialect_with_its_parameters_in_order(dialect, marker):
    q = Query(sa.update(t).where(t.c.id == sa.bindparam("id"), t.c.n >= sa.bindparam("k")).values(n=t.c.n - sa.bindparam("k")))
    sql, args = q.args(dialect, {"id": 5, "k": 2})
    assert marker in sql
    assert 5 in args and 2 in args
    assert q.compiled(dialect) is q.compiled(dialect)
    with pytest.raises(KeyError):
        q.args(dialect, {"id": 5})


def test_literal_values_in_a_statement_need_no_parameter():
    q = Query(sa.update(t).where(t.c.id == sa.bindparam("id")).values(n=None))
    assert q.args("sqlite", {"id": 1})[1] == (None, 1)


@pytest.mark.parametrize("dialect,text", [("sqlite", "ON CONFLICT DO NOTHING"), ("postgresql", "ON CONFLICT DO NOTHING"),
                                          ("mysql", "INSERT IGNORE")])
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
    return SimpleNamespace(order_id=oid, user_id=1, goods_id=10, order_status=status, goods_number=n,
                           money_paid=D(money), coupon_id=coupon)


def _facts(goods_taken=None, goods_returned=None, stock=9, money="90.00", money_taken=None, money_returned=None,
           coupons=None, coupon_taken=None, seen=()):
    goods = {"balances": {10: stock}, "ledger": {10: stock}, "taken": goods_taken or {}, "returned": goods_returned or {},
             "cancels_seen": set(seen)}
    users = {"balances": {1: D(money)}, "ledger": {1: D(money)}, "taken": money_taken or {},
             "returned": money_returned or {}, "cancels_seen": set(seen)}
    cps = {"coupons": coupons or {}, "taken": coupon_taken or {}, "returned": {}, "cancels_seen": set(seen)}
    return goods, users, cps


def test_audit_accepts_a_confirmed_order_with_all_its_effects():
    g, u, c = _facts({7: (10, 1)}, money_taken={7: (1, D("10.00"))}, coupons={3: (1, 7)}, coupon_taken={7: (3, 1)})
    assert check({7: _order(7, 1, money="10.00", coupon=3)}, g, u, c, pending=0, dead=[]) == []


def test_audit_finds_a_confirmed_order_missing_its_stock():
    g, u, c = _facts(stock=10)
    assert check({7: _order(7, 1)}, g, u, c, pending=0, dead=[])


def test_audit_finds_a_ledger_that_disagrees_with_the_stock():
    g, u, c = _facts({7: (10, 1)})
    g["ledger"][10] = 8
    assert any("ledger" in v for v in check({7: _order(7, 1)}, g, u, c, pending=0, dead=[]))


def test_audit_tolerates_a_cancel_in_flight_but_not_a_lost_one():
    g, u, c = _facts({7: (10, 1)})
    orders = {7: _order(7, 2)}
    assert check(orders, g, u, c, pending=1, dead=[]) == []  # the cancel is still on its way
    assert check(orders, g, u, c, pending=0, dead=[])  # nothing in flight: it was lost
    g2, u2, c2 = _facts({7: (10, 1)}, seen=[7])
    assert check(orders, g2, u2, c2, pending=1, dead=[])  # handled, yet still held


def test_audit_finds_effects_of_an_unknown_order_and_dead_messages():
    g, u, c = _facts({99: (10, 1)})
    assert check({}, g, u, c, pending=0, dead=[])
    g, u, c = _facts(stock=10)
    dead = [{"id": "1", "topic": "order", "tag": "cancel", "key": "7", "group": "goods"}]
    assert check({}, g, u, c, pending=0, dead=dead)
