"""SQLite, the embedded default: one connection per service file, transactions inline, each one
durable before anything leaves its unit of work (durable.py)."""
from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, TypeVar

from shop.infra.db.base import Database, Query, Row, UnitOfWork
from shop.infra.db.durable import WalSyncer
from shop.infra.files import DIR_MODE, private_file

T = TypeVar("T")

# How a commit reaches the disk (SHOP_SQLITE_DURABILITY):
# - barrier: COMMIT under synchronous=NORMAL, then, the file's lock released, a shared fdatasync of the
#   WAL on a worker thread before the unit of work is left (group commit, durable.py).
# - full: synchronous=FULL, every COMMIT fdatasyncs inline and the event loop waits for the disk.
# - normal: synchronous=NORMAL alone. NOT power-safe: a power cut or an OS crash may take each file's
#   latest commits back independently of the others' (a stock step lost, its order kept). For
#   measuring what durability costs, and for the test that shows a power cut tears it.
Durability = Literal["barrier", "full", "normal"]


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

    What a unit of work wrote or read leaves it only once it is on the disk (`durable`, waited for
    after the lock is released): a client's answer, another file's write, a message published all
    follow from commits a power cut cannot take back. So a power cut loses, per file, only commits
    nothing outside that file has acted on yet: the same as a crash before those COMMITs.
    """

    dialect = "sqlite"

    def __init__(self, path: str, durability: Durability = "barrier") -> None:
        self.url = f"sqlite:///{path}"
        self.path = path
        if path != ":memory:":
            Path(path).parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            # 0600 before SQLite opens it: its -wal and -shm files take the database file's mode.
            # Those a run before this one left behind are made 0600 too.
            for f in (path, f"{path}-wal", f"{path}-shm"):
                if f == path or Path(f).exists():
                    private_file(Path(f))
        self.conn = sqlite3.connect(
            path, isolation_level=None, detect_types=sqlite3.PARSE_DECLTYPES, check_same_thread=False
        )
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a committed transaction survives a killed process, not a power cut;
        # the syncer makes it survive that too. FULL syncs in every COMMIT.
        self.conn.execute(f"PRAGMA synchronous={'FULL' if durability == 'full' else 'NORMAL'}")
        self.syncer = WalSyncer(path) if durability == "barrier" and path != ":memory:" else None
        self.conn.execute("PRAGMA busy_timeout=5000")
        self.lock = asyncio.Lock()
        self._reading: sqlite3.Connection | None = None  # the long reads' connection (reader())
        # Its one thread: a read whose caller was cancelled still runs to its end there, and what
        # comes next on that connection (the ROLLBACK, close()) waits behind it, never beside it.
        self._read_thread = ThreadPoolExecutor(1, thread_name_prefix=f"sqlite-read-{Path(path).stem}")
        self.read_lock = asyncio.Lock()

    def unit_of_work(self, readonly: bool = False) -> SqliteUnitOfWork:
        return SqliteUnitOfWork(self, readonly)

    def reader(self) -> UnitOfWork:
        """Long reads (the audit's) on a connection of their own, each statement run on a worker
        thread, in one read transaction: a snapshot of the file, and the event loop serves everyone
        else meanwhile (WAL lets readers work beside the writer; sqlite3 releases the GIL while a
        statement runs). An in-memory database has no second connection: its reads stay inline."""
        if self.path == ":memory:":
            return self.unit_of_work(readonly=True)
        return SqliteReader(self)

    def read_connection(self) -> sqlite3.Connection:
        if self._reading is None:
            self._reading = sqlite3.connect(
                self.path, isolation_level=None, detect_types=sqlite3.PARSE_DECLTYPES, check_same_thread=False
            )
            self._reading.row_factory = sqlite3.Row
            self._reading.execute("PRAGMA busy_timeout=5000")
        return self._reading

    async def on_read_thread(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._read_thread, fn)

    async def close(self) -> None:
        if self._reading is not None:
            await self.on_read_thread(self._reading.close)
            self._reading = None
        self._read_thread.shutdown(wait=False)
        if self.syncer is not None:
            self.syncer.close()
        self.conn.close()

    async def durable(self) -> None:
        """Once everything committed to this file so far is on the disk."""
        if self.syncer is not None:
            await self.syncer.durable()


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
        # Whatever the caller does next (answer, call, publish, write another file) may rest on what
        # this unit of work wrote or saw: it waits until that is durable. Read-only ones too.
        await self.db.durable()

    async def execute(self, q: Query, **params: Any) -> int:
        sql, args = q.args("sqlite", params)
        return self.conn.execute(sql, args).rowcount

    async def execute_many(self, q: Query, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            self.conn.executemany(q.compiled("sqlite")[0], [q.args("sqlite", r)[1] for r in rows])

    async def fetchone(self, q: Query, **params: Any) -> Row | None:
        sql, args = q.args("sqlite", params)
        return self.conn.execute(sql, args).fetchone()

    async def fetchall(self, q: Query, **params: Any) -> Sequence[Row]:
        sql, args = q.args("sqlite", params)
        return self.conn.execute(sql, args).fetchall()

    async def commit(self) -> None:
        self.conn.execute("COMMIT")
        self._open = False
        if self.db.syncer is not None:
            self.db.syncer.written += 1


class SqliteReader(UnitOfWork):
    """A read transaction on the reading connection, its statements on a worker thread."""

    __slots__ = ("db", "conn")
    dialect = "sqlite"

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db
        self.conn: sqlite3.Connection | None = None

    async def __aenter__(self) -> SqliteReader:
        await self.db.read_lock.acquire()
        try:
            conn = self.conn = self.db.read_connection()
            await self.db.on_read_thread(lambda: conn.execute("BEGIN"))
        except BaseException:
            self.db.read_lock.release()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        conn = self.conn
        try:
            if conn is not None:
                await self.db.on_read_thread(lambda: conn.execute("ROLLBACK"))
        finally:
            self.db.read_lock.release()
        await self.db.durable()  # its snapshot held nothing committed later than this

    def _run(self, q: Query, params: dict[str, Any]) -> sqlite3.Cursor:
        assert self.conn is not None, "used inside its async with"
        sql, args = q.args("sqlite", params)
        return self.conn.execute(sql, args)

    async def execute(self, q: Query, **params: Any) -> int:
        raise TypeError("a reader only reads")

    async def fetchone(self, q: Query, **params: Any) -> Row | None:
        return await self.db.on_read_thread(lambda: self._run(q, params).fetchone())

    async def fetchall(self, q: Query, **params: Any) -> Sequence[Row]:
        return await self.db.on_read_thread(lambda: self._run(q, params).fetchall())

    async def commit(self) -> None:
        pass  # nothing written
