#!/usr/bin/env python3
"""What making SQLite commits durable costs, on the order's SQL alone through the shop's unit of work.

One order's statements as /work/shared/limits/limit_sqlite.py has them (3 reads by key, then 5
transactions over 4 files: order + outbox, stock + log, coupon, balance + log, order CAS + outbox
delete), each read and transaction a unit of work of `SqliteDatabase`, run by --concurrency
coroutines on one event loop for --seconds, with each SHOP_SQLITE_DURABILITY mode in turn, round
after round (modes interleaved, so a busy machine weighs on each alike):

- normal: synchronous=NORMAL, no flush (not power-safe);
- full: synchronous=FULL, each COMMIT flushes the WAL inline, the loop waiting;
- barrier: NORMAL, then leaving the unit of work waits for a flush shared with every commit before it.

The files go in a temporary dir under the current one, not /tmp: that may be a tmpfs, where a
flush costs nothing.

    .venv/bin/python bench/sqlite_durability.py [--seconds 5] [--concurrency 64] [--rounds 3]
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from shop.infra.db import Query, SqliteDatabase
from shop.infra.db.sqlite import Durability

MODES: tuple[Durability, ...] = ("normal", "full", "barrier")
DDL = {
    "user": ["CREATE TABLE u (id INTEGER PRIMARY KEY, money INTEGER, score INTEGER)",
             "CREATE TABLE ulog (uid INTEGER, oid INTEGER, typ INTEGER, amount INTEGER, PRIMARY KEY (uid, oid, typ))"],
    "goods": ["CREATE TABLE g (id INTEGER PRIMARY KEY, num INTEGER, price INTEGER)",
              "CREATE TABLE glog (gid INTEGER, oid INTEGER, typ INTEGER, n INTEGER, PRIMARY KEY (gid, oid, typ))"],
    "coupon": ["CREATE TABLE c (id INTEGER PRIMARY KEY, uid INTEGER, price INTEGER, used INTEGER, oid INTEGER)"],
    "order": ["CREATE TABLE o (id INTEGER PRIMARY KEY, uid INTEGER, status INTEGER, gid INTEGER, n INTEGER)",
              "CREATE TABLE outbox (id INTEGER PRIMARY KEY, tag TEXT, body TEXT, due INTEGER)"],
}


def q(sql: str) -> Query:
    return Query(sa.text(sql))


READ_U, READ_G, READ_C = (q("SELECT money FROM u WHERE id = :id"), q("SELECT num FROM g WHERE id = :id"),
                          q("SELECT used FROM c WHERE id = :id"))
PRE_ORDER = [q("INSERT INTO o VALUES (:oid, :uid, 0, :gid, 1)"),
             q("INSERT INTO outbox VALUES (:oid, 'cancel', '{}', 0)")]
STOCK = [q("UPDATE g SET num = num - 1 WHERE id = :gid AND num >= 1"), q("INSERT INTO glog VALUES (:gid, :oid, 1, 1)")]
COUPON = [q("UPDATE c SET used = 1, oid = :oid WHERE id = :cid AND used = 0")]
MONEY = [q("UPDATE u SET money = money - 1 WHERE id = :uid AND money >= 1"),
         q("INSERT INTO ulog VALUES (:uid, :oid, 1, 1)")]
CONFIRM = [q("UPDATE o SET status = 1 WHERE id = :oid AND status = 0"), q("DELETE FROM outbox WHERE id = :oid")]


async def setup(d: Path, mode: Durability, coupons: int) -> dict[str, SqliteDatabase]:
    dbs = {name: SqliteDatabase(str(d / f"{name}.db"), mode) for name in DDL}
    rows = {
        "user": ("INSERT INTO u VALUES (?, 1000000, 0)", [(i,) for i in range(1000)]),
        "goods": ("INSERT INTO g VALUES (?, 1000000000, 30)", [(i,) for i in range(100)]),
        "coupon": ("INSERT INTO c VALUES (?, ?, 5, 0, NULL)", [(i, i % 1000) for i in range(coupons)]),
    }
    for name, statements in DDL.items():
        conn = dbs[name].conn
        conn.execute("BEGIN")
        for sql in statements:
            conn.execute(sql)
        if name in rows:
            conn.executemany(*rows[name])
        conn.execute("COMMIT")
    return dbs


async def run(mode: Durability, seconds: float, concurrency: int) -> float:
    with tempfile.TemporaryDirectory(prefix="sqlite-durability-", dir=".") as tmp:
        dbs = await setup(Path(tmp), mode, 400_000)
        ids = iter(range(1, 10**9))
        done = 0
        end = time.perf_counter() + seconds

        async def tx(db: SqliteDatabase, statements: list[Query], **params: int) -> None:
            async with db.unit_of_work() as uow:
                for s in statements:
                    await uow.execute(s, **params)
                await uow.commit()

        async def read(db: SqliteDatabase, query: Query, key: int) -> None:
            async with db.unit_of_work(readonly=True) as uow:
                await uow.fetchone(query, id=key)

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < end:
                oid = next(ids)
                p = {"oid": oid, "uid": oid % 1000, "gid": oid % 100, "cid": oid}
                await read(dbs["user"], READ_U, p["uid"])
                await read(dbs["goods"], READ_G, p["gid"])
                await read(dbs["coupon"], READ_C, p["cid"])
                await tx(dbs["order"], PRE_ORDER, **p)
                await tx(dbs["goods"], STOCK, **p)
                await tx(dbs["coupon"], COUPON, **p)
                await tx(dbs["user"], MONEY, **p)
                await tx(dbs["order"], CONFIRM, **p)
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        rate = done / (time.perf_counter() - started)
        for db in dbs.values():
            await db.close()
        return rate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    rates: dict[str, list[float]] = {m: [] for m in MODES}
    for r in range(args.rounds):
        for mode in MODES:
            rates[mode].append(asyncio.run(run(mode, args.seconds, args.concurrency)))
            print(f"round {r + 1} {mode}: {rates[mode][-1]:.0f} orders/s", flush=True)
    for mode in MODES:
        print(f"{mode}: median {statistics.median(rates[mode]):.0f} orders/s "
              f"(rounds {', '.join(f'{x:.0f}' for x in rates[mode])})")


if __name__ == "__main__":
    main()
