#!/usr/bin/env python3
"""The audit at scale: GET /admin/audit's time, and /healthz's latency while audits run, at N orders.

Fills all six services' databases with N consistent orders over the last 30 days (75% confirmed and
paid, 5% confirmed awaiting payment, 15% cancelled, 5% refunded; a tenth with a coupon, a quarter
partly paid from the balance), with their ledger rows, coupons, payments, payment log rows, the
user service's points messages, and stock, balances and points that agree; then times `shop audit`
(offline), starts the shop on those databases and measures:

- how long the background checker takes to bring its watermark up to date (after a start);
- GET /admin/audit's time;
- /healthz's latency (p50/p99/max of a steady 100 requests a second, timed from when each was due)
  with the checker idle, with GET /admin/audit asked in a loop, and during a full recount
  (POST /admin/audit/recount), and the recount's duration.

    .venv/bin/python bench/audit_at_scale.py --mode embedded [--orders 1000000]
    .venv/bin/python bench/audit_at_scale.py --mode cluster [--orders 1000000]   # PostgreSQL, RabbitMQ, Zookeeper

Embedded: SQLite files in a scratch directory, `shop run`. Cluster: scratch PostgreSQL databases
NAME_<service> (ClusterConfig), `shop cluster up --db postgresql --name NAME`; its databases, queues
and registry root are removed afterwards.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from shop.cluster import ClusterConfig, remove
from shop.common.clock import now_ms
from shop.common.ids import first_id_at
from shop.infra.config import SERVICES, Settings
from shop.infra.db import ensure_databases, open_database
from shop.services.catalog import migrate_service

USERS, GOODS, DAYS = 100_000, 1_000, 30
STOCK, MONEY = 10_000_000, Decimal("1000000.00")  # put in at the start: enough for every order
ADMIN = "bench-admin-token"
D0, D5, D10, D20 = Decimal("0.00"), Decimal("5.00"), Decimal("10.00"), Decimal("20.00")


def shop_rows(n: int) -> dict[str, dict[str, list[tuple[Any, ...]]]]:
    """Every service's rows, by table, in the tables' column order."""
    out: dict[str, dict[str, list[tuple[Any, ...]]]] = defaultdict(lambda: defaultdict(list))
    end = now_ms() - 3_600_000  # an hour ago: every order long settled
    step = DAYS * 86_400_000 // n
    t0 = end - n * step
    start = datetime.utcfromtimestamp(t0 / 1000)
    taken_goods: dict[int, int] = defaultdict(int)
    taken_money: dict[int, Decimal] = defaultdict(Decimal)
    points: dict[int, int] = defaultdict(int)
    for i in range(n):
        at = start + timedelta(milliseconds=i * step)
        oid = first_id_at(t0 + i * step) + i % 4096
        uid, gid = i % USERS + 1, i % GOODS + 1
        kind = i % 20  # 0-14 paid, 15 awaiting payment, 16-18 cancelled, 19 refunded
        held = kind <= 15
        status = 1 if held else (2 if kind <= 18 else 4)
        paid = kind <= 14 or kind == 19
        coupon = i // 10 + 1 if i % 10 == 7 else None  # kinds 7 (paid) and 17 (cancelled)
        mp = D5 if i % 4 == 0 else D0
        cp = D5 if coupon else D0
        pay = D20 - mp - cp
        out["order"]["trade_order"].append((
            oid, uid, status, 2 if paid else 0, 0, "addr", "bench", gid, 1, D10, D10, D10, D20, coupon, cp, mp, pay,
            at, at, at if paid else None, at if status == 2 else None, at if status == 4 else None))
        goods_log = out["goods"]["trade_goods_number_log"]
        goods_log.append((gid, oid, 1, 1, at))
        if not held:
            goods_log.append((gid, oid, 2, 1, at))
        else:
            taken_goods[gid] += 1
        if mp:
            out["user"]["trade_user_money_log"].append((uid, oid, 1, mp, at))
            if not held:
                out["user"]["trade_user_money_log"].append((uid, oid, 2, mp, at))
            else:
                taken_money[uid] += mp
        if coupon:
            out["coupon"]["trade_coupon"].append((coupon, D5, uid, oid if held else None, 1 if held else 0,
                                                  at if held else None))
            out["coupon"]["trade_coupon_log"].append((coupon, oid, 1, 1, at))
            if not held:
                out["coupon"]["trade_coupon_log"].append((coupon, oid, 2, 1, at))
        if paid:
            pay_id = oid + 1
            out["pay"]["trade_pay"].append((pay_id, oid, uid, pay, 2, f"T{oid}", at, at, 1 if kind == 19 else 0,
                                            at if kind == 19 else None))
            out["log"]["trade_pay_log"].append((oid, pay_id, uid, pay, at))
            inbox = out["user"]["trade_mq_consumer_log"]
            body = json.dumps({"orderId": str(oid), "userId": str(uid), "payAmount": str(pay)})
            inbox.append(("user-order-group", "paid", str(oid), f"p{oid}", body, 2, 1, at, None))
            if kind == 19:
                inbox.append(("user-order-group", "refund", str(oid), f"r{oid}", body, 2, 1, at, None))
            else:
                points[uid] += int(pay)
    for gid in range(1, GOODS + 1):
        out["goods"]["trade_goods"].append((gid, f"goods {gid}", STOCK - taken_goods[gid], D10, "", start))
        out["goods"]["trade_goods_number_log"].append((gid, 0, 0, STOCK, start))
    for uid in range(1, USERS + 1):
        out["user"]["trade_user"].append((uid, f"bench-{uid}", "x", "", points[uid], start, MONEY - taken_money[uid]))
        out["user"]["trade_user_money_log"].append((uid, 0, 0, MONEY, start))
    return out


async def fill(urls: dict[str, str], rows: dict[str, dict[str, list[tuple[Any, ...]]]]) -> None:
    """Setup only, the fastest way each driver has: executemany on SQLite, COPY on PostgreSQL."""
    for service, tables in rows.items():
        db = open_database(urls[service])
        await db.connect()
        try:
            async with db.unit_of_work() as uow:
                for table, records in tables.items():
                    if db.dialect == "sqlite":
                        marks = ", ".join("?" * len(records[0]))
                        uow.conn.executemany(f"INSERT INTO {table} VALUES ({marks})", records)  # type: ignore[attr-defined]
                    else:
                        await uow.conn.copy_records_to_table(table, records=records)  # type: ignore[attr-defined]
                await uow.commit()
            if db.dialect == "postgresql":
                async with db.unit_of_work(readonly=True) as uow:
                    await uow.conn.execute("ANALYZE")  # type: ignore[attr-defined]
        finally:
            await db.close()


def healthz_stream(base: str, seconds: float, rate: int = 100) -> list[float]:
    """Latencies (ms) of /healthz asked `rate` times a second, each timed from when it was due."""
    async def go() -> list[float]:
        out: list[float] = []
        async with httpx.AsyncClient(base_url=base, timeout=60, limits=httpx.Limits(max_connections=64)) as c:
            async def one(due: float) -> None:
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                r = await c.get("/healthz")
                r.raise_for_status()
                out.append((time.perf_counter() - due) * 1000)

            t0 = time.perf_counter() + 0.2
            await asyncio.gather(*(one(t0 + k / rate) for k in range(int(seconds * rate))))
        return out

    return asyncio.run(go())


def summary(ms: list[float]) -> str:
    q = statistics.quantiles(ms, n=100)
    return f"p50 {q[49]:6.1f} ms  p99 {q[98]:6.1f} ms  max {max(ms):6.1f} ms  (n={len(ms)})"


_CLIENT: httpx.Client | None = None


def audit(base: str) -> tuple[float, dict[str, Any]]:
    """GET /admin/audit on a kept-alive connection: its time, and its answer."""
    global _CLIENT
    if _CLIENT is None:
        _CLIENT = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=120)
    t = time.perf_counter()
    r = _CLIENT.get("/admin/audit")
    r.raise_for_status()
    return (time.perf_counter() - t) * 1000, r.json()["data"]


def audits_in_a_loop(base: str, stop: Any, times: Any) -> None:
    """In a process of its own, so its client does not take the GIL from the /healthz stream's."""
    while not stop.is_set():
        times.append(audit(base)[0])


def measure(base: str, started: float) -> None:
    # The checker starts from the first order: until its watermark is up to date, the answer says so.
    catch_up: list[float] = []
    while True:
        ms, data = audit(base)
        catch_up.append(ms)
        if "catchingUp" not in data:
            break
        time.sleep(1)
    print(f"  checker up to date {time.monotonic() - started:.0f} s after the start; GET /admin/audit meanwhile: "
          f"median {statistics.median(catch_up):.0f} ms, max {max(catch_up):.0f} ms")
    times = [audit(base)[0] for _ in range(10)]
    last = audit(base)[1]
    print(f"  GET /admin/audit: median {statistics.median(times):.0f} ms, max {max(times):.0f} ms; "
          f"consistent={last['consistent']} pending={last['pending']} violations={len(last['violations'])}")
    print(f"  /healthz, checker idle:          {summary(healthz_stream(base, 15))}")
    manager = multiprocessing.Manager()
    stop, looped = manager.Event(), manager.list()
    loop = multiprocessing.get_context("spawn").Process(target=audits_in_a_loop, args=(base, stop, looped))
    loop.start()
    lat = healthz_stream(base, 15)
    stop.set()
    loop.join()
    looped = list(looped)
    print(f"  /healthz, GET /admin/audit looping: {summary(lat)}; {len(looped)} audits, "
          f"median {statistics.median(looped):.0f} ms")
    r = httpx.post(f"{base}/admin/audit/recount", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10)
    r.raise_for_status()
    t = time.monotonic()
    lat = []
    while True:
        lat += healthz_stream(base, 5)
        # Its progress and result at GET /admin/audit/recount (the audit shows it only while it runs).
        recount = _CLIENT.get("/admin/audit/recount").json()["data"] if _CLIENT else {}
        if recount["state"] != "running":
            break
    print(f"  /healthz, during a recount:     {summary(lat)}")
    print(f"  recount: {recount['state']} in about {time.monotonic() - t:.0f} s: {recount['orders']} orders, "
          f"{recount['goods']} goods, {recount['users']} users, {len(recount['violations'])} violations")


def offline_audit(env: dict[str, str], data_dir: Path) -> None:
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "shop", "audit", "--data-dir", str(data_dir)], env=env,
                       capture_output=True, text=True)
    report = json.loads(p.stdout) if p.stdout.strip().startswith("{") else {"error": p.stderr[-2000:]}
    print(f"  shop audit (offline): {time.perf_counter() - t:.1f} s, exit {p.returncode}, "
          f"consistent={report.get('consistent')} violations={len(report.get('violations', []))}")
    if p.returncode:
        print("   ", json.dumps(report)[:2000])


def wait_http(base: str, proc: subprocess.Popen[bytes], timeout_s: float = 180) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"the shop exited with {proc.returncode}")
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError("the shop did not answer /healthz")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", default="embedded", choices=["embedded", "cluster"])
    ap.add_argument("--orders", type=int, default=1_000_000)
    ap.add_argument("--port", type=int, default=18600)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="shop-bench-audit-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOP_")}
    env["SHOP_ADMIN_TOKEN"] = ADMIN
    name = f"benchaudit{os.getpid()}"
    config = ClusterConfig(db="postgresql", port=a.port, data_dir=work, name=name)
    if a.mode == "embedded":
        urls = {s: Settings(data_dir=work).db_url(s) for s in SERVICES}
    else:
        urls = {s: config.db_url(s) for s in SERVICES}
        ensure_databases(config.db_base_url(), [f"{name}_{s}" for s in SERVICES], fresh=True)
    try:
        for s in SERVICES:
            migrate_service(s, urls[s])
        t = time.perf_counter()
        rows = shop_rows(a.orders)
        asyncio.run(fill(urls, rows))
        counts = {f"{s}.{tb}": len(r) for s, tables in rows.items() for tb, r in tables.items()}
        del rows
        print(f"{a.mode}: filled {a.orders} orders in {time.perf_counter() - t:.0f} s: {counts}")
        if a.mode == "embedded":
            offline_audit(env, work)
            argv = [sys.executable, "-m", "shop", "run", "--data-dir", str(work), "--port", str(a.port)]
            base = f"http://127.0.0.1:{a.port}"
        else:
            offline_audit({**env, **{f"SHOP_{s.upper()}_DB_URL": urls[s] for s in SERVICES}}, work)
            argv = [sys.executable, "-m", "shop", "cluster", "up", "--db", "postgresql", "--port", str(a.port),
                    "--data-dir", str(work), "--name", name]
            base = f"http://127.0.0.1:{config.http_port('web')}"
        log = (work / "shop.log").open("ab")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        started = time.monotonic()
        try:
            wait_http(base, proc)
            measure(base, started)
        finally:
            stop(proc)
    finally:
        if a.mode == "cluster":
            clean_up(config, env)
        shutil.rmtree(work, ignore_errors=True)


def clean_up(config: ClusterConfig, env: dict[str, str]) -> None:
    """What the cluster left on the shared servers: its queues and exchanges, registry root, databases."""
    remove(config, config.environment(ADMIN, base=env))


if __name__ == "__main__":
    main()
