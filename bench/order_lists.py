#!/usr/bin/env python3
"""The order lists at scale: time per page, and the plan each query runs, at N orders.

Fills a fresh order database (SQLite file, or a scratch database on the local PostgreSQL or
MariaDB, dropped afterwards) with N orders of 10,000 users over 30 days (85% confirmed, 10%
cancelled, 5% refunded; 70% of the confirmed paid), migrated as the shop migrates it, then times
the order service's own list query (services/order/repository.list_orders) for the first page and
a page deep in the list, per filter, and prints the database's plan for each.

    .venv/bin/python bench/order_lists.py [--db sqlite|postgresql|mysql] [--orders 1000000] [--limit 20]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from shop.common.clock import epoch_ms
from shop.common.ids import first_id_at
from shop.infra.db import Database, drop_databases, ensure_databases, open_database
from shop.services.catalog import migrate_service
from shop.services.order import repository as repo
from shop.services.order.contracts import OrderQuery
from shop.services.order.models import order

USERS = 10_000
START = datetime(2026, 10, 1)
DAYS = 30
SERVERS = {"postgresql": "postgresql://postgres@127.0.0.1:5432", "mysql": "mysql://root@127.0.0.1:3306"}


def rows(n: int) -> Any:
    """The orders, oldest first, as their ids grow: one every 30 days / n."""
    step_ms = DAYS * 86_400_000 // n
    t0 = epoch_ms(START)
    for i in range(n):
        ms = t0 + i * step_ms
        status = 1 if i % 20 < 17 else (2 if i % 20 < 19 else 4)
        pay = 2 if status == 4 or (status == 1 and i % 10 < 7) else 0
        yield (first_id_at(ms) + i % 4096, i % USERS + 1, status, pay, 0, "addr", None, 7, 1, Decimal("10.00"),
               Decimal("10.00"), Decimal("10.00"), Decimal("20.00"), None, Decimal("0.00"), Decimal("0.00"),
               Decimal("20.00"), START + timedelta(milliseconds=i * step_ms), None, None, None, None)


async def fill(url: str, n: int) -> None:
    """Setup only, the fastest way each driver has: the shop's own INSERT on SQLite, COPY on
    PostgreSQL, multi-row INSERTs on MariaDB."""
    columns = [c.name for c in order.columns]
    db = open_database(url)
    await db.connect()
    try:
        it = rows(n)
        done = 0
        while done < n:
            chunk = [next(it) for _ in range(min(50_000, n - done))]
            async with db.unit_of_work() as uow:
                if db.dialect == "sqlite":
                    for r in chunk:
                        await uow.execute(repo.INSERT, **dict(zip(columns, r, strict=True)))
                elif db.dialect == "postgresql":
                    await uow.conn.copy_records_to_table("trade_order", records=chunk, columns=columns)  # type: ignore[attr-defined]
                else:
                    marks = ", ".join(["%s"] * len(columns))
                    async with uow.conn.cursor() as cur:  # type: ignore[attr-defined]
                        await cur.executemany(f"INSERT INTO trade_order ({', '.join(columns)}) VALUES ({marks})", chunk)
                await uow.commit()
            done += len(chunk)
        # Statistics, as a live database has them (autovacuum, or InnoDB's own sampling).
        async with db.unit_of_work() as uow:
            if db.dialect == "postgresql":
                await uow.conn.execute("ANALYZE trade_order")  # type: ignore[attr-defined]
            elif db.dialect == "mysql":
                async with uow.conn.cursor() as cur:  # type: ignore[attr-defined]
                    await cur.execute("ANALYZE TABLE trade_order")
                    await cur.fetchall()
    finally:
        await db.close()


async def measure(db: Database, dialect: str, limit: int, n: int) -> None:
    mid_id = first_id_at(epoch_ms(START + timedelta(days=DAYS / 2)))
    day = START + timedelta(days=10)
    cases = {
        "user": OrderQuery(user_id=4242, limit=limit),
        "user, deep page": OrderQuery(user_id=4242, before_id=mid_id, limit=limit),
        "user + status": OrderQuery(user_id=4242, order_status=1, limit=limit),
        "user + pay status": OrderQuery(user_id=4242, pay_status=2, limit=limit),
        "all": OrderQuery(limit=limit),
        "all, deep page": OrderQuery(before_id=mid_id, limit=limit),
        "status 2 (10%)": OrderQuery(order_status=2, limit=limit),
        "status 4, deep page": OrderQuery(order_status=4, before_id=mid_id, limit=limit),
        "pay status 0": OrderQuery(pay_status=0, limit=limit),
        "one day": OrderQuery(from_time=day, to_time=day + timedelta(days=1), limit=limit),
        "user + one week": OrderQuery(user_id=4242, from_time=day, to_time=day + timedelta(days=7), limit=limit),
    }
    print(f"{dialect}, {n} orders, pages of {limit}: median of 20 runs, then the plan")
    for name, q in cases.items():
        times = []
        for _ in range(20):
            t = time.perf_counter()
            found, _ = await repo.list_orders(db, q)
            times.append((time.perf_counter() - t) * 1000)
        print(f"  {name:22} {statistics.median(times):7.2f} ms  ({len(found)} rows)")
        print("     plan: " + await plan(db, dialect, q))


async def plan(db: Database, dialect: str, q: OrderQuery) -> str:
    query, params = repo.list_statement(q)
    sql, args = query.args(dialect, params)
    prefix = {"sqlite": "EXPLAIN QUERY PLAN ", "postgresql": "EXPLAIN ", "mysql": "EXPLAIN "}[dialect]
    async with db.unit_of_work(readonly=True) as uow:
        if dialect == "sqlite":
            out = uow.conn.execute(prefix + sql, args).fetchall()  # type: ignore[attr-defined]
            return " / ".join(str(r[-1]) for r in out)
        if dialect == "postgresql":
            out = await uow.conn.fetch(prefix + sql, *args)  # type: ignore[attr-defined]
            return " / ".join(r[0].strip() for r in out[:3])
        cur = uow.conn.cursor()  # type: ignore[attr-defined]
        await cur.execute(prefix + sql, args)
        out = await cur.fetchall()
        return " / ".join(f"{r[2]} key={r[5]} rows={r[8]} {r[9] or ''}" for r in out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default="sqlite", choices=["sqlite", "postgresql", "mysql"])
    ap.add_argument("--orders", type=int, default=1_000_000)
    ap.add_argument("--limit", type=int, default=20)
    a = ap.parse_args()
    scratch = f"shop_bench_lists_{os.getpid()}"
    if a.db == "sqlite":
        url = f"sqlite:///{tempfile.mkdtemp()}/order.db"
    else:
        ensure_databases(SERVERS[a.db], [scratch], fresh=True)
        url = f"{SERVERS[a.db]}/{scratch}"
    try:
        migrate_service("order", url)
        t = time.perf_counter()
        asyncio.run(fill(url, a.orders))
        print(f"filled {a.orders} orders in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        db = open_database(url)

        async def go() -> None:
            await db.connect()
            try:
                await measure(db, a.db, a.limit, a.orders)
            finally:
                await db.close()

        asyncio.run(go())
    finally:
        if a.db != "sqlite":
            drop_databases(SERVERS[a.db], [scratch])


if __name__ == "__main__":
    main()
