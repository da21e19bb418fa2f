"""MySQL / MariaDB through asyncmy."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.engine import make_url

from shop.infra.db.base import PooledDatabase, Query, Row, UnitOfWork, roll_back


def server_args(url: str) -> dict[str, Any]:
    """asyncmy's connection arguments for a mysql:// URL, with the defaults the shop assumes: its
    pools, and the one-off connections that make databases or read settings (servers.py)."""
    u = make_url(url)
    return {"host": u.host or "127.0.0.1", "port": u.port or 3306, "user": u.username or "root",
            "password": u.password or "", "database": u.database}


class MysqlDatabase(PooledDatabase):
    dialect = "mysql"

    async def connect(self) -> None:
        import asyncmy

        self.pool = await asyncmy.create_pool(
            **server_args(self.url),
            minsize=1,
            maxsize=self.pool_size,
            autocommit=False,
            charset="utf8mb4",
            # Same semantics as PostgreSQL's default; conditional updates and unique keys do the rest.
            init_command="SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
        )

    async def close_gracefully(self, pool: Any) -> None:
        pool.close()
        await pool.wait_closed()

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
                await roll_back(self.conn.rollback(), exc[1])
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

    async def execute_many(self, q: Query, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            cur = self.conn.cursor()
            await cur.executemany(q.compiled("mysql")[0], [q.args("mysql", r)[1] for r in rows])
            await cur.close()

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
