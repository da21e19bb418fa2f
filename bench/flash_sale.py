#!/usr/bin/env python3
"""A flash sale: 10,000 attempts from 500 users for 100 units, embedded and in the cluster.

For each mode it starts a fresh shop (`shop run`, or `shop cluster up --db DB` with one instance of
each service; bench/orders_http.py's Server and ClusterServer), creates 500 users with big balances
and logs them in (bench/orders_http.set_up), and one hot goods with 100 units at orders_http's price.
Then, with wrk as the load generator (one thread, -c64):

1. the sale: wrk's Lua script (orders_http.wrk_lua's bodies and tokens, each request a user's order
   for one unit at the right price, moneyPaid 1.00) counts the answers and stops the thread at the
   10,000th (`wrk.thread:stop()`, then SIGINT: see wrk_until). That is as close to 10,000 attempts
   as wrk allows: the requests in flight on the other 63 connections when it stops reach the shop
   but are not counted, and the answers counted may pass 10,000 by the few read in the same turn of
   wrk's loop; the table shows both counts (wrk's, and the order service's shop_orders_total). The
   time to sell out runs from wrk's launch to the 100th order's confirmTime (GET /admin/orders, the
   order service's own clock, same machine);
2. the same orders against the sold-out goods for --seconds, then GET /healthz for --seconds, each
   wrk -c64: both rates and their ratio (the sold-out answer's cost against the cheapest request);
3. the proof: exactly 100 confirmed (wrk's 200s, GET /admin/orders?status=1, the goods' stock 0)
   and the audit (GET /admin/audit, consistent with pending 0; embedded, also `shop audit` on the
   stopped server's files).

It measures whatever the server does: with a sold-out gate at the front door, step 2's rate shows it.
On one machine, wrk and the shop share the CPUs: the figures are the shop's floor, not its ceiling.

    .venv/bin/python bench/flash_sale.py [--mode embedded|cluster|both] [--db postgresql|mysql] [--seconds 10]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from orders_http import (  # noqa: E402 - the sibling script, found from any working directory
    PRICE,
    ClusterServer,
    Server,
    data,
    quiet_audit,
    set_up,
    wrk,
    wrk_lua,
    wrk_result,
)

UNITS = 100
USERS = 500
ATTEMPTS = 10_000
CONCURRENCY = 64
SALE_BOUND_S = 600  # wrk's -d for the sale: only a bound, the Lua counter (and wrk_until) end it

# Appended to orders_http's script: count the answers by status, 200 and `refused` (and stop at
# `limit`, if any); done() reads each thread's counts and prints them on one line that count_line() parses.
COUNT_LUA = """
local limit, marker, refused_status = %d, "%s", %d
answers, ok, refused = 0, 0, 0
response = function(status, headers, body)
  answers = answers + 1
  if status == 200 then ok = ok + 1 elseif status == refused_status then refused = refused + 1 end
  if limit > 0 and answers == limit then
    wrk.thread:stop()
    io.open(marker, "w"):close()  -- wrk's main thread sleeps out -d: wrk_until() interrupts it
  end
end
local threads = {}
setup = function(thread) table.insert(threads, thread) end
done = function(summary, latency, requests)
  local a, o, r = 0, 0, 0
  for _, t in ipairs(threads) do a = a + t:get("answers"); o = o + t:get("ok"); r = r + t:get("refused") end
  io.write(string.format("flash answers=%%d ok=%%d refused=%%d\\n", a, o, r))
end
"""


def counting(limit: int = 0, marker: str = "", refused: int = 409) -> str:
    """The counting script; `refused`: the status counted as refused (409: sold out)."""
    return COUNT_LUA % (limit, marker, refused)


def wrk_until(url: str, script: str, concurrency: int, limit: int) -> str:
    """wrk's report for a script that stops its thread after `limit` answers (one thread, as
    orders_http.wrk runs it). wrk's main thread sleeps for its whole -d whatever its threads do, so
    the script leaves a file behind when it stops, and SIGINT (wrk's own way to end early) follows."""
    with tempfile.TemporaryDirectory(prefix="flash-wrk-") as tmp:
        marker, lua = Path(tmp) / "stopped", Path(tmp) / "sale.lua"
        lua.write_text(script + counting(limit, str(marker)))
        proc = subprocess.Popen(["wrk", "-t1", f"-c{concurrency}", f"-d{SALE_BOUND_S}s", "--latency", "-s", str(lua),
                                 url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while proc.poll() is None and not marker.exists():
            time.sleep(0.02)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"wrk exited with {proc.returncode}: {err}")
    return out


def count_line(out: str) -> dict[str, int]:
    m = re.search(r"flash answers=(\d+) ok=(\d+) refused=(\d+)", out)
    if m is None:
        raise SystemExit(f"no counts from wrk's script:\n{out}")
    answers, ok, refused = (int(x) for x in m.groups())
    return {"answers": answers, "ok": ok, "refused": refused, "other": answers - ok - refused}


def rate(out: str, seconds: float) -> dict[str, Any]:
    """Every answer's rate (wrk_result counts only the 2xx as ok), with latencies and socket errors."""
    r = wrk_result(out, seconds)
    total = r["ok"] + r["errors"].get("non-2xx", 0)
    return {"total": total, "rate": total / seconds, "p50": r["p50"], "p99": r["p99"],
            "socket_errors": r["errors"].get("socket", 0)}


def confirmed_orders(c: httpx.Client, admin: dict[str, str]) -> list[dict[str, Any]]:
    out, cursor = [], None
    while True:
        page = data(c.get("/admin/orders", headers=admin,
                          params={"status": 1, "limit": 100, **({"cursor": cursor} if cursor else {})}))
        out += page["items"]
        if not (cursor := page["nextCursor"]):
            return out


def orders_placed(metrics_urls: list[str]) -> int | None:
    """shop_orders_total over every outcome and process, less the front door's sold-out answers
    counted in the same process (the embedded shop's): the attempts that reached the order service."""
    total = 0.0
    try:
        for u in metrics_urls:
            text = httpx.get(u, timeout=10).text
            total += sum(float(x.split()[-1]) for x in text.splitlines() if x.startswith("shop_orders_total{"))
            total -= sum(float(x.split()[-1]) for x in text.splitlines() if x.startswith("shop_sold_out_answers_total"))
    except httpx.HTTPError:
        return None
    return int(total)


def metrics_urls(server: Server) -> list[str]:
    """Where the order service's /metrics are: the one process, or each order process of the cluster."""
    if not isinstance(server, ClusterServer):
        return [f"{server.url}/metrics"]
    targets = json.loads((server.data_dir / "prometheus-targets.json").read_text())
    return [f"http://{t['targets'][0]}/metrics" for t in targets if t["labels"]["role"] == "order"]


def stamp(iso: str) -> float:
    t = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()


def sale(url: str, admin_token: str, seconds: float, metrics_at: list[str]) -> dict[str, Any]:
    admin = {"Authorization": f"Bearer {admin_token}"}
    t = time.monotonic()
    with httpx.Client(base_url=url, timeout=60) as c:
        # set_up's own goods (a huge stock) stays untouched; the sale is for a goods of 100 units.
        _, users = asyncio.run(_set_up(url, admin, USERS))
        goods = {"goodsName": "flash", "goodsNumber": UNITS, "goodsPrice": str(PRICE)}
        goods_id = data(c.post("/admin/goods", headers=admin, json=goods))["goodsId"]
        print(f"set-up: {len(users)} users logged in, 1 goods of {UNITS} units ({time.monotonic() - t:.1f}s)",
              flush=True)
        orders_lua = wrk_lua(goods_id, users)

        started = time.time()
        out = wrk_until(url, orders_lua, CONCURRENCY, ATTEMPTS)
        wall = time.time() - started
        counts = count_line(out)
        placed = orders_placed(metrics_at)
        confirmed = confirmed_orders(c, admin)
        times = sorted(stamp(o["confirmTime"]) for o in confirmed if o["goodsId"] == goods_id)
        sold_out_s = times[UNITS - 1] - started if len(times) >= UNITS else None

        refused = wrk(url, orders_lua + counting(), CONCURRENCY, seconds)
        # The same counting script (without the orders' request function): the same cost in wrk.
        healthz = wrk(f"{url}/healthz", counting(), CONCURRENCY, seconds)
        report = asyncio.run(_audit(url, admin))
        stock = data(c.get(f"/admin/goods/{goods_id}", headers=admin))["goodsNumber"]
    return {"counts": counts, "placed": placed, "wall_s": wall, "sold_out_s": sold_out_s, "confirmed": len(times),
            "confirmed_all": len(confirmed), "stock": stock, "refused": rate(refused, seconds),
            "refused_counts": count_line(refused), "healthz": rate(healthz, seconds),
            "healthz_counts": count_line(healthz), "audit": report}


async def _set_up(url: str, admin: dict[str, str], n: int) -> tuple[str, list[tuple[str, dict]]]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as c:
        return await set_up(c, admin, n)


async def _audit(url: str, admin: dict[str, str]) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as c:
        return await quiet_audit(c, admin, timeout_s=60)


def run_mode(mode: str, db: str, seconds: float) -> bool:
    server = Server(pin=False) if mode == "embedded" else ClusterServer(db)
    label = "embedded (shop run, SQLite)" if mode == "embedded" else f"cluster (shop cluster up --db {db})"
    print(f"\n== {label}", flush=True)
    server.start()
    try:
        r = sale(server.url, server.admin_token, seconds, metrics_urls(server))
    finally:
        server.stop()
    offline = server.offline_audit() if mode == "embedded" else None
    server.cleanup()
    return table(label, r, offline, seconds)


def table(label: str, r: dict[str, Any], offline: dict[str, Any] | None, seconds: float) -> bool:
    c, audit = r["counts"], r["audit"]
    ratio = r["refused"]["rate"] / r["healthz"]["rate"] if r["healthz"]["rate"] else float("nan")
    sold_out = f"{r['sold_out_s']:.2f} s" if r["sold_out_s"] is not None else "never (fewer than 100 confirmed)"
    exact = c["ok"] == UNITS and r["confirmed"] == UNITS and r["confirmed_all"] == UNITS and r["stock"] == 0
    audit_ok = audit["consistent"] and audit["pending"] == 0 and (offline is None or (
        offline.get("consistent") is True and offline["exit"] == 0))
    rc = r["refused_counts"]
    rows = [
        ("attempts answered (wrk, -c64)", f"{c['answers']} in {r['wall_s']:.1f} s: {c['ok']} x 200, "
                                          f"{c['refused']} x 409, {c['other']} other"),
        ("attempts that reached the order service", f"{r['placed']} (shop_orders_total)"),
        ("time to sell out (launch -> 100th confirmTime)", sold_out),
        (f"sold-out answers/s ({seconds:g} s)", f"{r['refused']['rate']:.0f} (p50 {r['refused']['p50']:.1f} ms, "
                                                f"p99 {r['refused']['p99']:.1f} ms; {rc['refused']} x 409, "
                                                f"{rc['ok']} x 200, {rc['other']} other)"),
        (f"GET /healthz/s ({seconds:g} s)", f"{r['healthz']['rate']:.0f} (p50 {r['healthz']['p50']:.1f} ms, "
                                            f"p99 {r['healthz']['p99']:.1f} ms)"),
        ("sold-out / healthz", f"{ratio:.3f}"),
        ("socket errors (sold-out, healthz)", f"{r['refused']['socket_errors']}, {r['healthz']['socket_errors']}"),
        ("exactly 100", f"{exact}: wrk 200s {c['ok']}, admin confirmed {r['confirmed']} "
                        f"(all goods {r['confirmed_all']}), stock {r['stock']}"),
        ("audit", f"consistent={audit['consistent']} pending={audit['pending']} "
                  f"violations={len(audit['violations'])}"
                  + (f"; shop audit on the files: exit {offline['exit']} consistent={offline.get('consistent')}"
                     if offline is not None else "")),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"\n{label}: {ATTEMPTS} attempts from {USERS} users for {UNITS} units")
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    return exact and audit_ok and rc["ok"] == 0 and rc["other"] == 0 and \
        r["healthz_counts"]["ok"] == r["healthz_counts"]["answers"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=["embedded", "cluster", "both"], default="both")
    p.add_argument("--db", choices=["postgresql", "mysql"], default="postgresql", help="the cluster's database")
    p.add_argument("--seconds", type=float, default=10.0, help="each sold-out and /healthz run (default 10)")
    args = p.parse_args()
    try:
        subprocess.run(["wrk", "-v"], capture_output=True)
    except FileNotFoundError:
        raise SystemExit("this needs wrk on PATH (Debian: apt-get install wrk)") from None
    modes = ["embedded", "cluster"] if args.mode == "both" else [args.mode]
    ok = [run_mode(m, args.db, args.seconds) for m in modes]
    sys.exit(0 if all(ok) else 1)


if __name__ == "__main__":
    main()
