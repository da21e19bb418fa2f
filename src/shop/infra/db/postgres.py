"""PostgreSQL through asyncpg."""
from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from sqlalchemy.engine import make_url

from shop.infra.db.base import AtOnce, PooledDatabase, Query, Row, UnitOfWork, roll_back
from shop.infra.db.group_commit import GroupCommit


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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._at_once: dict[AtOnce, GroupCommit[dict[str, Any], Row | None]] = {}

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

    async def write_at_once(self, step: AtOnce, **params: Any) -> Row | None:
        batch = self._at_once.get(step)
        if batch is None:
            # Group commit (group_commit.py): the first step alone, those asked for meanwhile (a
            # batch of calls handled at once, infra/rpc/batch.py) in one statement: one round trip
            # and one commit for all of them.
            batch = self._at_once[step] = GroupCommit(partial(self._write_steps, step), most=64)
        return await batch(params)

    async def _write_steps(self, step: AtOnce, items: list[dict[str, Any]]) -> list[Row | None]:
        """The first step on each entity in one statement; a second step on an entity (a hot goods,
        one user's orders at once) in one of its own beside it, as if alone: the statement would
        change the entity's row for one of them only, and the others would go the slow way."""
        firsts: dict[Any, int] = {}
        for n, item in enumerate(items):
            firsts.setdefault(item["entity"], n)
        together = set(firsts.values())
        groups = [sorted(together), *([n] for n in range(len(items)) if n not in together)]
        written = await asyncio.gather(*(self._write_group(step, [items[n] for n in g]) for g in groups))
        taken: list[Row | None] = [None] * len(items)
        for group, rows in zip(groups, written, strict=True):
            for n, row in zip(group, rows, strict=True):
                taken[n] = row
        return taken

    async def _write_group(self, step: AtOnce, items: list[dict[str, Any]]) -> list[Row | None]:
        """Steps on distinct entities in one statement: `one` for a single step, `many` for more."""
        if len(items) == 1:
            rows = await self._fetch_at_once(step.one, items[0])
            return [rows[0] if rows else None]
        args = {f"{p}_each": [i[p] for i in items] for p in step.params}
        args["at_once_n_each"] = list(range(len(items)))
        taken: list[Row | None] = [None] * len(items)
        for row in await self._fetch_at_once(step.many, args):
            taken[row["at_once_n"]] = row
        return taken

    async def _fetch_at_once(self, q: Query, params: dict[str, Any]) -> Sequence[Row]:
        import asyncpg

        sql, args = q.args("postgresql", params)
        async with self.pool.acquire() as conn:
            try:
                return await conn.fetch(sql, *args)  # outside a transaction: the statement is one
            except (asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError):
                return []  # nothing written: each step goes the slow way


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
