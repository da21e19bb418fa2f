"""PostgreSQL through asyncpg."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.engine import make_url

from shop.infra.db.base import PooledDatabase, Query, Row, UnitOfWork, roll_back


def server_args(url: str) -> dict[str, Any]:
    """asyncpg's connection arguments for a postgresql:// URL, with the defaults the shop assumes:
    its pools, and the one-off connections that make databases or read settings (servers.py)."""
    u = make_url(url)
    return {"host": u.host or "127.0.0.1", "port": u.port or 5432, "user": u.username or "postgres",
            "password": u.password, "database": u.database}


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

        self.pool = await asyncpg.create_pool(
            **server_args(self.url),
            min_size=1,
            max_size=self.pool_size,
            reset=_end_transaction,
        )

    async def close_gracefully(self, pool: Any) -> None:
        await pool.close()

    def unit_of_work(self, readonly: bool = False) -> PostgresUnitOfWork:
        return PostgresUnitOfWork(self, readonly)

    writes_at_once = True

    async def write_once(self, q: Query, **params: Any) -> Row | None:
        import asyncpg

        sql, args = q.args("postgresql", params)
        async with self.pool.acquire() as conn:
            try:
                return await conn.fetchrow(sql, *args)  # outside a transaction: the statement is one
            except (asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError):
                return None


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
                await roll_back(self.tr.rollback(), exc[1])
        finally:
            await self.db.pool.release(self.conn)

    async def execute(self, q: Query, **params: Any) -> int:
        sql, args = q.args("postgresql", params)
        status = await self.conn.execute(sql, *args)
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def execute_many(self, q: Query, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            sql = q.compiled("postgresql")[0]
            await self.conn.executemany(sql, [q.args("postgresql", r)[1] for r in rows])

    async def fetchone(self, q: Query, **params: Any) -> Row | None:
        sql, args = q.args("postgresql", params)
        return await self.conn.fetchrow(sql, *args)

    async def fetchall(self, q: Query, **params: Any) -> Sequence[Row]:
        sql, args = q.args("postgresql", params)
        return await self.conn.fetch(sql, *args)

    async def commit(self) -> None:
        await self.tr.commit()
        self.tr = None
