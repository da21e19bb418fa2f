"""The ports every service's code runs on: a compiled statement (`Query`), one transaction
(`UnitOfWork`) and a database (`Database`).

SQLAlchemy builds the statements once per dialect; the hot path runs them on the driver.
Measured here for one order's SQL, SQLAlchemy's async engine costs three to four times the
driver's own speed, so it is kept for schema, migrations and compiling statements, and a
`UnitOfWork` executes the compiled text on sqlite3, asyncpg or asyncmy directly.

The unit of work follows cosmicpython: `async with db.unit_of_work() as uow: ...; await uow.commit()`;
leaving the block without `commit()` rolls back. Nothing else commits.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import operator
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.dialects.mysql import asyncmy as mysql_asyncmy
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.postgresql import asyncpg as pg_asyncpg
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.compiler import SQLCompiler

from shop.common.codes import ShopCode
from shop.common.errors import ShopError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Row = Mapping[str, Any]
D = TypeVar("D", bound="DataclassInstance")

_DIALECTS: dict[str, sa.engine.Dialect] = {
    "sqlite": sqlite_dialect.dialect(paramstyle="qmark"),
    "postgresql": pg_asyncpg.dialect(),
    "mysql": mysql_asyncmy.dialect(),
}


class Query:
    """A statement compiled once per dialect into driver SQL and the order of its parameters."""

    __slots__ = ("_build", "_compiled")

    def __init__(self, build: sa.sql.ClauseElement | Callable[[str], sa.sql.ClauseElement]) -> None:
        self._build = build
        self._compiled: dict[str, tuple[str, tuple[tuple[str, bool, Any], ...]]] = {}

    def compiled(self, dialect: str) -> tuple[str, tuple[tuple[str, bool, Any], ...]]:
        try:
            return self._compiled[dialect]
        except KeyError:
            pass
        c = self.statement(dialect).compile(dialect=_DIALECTS[dialect])
        assert isinstance(c, SQLCompiler)  # a statement, not DDL
        names = c.positiontup or []
        # Literal values in a statement (`.values(is_used=1)`) become bound parameters too:
        # keep their values as defaults, and insist on the ones the caller must give.
        params = tuple(
            (n, c.binds[n].required, c.binds[n].value) for n in names
        )
        self._compiled[dialect] = (str(c), params)
        return self._compiled[dialect]

    def statement(self, dialect: str) -> sa.sql.ClauseElement:
        return self._build(dialect) if callable(self._build) else self._build

    def args(self, dialect: str, params: Mapping[str, Any]) -> tuple[str, tuple[Any, ...]]:
        sql, spec = self.compiled(dialect)
        out = []
        for name, required, default in spec:
            if name in params:
                out.append(params[name])
            elif required:
                raise KeyError(f"missing parameter {name!r} for {sql}")
            else:
                out.append(default)
        return sql, tuple(out)


@dataclasses.dataclass(frozen=True, eq=False)
class AtOnce:
    """A step written in one statement (infra/ledger.py at_once): `one` takes one step; `many`
    several, each parameter of `params` given as an array of the steps' values and each taken
    step's row answered with its place in them (`at_once_n`)."""
    one: Query
    many: Query
    params: tuple[str, ...]


def insert_ignore(table: sa.Table, **values: Any) -> Query:
    """INSERT that does nothing if a unique key is taken; rowcount says which happened.

    This is how every idempotency key and barrier row is written: no statement may fail inside
    a transaction on purpose, because PostgreSQL aborts the whole transaction on an error.
    """

    def build(dialect: str) -> sa.sql.ClauseElement:
        if dialect == "postgresql":
            return pg_insert(table).values(**values).on_conflict_do_nothing()
        if dialect == "sqlite":
            return sqlite_insert(table).values(**values).on_conflict_do_nothing()
        return mysql_insert(table).values(**values).prefix_with("IGNORE")

    return Query(build)


def upsert(table: sa.Table, key: sa.Column[Any], values: dict[str, Any],
           update: list[tuple[str, Any]]) -> Query:
    """INSERT `values`, or, where `key` is taken, UPDATE that row with `update`: one statement, so the
    row's lock is taken once (an INSERT IGNORE then UPDATE deadlocks on MySQL when several arrive
    together for a new key). `update` is ordered: MySQL applies its assignments left to right, each
    seeing the ones before it; PostgreSQL and SQLite read the old row in all of them."""

    def build(dialect: str) -> sa.sql.ClauseElement:
        if dialect == "postgresql":
            return pg_insert(table).values(values).on_conflict_do_update(index_elements=[key], set_=dict(update))
        if dialect == "sqlite":
            return sqlite_insert(table).values(values).on_conflict_do_update(index_elements=[key], set_=dict(update))
        return mysql_insert(table).values(values).on_duplicate_key_update(update)

    return Query(build)


def bind(*names: str) -> dict[str, sa.BindParameter]:
    return {n: sa.bindparam(n) for n in names}


class UnitOfWork:
    """One local transaction on one service's database."""

    dialect: str

    async def execute(self, q: Query, **params: Any) -> int:  # rows affected
        raise NotImplementedError

    async def execute_many(self, q: Query, rows: Sequence[Mapping[str, Any]]) -> None:
        """`q` once per row of parameters, in one go where the driver can (asyncpg pipelines them:
        one round trip; asyncmy makes an INSERT one statement of many rows). No count: a statement
        run so is one whose every row must take (inserts, writes to rows the transaction holds)."""
        raise NotImplementedError

    async def fetchone(self, q: Query, **params: Any) -> Row | None:
        raise NotImplementedError

    async def fetchall(self, q: Query, **params: Any) -> Sequence[Row]:
        raise NotImplementedError

    async def commit(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> UnitOfWork:
        raise NotImplementedError

    async def __aexit__(self, *exc: object) -> None:
        raise NotImplementedError


async def roll_back(rollback: Awaitable[None], leaving_on: object) -> None:
    """Roll back what a unit of work left open. If it is leaving on an error or a cancel, that one
    is what the caller gets: a rollback that fails as well (on the connection that error broke;
    asyncmy closes one cancelled mid-read, and its rollback then raises InterfaceError 'Cancelled
    during execution') must not replace it. A cancel replaced so is lost: the relay's loop took the
    driver's error for a database away, went on, and the shop's stop waited for it for ever."""
    try:
        await rollback
    except Exception:
        if leaving_on is None:
            raise


class Database:
    dialect: str
    url: str

    def unit_of_work(self, readonly: bool = False) -> UnitOfWork:
        """readonly: for reads that need no transaction of their own (one statement is atomic)."""
        raise NotImplementedError

    def reader(self) -> UnitOfWork:
        """For long reads off the serving path (the audit's): a server database's are awaited I/O
        anyway; SQLite's get a connection and a thread of their own (sqlite.py)."""
        return self.unit_of_work(readonly=True)

    async def fetchone(self, q: Query, **params: Any) -> Row | None:
        async with self.unit_of_work(readonly=True) as uow:
            return await uow.fetchone(q, **params)

    async def fetchall(self, q: Query, **params: Any) -> Sequence[Row]:
        async with self.unit_of_work(readonly=True) as uow:
            return await uow.fetchall(q, **params)

    # Whether write_at_once() runs here: a statement that both changes rows and writes others from
    # them (a data-modifying WITH) is PostgreSQL's; SQLite's and MariaDB's writes stay transactions.
    writes_at_once = False

    async def write_at_once(self, step: AtOnce, **params: Any) -> Row | None:
        """One step (infra/ledger.py at_once) in a statement of its own, autocommitted: the row it
        returns, or None, and nothing written, if it changed nothing, broke a unique key or was
        chosen as a deadlock's victim: the caller then does the work the slow way, in a unit of
        work, and learns why. The steps asked for while one is being written go together in one
        statement (`step.many`)."""
        raise NotImplementedError

    async def connect(self) -> None:
        pass

    async def close(self) -> None:
        pass


class PooledDatabase(Database):
    """A server database: a pool of the driver's connections, opened by connect()."""

    # How long close() waits for the connections in use to come back before it cuts them.
    CLOSE_GRACE_S = 5.0

    def __init__(self, url: str, pool_size: int = 10) -> None:
        self.url = url
        self.pool_size = pool_size
        self.pool: Any = None

    async def close(self) -> None:
        """Close the pool: the connections in use get CLOSE_GRACE_S to come back, then are cut.
        Both drivers' graceful close waits for every connection without a bound, and one that a
        task cancelled at shutdown never gave back held a shop's stop forever (a MariaDB run hung
        until the test's 300 s timeout)."""
        pool = self.pool
        if pool is None:
            return
        try:
            await asyncio.wait_for(self.close_gracefully(pool), self.CLOSE_GRACE_S)
        except TimeoutError:
            logging.getLogger("shop.db").warning(
                "%s: connections still in use %ss after the close began; cutting them", self.dialect,
                self.CLOSE_GRACE_S)
            pool.terminate()
        finally:
            self.pool = None

    async def close_gracefully(self, pool: Any) -> None:
        raise NotImplementedError


def as_record(cls: type[D], row: Row) -> D:
    """A contract's dataclass from a row that has its fields (and maybe more: a password hash)."""
    fields = _FIELDS.get(cls)
    if fields is None:
        names = [f.name for f in dataclasses.fields(cls)]
        # One C call per row (an audit's recount makes millions): the fields, in their order.
        fields = _FIELDS[cls] = operator.itemgetter(*names) if len(names) > 1 else lambda r: (r[names[0]],)
    return cls(*fields(row))


_FIELDS: dict[type[Any], Callable[[Row], tuple[Any, ...]]] = {}  # by dataclass, worked out once


async def find_one(db: Database, q: Query, missing: ShopCode, **params: Any) -> Row:
    """The row the query finds, or the ShopError that says it is missing."""
    row = await db.fetchone(q, **params)
    if row is None:
        raise ShopError(missing)
    return row
