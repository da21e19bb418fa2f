"""The audit's scope (what a service is asked about), its indexed reads, its wire form, and the
per-order rules a scope's facts are checked with."""
import sqlite3
from decimal import Decimal as D
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from google.protobuf.message_factory import GetMessageClass

from shop.admin.audit import check_payments, check_scores, findings
from shop.admin.auditor import id_time
from shop.common.ids import first_id_at
from shop.infra.db import EVERYTHING, AuditScope, ScopedRows
from shop.infra.db.base import Query
from shop.infra.db.scope import BATCH, IN_PASSING, NO_LIMIT
from shop.infra.db.sqlite import SqliteDatabase, SqliteReader, SqliteUnitOfWork
from shop.infra.ledger import LedgerFacts
from shop.infra.rpc.wire import Call
from shop.rpc.v1 import facts_pb2
from shop.services.coupon.contracts import CouponFacts
from shop.services.goods.contracts import GoodsFacts
from shop.services.order.contracts import OrderService
from shop.services.user.contracts import UserFacts

t = sa.Table("rows", sa.MetaData(), sa.Column("order_id", sa.BigInteger, primary_key=True),
             sa.Column("n", sa.Integer))


def test_a_scope_is_a_range_and_some_ids():
    assert EVERYTHING.whole and not AuditScope(since_id=5).whole
    assert AuditScope().bounds == (1, NO_LIMIT)  # order 0 is what an operator put in
    assert AuditScope(since_id=5, below_id=9).bounds == (5, 9)
    only = AuditScope.of([3, 1, 3])
    assert only.order_ids == (1, 3) and only.bounds[0] >= only.bounds[1]  # an empty range


async def test_a_few_orders_by_id_are_read_inline_a_range_on_the_reading_thread(tmp_path):
    """AuditScope.unit_of_work: on SQLite, a few orders by id are read in passing on the event loop
    (the background checker's, an answer's open orders); a range, a long list, messages sent or
    entities on the reading connection's thread; everything in one transaction."""
    file_db = SqliteDatabase(str(tmp_path / "a.db"))
    try:
        inline = [AuditScope.of(range(1, IN_PASSING + 1)), AuditScope.of([7]), AuditScope.of([])]
        threaded = [AuditScope.of(range(1, IN_PASSING + 2)), AuditScope(since_id=5, below_id=9),
                    AuditScope(since_id=5, limit=100), AuditScope(since_id=1, below_id=1, sent_since_ms=1),
                    AuditScope(since_id=1, below_id=9, entities=True)]
        for scope in inline:
            uow = scope.unit_of_work(file_db)
            assert isinstance(uow, SqliteUnitOfWork) and uow._readonly, scope
        for scope in threaded:
            assert isinstance(scope.unit_of_work(file_db), SqliteReader), scope
        whole = EVERYTHING.unit_of_work(file_db)
        assert isinstance(whole, SqliteUnitOfWork) and not whole._readonly
        async with AuditScope.of([7]).unit_of_work(file_db) as uow:  # and it reads
            assert [tuple(r) for r in await uow.fetchall(Query(sa.select(sa.literal(1).label("one"))))] == [(1,)]
    finally:
        await file_db.close()


@pytest.fixture
async def db():
    d = SqliteDatabase(":memory:")
    d.conn.row_factory = sqlite3.Row
    d.conn.execute("CREATE TABLE rows (order_id INTEGER PRIMARY KEY, n INTEGER)")
    d.conn.executemany("INSERT INTO rows VALUES (?, ?)", [(i, i * 10) for i in range(1, 1201)])
    yield d
    await d.close()


async def test_scoped_rows_read_a_range_then_the_ids_outside_it_in_batches(db):
    rows = ScopedRows(sa.select(t), t.c.order_id)
    async with db.unit_of_work(readonly=True) as uow:
        got = await rows.fetch(uow, AuditScope(since_id=10, below_id=20, order_ids=(12, 5, 700, 5000)))
        assert sorted(r["order_id"] for r in got) == [5, *range(10, 20), 700]  # 12 once; 5000 is no row
        many = await rows.fetch(uow, AuditScope.of(range(1, BATCH + 100)))
        assert len(many) == BATCH + 99
        first, through = await rows.first(uow, AuditScope(since_id=100, limit=7))
        assert [r["order_id"] for r in first] == list(range(100, 107)) and through == 107
        rest, through = await rows.first(uow, AuditScope(since_id=1195, limit=7))
        assert [r["order_id"] for r in rest] == list(range(1195, 1201)) and through == 0  # the end: no bound


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql", "mysql"])
def test_scoped_rows_compile_once_per_dialect(dialect):
    rows = ScopedRows(sa.select(t), t.c.order_id)
    for q in (rows._range, rows._first, rows._ids):
        assert q.compiled(dialect) is q.compiled(dialect)


def test_a_scope_crosses_the_wire_and_none_means_everything():
    request = GetMessageClass(facts_pb2.DESCRIPTOR.message_types_by_name["AuditFactsRequest"])
    call = Call(OrderService.audit_facts, request, facts_pb2.AuditFactsReply)
    scope = AuditScope(since_id=2**62, below_id=2**62 + 9, order_ids=(2**62 + 20, 7), limit=500, strict=True,
                       sent_since_ms=1_700_000_000_000, entities=True)
    assert call.arguments(request.FromString(call.request((scope,), {}).SerializeToString())) == (scope,)
    assert call.arguments(call.request((), {})) == (EVERYTHING,)


def _order(oid, status=1, pay_status=2, pay_amount="48.90", user=1):
    return SimpleNamespace(order_id=oid, order_status=status, pay_status=pay_status, pay_amount=D(pay_amount),
                           user_id=user, items={10: 1}, money_paid=D(0), coupon_id=None)


def _payment(oid):
    return SimpleNamespace(pay_id=oid + 100, is_paid=2, is_refunded=0)


def _users(points=None, scores=None):
    return UserFacts({}, scores or {}, LedgerFacts(), set(), points=points)


def test_a_scope_checks_each_paid_orders_points_against_what_its_messages_brought():
    orders, payments, logged = {7: _order(7)}, {7: _payment(7)}, {7: 1}
    assert check_payments(orders, _users({7: 48}), payments, logged) == []
    [f] = check_payments(orders, _users({}), payments, logged)
    assert f.order_id == 7 and "earns 48 points, its messages gave 0" in f.text
    refunded = {7: _order(7, status=4)}
    assert check_payments(refunded, _users({7: 0}), {7: SimpleNamespace(pay_id=1, is_paid=2, is_refunded=1)},
                          logged) == []
    assert check_payments(orders, _users(None), payments, logged) == []  # all facts: per user, not per order


def test_points_per_user_and_findings_name_their_order():
    assert check_scores({1: 48, 2: 0}, {1: 48}) == []
    assert [f.text for f in check_scores({1: 40}, {1: 48})] == ["user 1: 40 points, its paid orders earn 48"]
    g = GoodsFacts({}, LedgerFacts(taken={7: {10: D(2)}}), set())
    c = CouponFacts({}, LedgerFacts(), set())
    [f] = findings({7: _order(7, pay_status=1)}, g, _users(), c, pending=1, dead=[])
    assert f.order_id == 7 and "goods took 2" in f.text
    dead = [{"id": "5", "topic": "order", "tag": "cancel", "key": "7", "group": "goods"}]
    assert [f.order_id for f in findings({}, g, _users(), c, pending=0, dead=dead)] == [7, 7]


def test_an_ids_time_is_when_it_was_minted():
    assert id_time(first_id_at(1_700_000_000_000)) == "2023-11-14T22:13:20.000Z"
