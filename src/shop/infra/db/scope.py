"""What the audit asks a service about: a scope of orders (or of entities), read with indexed
range and key lookups, never a scan of everything.

One scope crosses every service's `audit_facts` (in process, or over gRPC as AuditFactsRequest):
orders with since_id <= order_id < below_id (below_id 0: no upper bound) plus an explicit list of
order ids. The whole scope (AuditScope()) is every order and every entity: the facts a full audit
reads in one go, kept for tests and small shops.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from shop.infra.db.base import Database, Query, Row, UnitOfWork

NO_LIMIT = 2**63 - 1  # below every id's bound: an unbounded range


@dataclass(frozen=True, slots=True)
class AuditScope:
    since_id: int = 0
    below_id: int = 0  # 0: no upper bound
    order_ids: tuple[int, ...] = ()  # and these orders, wherever they are
    limit: int = 0  # the order service: at most this many orders of the range, the lowest ids (0: all)
    sent_since_ms: int = 0  # order and pay services: the orders of the messages sent since then (0: none)
    # The range (and limit) are over the service's entities (goods, users; the order service: its
    # orders' users), and the facts are per-entity totals computed in SQL, not orders.
    entities: bool = False
    # Read as if nothing were in flight: the cancels a service handled are left out (they only tell
    # work in flight from a lost message), which saves a lookup per order on a walk through them all.
    strict: bool = False

    @property
    def whole(self) -> bool:
        return self == EVERYTHING

    @property
    def bounds(self) -> tuple[int, int]:
        """The range as [lo, hi). Order 0 holds what an operator put in, never an order's effect."""
        return max(self.since_id, 1), self.below_id or NO_LIMIT

    @staticmethod
    def of(order_ids: Iterable[int]) -> AuditScope:
        """Only these orders: an empty range."""
        return AuditScope(since_id=1, below_id=1, order_ids=tuple(sorted(set(order_ids))))

    def unit_of_work(self, db: Database) -> UnitOfWork:
        """How a service reads this scope: everything in one transaction (a full audit, offline); a
        few orders by id (at most IN_PASSING: the audit's background checker, an answer's open
        orders) inline, a handful of indexed lookups; a range, or a list of messages sent, on
        db.reader() (SQLite's: a connection and a thread of their own, so a long read never stops the
        event loop). Why not every read on the thread: the thread's turns at the GIL cost the loop
        more than such lookups do; at 500 payment notifications a second, the checker's reads there
        were a third of the answer's p99 (issue 13)."""
        if self.whole:
            return db.unit_of_work()
        if self.since_id >= self.below_id > 0 and len(self.order_ids) <= IN_PASSING and not self.sent_since_ms \
                and not self.entities:
            return db.unit_of_work(readonly=True)
        return db.reader()


EVERYTHING = AuditScope()
IN_PASSING = 100  # orders by id read inline (AuditScope.unit_of_work)
BATCH = 500  # ids per lookup: far below every engine's limit on bound parameters


class ScopedRows:
    """A select's rows for the orders of a scope, through an index on an order id column: one range
    query, then the scope's other ids in fixed batches (padded with -1, which is no order's id, so
    the statement is compiled once). `key` turns an id into the column's value (a message key is text)."""

    def __init__(self, select: sa.Select[Any], column: sa.ColumnElement[Any],
                 key: Callable[[int], Any] = int) -> None:
        self._range = Query(select.where(column >= sa.bindparam("lo"), column < sa.bindparam("hi")))
        self._first = Query(select.where(column >= sa.bindparam("lo"), column < sa.bindparam("hi"))
                            .order_by(column).limit(sa.bindparam("n", type_=sa.BigInteger)))
        self._column = str(column.key)
        self._ids = Query(select.where(column.in_([sa.bindparam(f"k{i}") for i in range(BATCH)])))
        self._key = key

    async def fetch(self, uow: UnitOfWork, scope: AuditScope) -> list[Row]:
        lo, hi = scope.bounds
        rows: list[Row] = list(await uow.fetchall(self._range, lo=lo, hi=hi)) if lo < hi else []
        return rows + await self.by_ids(uow, [i for i in scope.order_ids if not lo <= i < hi])

    async def first(self, uow: UnitOfWork, scope: AuditScope) -> tuple[list[Row], int]:
        """The range's rows with the lowest ids, at most scope.limit of them, and the bound they
        cover: the range is [since_id, through) (through 0: no upper bound, as below_id)."""
        lo, hi = scope.bounds
        n = scope.limit or NO_LIMIT
        rows = list(await uow.fetchall(self._first, lo=lo, hi=hi, n=n)) if lo < hi else []
        if len(rows) == n:
            return rows, rows[-1][self._column] + 1
        return rows, scope.below_id

    async def by_ids(self, uow: UnitOfWork, ids: Sequence[int]) -> list[Row]:
        rows: list[Row] = []
        pad = self._key(-1)
        for start in range(0, len(ids), BATCH):
            batch = [self._key(i) for i in ids[start:start + BATCH]]
            batch += [pad] * (BATCH - len(batch))
            rows += await uow.fetchall(self._ids, **{f"k{i}": k for i, k in enumerate(batch)})
        return rows
