"""Databases: SQLAlchemy builds the statements once per dialect; the hot path runs them on the driver.

Measured here for one order's SQL, SQLAlchemy's async engine costs three to four times the
driver's own speed, so it is kept for schema, migrations and compiling statements, and a
`UnitOfWork` executes the compiled text on sqlite3, asyncpg or asyncmy directly.

The unit of work follows cosmicpython: `async with db.unit_of_work() as uow: ...; await uow.commit()`;
leaving the block without `commit()` rolls back. Nothing else commits.
"""
from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.dialects.mysql import asyncmy as mysql_asyncmy
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.postgresql import asyncpg as pg_asyncpg
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url

Row = Mapping[str, Any]

_DIALECTS: dict[str, sa.engine.Dialect] = {
    "sqlite": sqlite_dialect.dialect(paramstyle="qmark"),
    "postgresql": pg_asyncpg.dialect(),
    "mysql": mysql_asyncmy.dialect(),
}


class Query:
    """A statement compiled once per dialect into driver SQL and the order of its parameters."""

    __slots__ = ("_build", "_compiled")

    def __init__(self, build: sa.sql.Executable | Callable[[str], sa.sql.Executable]) -> None:
        self._build = build
        self._compiled: dict[str, tuple[str, tuple[tuple[str, bool, Any], ...]]] = {}

    def compiled(self, dialect: str) -> tuple[str, tuple[tuple[str, bool, Any], ...]]:
        try:
            return self._compiled[dialect]
        except KeyError:
            pass
        stmt = self._build(dialect) if callable(self._build) else self._build
        c = stmt.compile(dialect=_DIALECTS[dialect])
        names = c.positiontup or []
        # Literal values in a statement (`.values(is_used=1)`) become bound parameters too:
        # keep their values as defaults, and insist on the ones the caller must give.
        params = tuple(
            (n, c.binds[n].required, c.binds[n].value) for n in names
        )
        self._compiled[dialect] = (str(c), params)
        return self._compiled[dialect]

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


def insert_ignore(table: sa.Table, **values: Any) -> Query:
    """INSERT that does nothing if a unique key is taken; rowcount says which happened.

    This is how every idempotency key and barrier row is written: no statement may fail inside
    a transaction on purpose, because PostgreSQL aborts the whole transaction on an error.
    """

    def build(dialect: str) -> sa.sql.Executable:
        if dialect == "postgresql":
            return pg_insert(table).values(**values).on_conflict_do_nothing()
        if dialect == "sqlite":
            return sqlite_insert(table).values(**values).on_conflict_do_nothing()
        return mysql_insert(table).values(**values).prefix_with("IGNORE")

    return Query(build)


def bind(*names: str) -> dict[str, sa.BindParameter]:
    return {n: sa.bindparam(n) for n in names}


class UnitOfWork:
    """One local transaction on one service's database."""

    dialect: str

    async def execute(self, q: Query, **params: Any) -> int:  # rows affected
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


class Database:
    dialect: str
    url: str

    def unit_of_work(self, readonly: bool = False) -> UnitOfWork:
        """readonly: for reads that need no transaction of their own (one statement is atomic)."""
        raise NotImplementedError

    async def fetchone(self, q: Query, **params: Any) -> Row | None:
        async with self.unit_of_work(readonly=True) as uow:
            return await uow.fetchone(q, **params)

    async def fetchall(self, q: Query, **params: Any) -> Sequence[Row]:
        async with self.unit_of_work(readonly=True) as uow:
            return await uow.fetchall(q, **params)

    async def connect(self) -> None:
        pass

    async def close(self) -> None:
        pass


# --- SQLite: the embedded default -------------------------------------------------------------

def _cents(d: Decimal) -> int:
    cents = d.scaleb(2)
    if cents != cents.to_integral_value():
        raise ValueError(f"{d} has more than two decimal places")
    return int(cents)


# Every Decimal this system binds is money (see infra.types); SQLite keeps it as integer cents.
sqlite3.register_adapter(Decimal, _cents)
sqlite3.register_converter("CENTS", lambda b: Decimal(int(b)).scaleb(-2))
sqlite3.register_adapter(datetime, lambda d: d.isoformat(" "))
sqlite3.register_converter("DATETIME", lambda b: datetime.fromisoformat(b.decode()))


class SqliteDatabase(Database):
    """One connection per service file, transactions run inline on the event loop.

    A transaction of a few statements takes tens of microseconds; running it without awaiting
    anything real keeps it atomic for free and is the fastest way. The lock is for the rare
    transaction that does await (a slow fault): others wait for it instead of interleaving.
    """

    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        self.url = f"sqlite:///{path}"
        self.path = path
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(
            path, isolation_level=None, detect_types=sqlite3.PARSE_DECLTYPES, check_same_thread=False
        )
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a committed transaction survives a killed process (not a power cut).
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA busy_timeout=5000")
        self.lock = asyncio.Lock()

    def unit_of_work(self, readonly: bool = False) -> SqliteUnitOfWork:
        return SqliteUnitOfWork(self, readonly)

    async def close(self) -> None:
        self.conn.close()


class SqliteUnitOfWork(UnitOfWork):
    __slots__ = ("db", "conn", "_open", "_readonly")
    dialect = "sqlite"

    def __init__(self, db: SqliteDatabase, readonly: bool = False) -> None:
        self.db = db
        self.conn = db.conn
        self._open = False
        self._readonly = readonly

    async def __aenter__(self) -> SqliteUnitOfWork:
        await self.db.lock.acquire()
        if self._readonly:  # autocommit reads: no write lock on the file
            return self
        try:
            # IMMEDIATE: take the write lock now, so a transaction never fails half-way on it.
            self.conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.db.lock.release()
            raise
        self._open = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self._open:
                self.conn.execute("ROLLBACK")
                self._open = False
        finally:
            self.db.lock.release()

    async def execute(self, q: Query, **params: Any) -> int:
        sql, args = q.args("sqlite", params)
        return self.conn.execute(sql, args).rowcount

    async def fetchone(self, q: Query, **params: Any) -> Row | None:
        sql, args = q.args("sqlite", params)
        return self.conn.execute(sql, args).fetchone()

    async def fetchall(self, q: Query, **params: Any) -> Sequence[Row]:
        sql, args = q.args("sqlite", params)
        return self.conn.execute(sql, args).fetchall()

    async def commit(self) -> None:
        self.conn.execute("COMMIT")
        self._open = False


class PooledDatabase(Database):
    """A server database: a pool of the driver's connections, opened by connect()."""

    def __init__(self, url: str, pool_size: int = 10) -> None:
        self.url = url
        self.pool_size = pool_size
        self.pool: Any = None


# --- PostgreSQL through asyncpg ---------------------------------------------------------------

async def _end_transaction(conn: Any) -> None:
    """What a connection needs before it goes back to the pool. asyncpg's default reset sends
    `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` on every release: a round
    trip per unit of work, for session state we never create (no SET, LISTEN, advisory locks or
    cursors). Only a transaction left open (a unit of work cut short) is ended."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


class PostgresDatabase(PooledDatabase):
    dialect = "postgresql"

    async def connect(self) -> None:
        import asyncpg

        u = make_url(self.url)
        self.pool = await asyncpg.create_pool(
            host=u.host or "127.0.0.1",
            port=u.port or 5432,
            user=u.username or "postgres",
            password=u.password,
            database=u.database,
            min_size=1,
            max_size=self.pool_size,
            reset=_end_transaction,
        )

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
            self.pool = None

    def unit_of_work(self, readonly: bool = False) -> PostgresUnitOfWork:
        return PostgresUnitOfWork(self, readonly)


class PostgresUnitOfWork(UnitOfWork):
    dialect = "postgresql"

    def __init__(self, db: PostgresDatabase, readonly: bool = False) -> None:
        self.db = db
        self.conn: Any = None
        self.tr: Any = None
        self._readonly = readonly

    async def __aenter__(self) -> PostgresUnitOfWork:
        self.conn = await self.db.pool.acquire()
        if self._readonly:
            return self
        try:
            self.tr = self.conn.transaction()
            await self.tr.start()
        except BaseException:
            await self.db.pool.release(self.conn)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self.tr is not None:
                await self.tr.rollback()
        finally:
            await self.db.pool.release(self.conn)

    async def execute(self, q: Query, **params: Any) -> int:
        sql, args = q.args("postgresql", params)
        status = await self.conn.execute(sql, *args)
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def fetchone(self, q: Query, **params: Any) -> Row | None:
        sql, args = q.args("postgresql", params)
        return await self.conn.fetchrow(sql, *args)

    async def fetchall(self, q: Query, **params: Any) -> Sequence[Row]:
        sql, args = q.args("postgresql", params)
        return await self.conn.fetch(sql, *args)

    async def commit(self) -> None:
        await self.tr.commit()
        self.tr = None


# --- MySQL / MariaDB through asyncmy ----------------------------------------------------------

class MysqlDatabase(PooledDatabase):
    dialect = "mysql"

    async def connect(self) -> None:
        import asyncmy

        u = make_url(self.url)
        self.pool = await asyncmy.create_pool(
            host=u.host or "127.0.0.1",
            port=u.port or 3306,
            user=u.username or "root",
            password=u.password or "",
            database=u.database,
            minsize=1,
            maxsize=self.pool_size,
            autocommit=False,
            charset="utf8mb4",
            # Same semantics as PostgreSQL's default; conditional updates and unique keys do the rest.
            init_command="SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
        )

    async def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            await self.pool.wait_closed()
            self.pool = None

    def unit_of_work(self, readonly: bool = False) -> MysqlUnitOfWork:
        # A read runs in the implicit transaction its first statement opens; exit rolls it back.
        return MysqlUnitOfWork(self)


class MysqlUnitOfWork(UnitOfWork):
    dialect = "mysql"

    def __init__(self, db: MysqlDatabase) -> None:
        self.db = db
        self.conn: Any = None
        self._open = False

    async def __aenter__(self) -> MysqlUnitOfWork:
        # No BEGIN: with autocommit off the first statement opens the transaction by itself, and
        # commit() or the rollback on exit ends it, so a connection goes back to the pool with none
        # open. That spares a round trip per unit of work.
        self.conn = await self.db.pool.acquire()
        self._open = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self._open:
                await self.conn.rollback()
        finally:
            self.db.pool.release(self.conn)

    async def _cursor(self, q: Query, params: Mapping[str, Any]) -> Any:
        from asyncmy.cursors import DictCursor

        sql, args = q.args("mysql", params)
        cur = self.conn.cursor(DictCursor)
        await cur.execute(sql, args)
        return cur

    async def execute(self, q: Query, **params: Any) -> int:
        cur = await self._cursor(q, params)
        n = cur.rowcount
        await cur.close()
        return n

    async def fetchone(self, q: Query, **params: Any) -> Row | None:
        cur = await self._cursor(q, params)
        row = await cur.fetchone()
        await cur.close()
        return row

    async def fetchall(self, q: Query, **params: Any) -> Sequence[Row]:
        cur = await self._cursor(q, params)
        rows = await cur.fetchall()
        await cur.close()
        return rows

    async def commit(self) -> None:
        await self.conn.commit()
        self._open = False


def open_database(url: str) -> Database:
    """sqlite:///path, postgresql://user@host/db, mysql://root@host/db (driver suffixes allowed)."""
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return SqliteDatabase(make_url(url).database or ":memory:")
    if backend == "postgresql":
        return PostgresDatabase(url)
    if backend in ("mysql", "mariadb"):
        return MysqlDatabase(url)
    raise ValueError(f"unsupported database URL: {url}")


def drop_databases(server_url: str, names: list[str]) -> None:
    """Drop the named databases where they exist. Blocking, like ensure_databases."""
    ensure_databases(server_url, names, fresh=True, create=False)


def ensure_databases(server_url: str, names: list[str], *, fresh: bool = False, create: bool = True) -> None:
    """Create the named databases on a PostgreSQL or MySQL/MariaDB server unless they exist (fresh:
    drop them first). Blocking: call it before the loop starts, or from a thread."""
    import asyncio

    u = make_url(server_url)
    backend = u.get_backend_name()
    for name in names:
        if not name.replace("_", "").isalnum():
            raise ValueError(f"not a plain database name: {name!r}")

    async def postgresql() -> None:
        import asyncpg

        conn = await asyncpg.connect(host=u.host, port=u.port or 5432, user=u.username or "postgres",
                                     password=u.password, database="postgres")
        try:
            for name in names:
                if fresh:
                    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                if create and not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                    await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    async def mysql() -> None:
        import asyncmy

        conn = await asyncmy.connect(host=u.host, port=u.port or 3306, user=u.username or "root",
                                     password=u.password or "")
        try:
            async with conn.cursor() as cur:
                for name in names:
                    if fresh:
                        await cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
                    # Looked up first: IF NOT EXISTS on one that exists raises a warning asyncmy prints.
                    await cur.execute("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (name,))
                    if create and not await cur.fetchone():
                        await cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        finally:
            conn.close()

    if backend == "postgresql":
        asyncio.run(postgresql())
    elif backend in ("mysql", "mariadb"):
        asyncio.run(mysql())
    else:
        raise ValueError(f"databases are created on PostgreSQL or MySQL/MariaDB, not {backend}")
