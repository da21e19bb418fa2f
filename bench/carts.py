#!/usr/bin/env python3
"""Carts against single-goods orders over real HTTP, in one run: orders/s and lines/s of each, the
ratio, and the audit after.

Starts `shop run` (or, with --cluster DB, `shop cluster up`; or uses --url), creates one goods for
the single-goods orders and --lines goods for the carts (huge stocks, 200.00 each: no shipping fee)
and --users users with big balances, then, --rounds times, runs wrk (one thread, --concurrency
connections) for --seconds with single-goods orders (one unit, as bench/orders_http.py places them)
and then for --seconds with carts (one unit of each of the --lines goods), each after an unmeasured
--warmup run of the same kind. Afterwards: the audit once quiet, and every goods' stock down by
exactly the orders that succeeded (wrk leaves uncounted at most one request per connection in
flight at its end, so up to --concurrency more), and `shop audit` on the stopped server's files.

The servers, the load generator and this script share the machine: orders/s are floors, the ratio
is the figure to compare. The load is wrk's (never httpx: it costs as much per request as the server).

    .venv/bin/python bench/carts.py [--seconds 10] [--concurrency 32] [--lines 5] [--rounds 2]
    .venv/bin/python bench/carts.py --cluster postgresql
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

import httpx
from orders_http import (
    PRICE,
    STOCK,
    WRK_LUA,
    ClusterServer,
    Server,
    cpu_seconds,
    data,
    order_body,
    quiet_audit,
    wrk,
    wrk_result,
)
from orders_http import (
    set_up as orders_http_set_up,
)


def cart_body(user_id: str, goods: list[str]) -> dict[str, Any]:
    """One unit of each goods at PRICE: over 100.00, so no shipping fee; 1.00 from the balance."""
    total = PRICE * len(goods)
    return {"userId": user_id, "items": [{"goodsId": g, "goodsNumber": 1, "goodsPrice": str(PRICE)} for g in goods],
            "shippingFee": "0.00", "orderAmount": str(total), "moneyPaid": "1.00", "address": "bench"}


def lua(bodies: list[dict[str, Any]], users: list[tuple[str, dict[str, str]]]) -> str:
    """WRK_LUA (bench/orders_http.py) over these bodies, the i-th with the i-th user's token."""
    return WRK_LUA % (", ".join("[[" + json.dumps(b) + "]]" for b in bodies),
                      ", ".join('"' + auth["Authorization"].split()[1] + '"' for _, auth in users))


async def set_up(c: httpx.AsyncClient, admin: dict[str, str], n_users: int,
                 n_lines: int) -> tuple[str, list[str], list[tuple[str, dict[str, str]]]]:
    """orders_http's users and goods (the single-goods orders'), and a goods for each cart line."""
    single, users = await orders_http_set_up(c, admin, n_users)
    lines = []
    for i in range(n_lines):
        body = {"goodsName": f"bench-line-{i}", "goodsNumber": STOCK, "goodsPrice": str(PRICE)}
        lines.append(str(data(await c.post("/admin/goods", headers=admin, json=body))["goodsId"]))
    return single, lines, users


async def stocks(c: httpx.AsyncClient, admin: dict[str, str], goods: list[str]) -> list[int]:
    return [data(await c.get(f"/admin/goods/{g}", headers=admin))["goodsNumber"] for g in goods]


async def bench(url: str, admin_token: str, args: argparse.Namespace, pid: int | None) -> dict[str, Any]:
    admin = {"Authorization": f"Bearer {admin_token}"}
    async with httpx.AsyncClient(base_url=url, timeout=60.0) as c:
        single, lines, users = await set_up(c, admin, args.users, args.lines)
        print(f"set-up: 1 + {len(lines)} goods, {len(users)} users", flush=True)
        scripts = {"single": lua([order_body(uid, single) for uid, _ in users], users),
                   "cart": lua([cart_body(uid, lines) for uid, _ in users], users)}
        goods = {"single": [single], "cart": lines}
        before = await stocks(c, admin, [single, *lines])
        runs: dict[str, list[dict[str, Any]]] = {"single": [], "cart": []}
        warm: dict[str, int] = {"single": 0, "cart": 0}  # succeeded in the warm-ups: they took stock too
        for _ in range(args.rounds):
            for kind in ("single", "cart"):
                if args.warmup > 0:
                    w = wrk_result(await asyncio.to_thread(wrk, url, scripts[kind], args.concurrency, args.warmup),
                                   args.warmup)
                    warm[kind] += w["ok"]
                    runs[kind].append({**w, "warmup": True})
                cpu = cpu_seconds(pid)
                r = wrk_result(await asyncio.to_thread(wrk, url, scripts[kind], args.concurrency, args.seconds),
                               args.seconds)
                cpu_after = cpu_seconds(pid)
                r["cpu_s"] = cpu_after - cpu if cpu is not None and cpu_after is not None else None
                runs[kind].append(r)
                print(f"{kind}: {r['rate']:.0f} orders/s, p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, "
                      f"errors {r['errors'] or 0}", flush=True)
        report = await quiet_audit(c, admin)
        after = await stocks(c, admin, [single, *lines])
    taken = dict(zip([single, *lines], (b - a for b, a in zip(before, after, strict=True)), strict=True))
    out: dict[str, Any] = {"report": report, "stock_ok": True, "errors": 0}
    for kind in ("single", "cart"):
        measured = [r for r in runs[kind] if not r.get("warmup")]
        ok = sum(r["ok"] for r in measured)
        counted = ok + warm[kind]
        n_runs = len(runs[kind])  # each wrk run may leave one request per connection uncounted
        for g in goods[kind]:
            out["stock_ok"] &= counted <= taken[g] <= counted + n_runs * args.concurrency
        out["errors"] += sum(sum(r["errors"].values()) for r in runs[kind])
        rate = ok / (args.seconds * len(measured))
        cpu = [r["cpu_s"] for r in measured]
        # The server's CPU per order: steadier than orders/s on a machine shared with other work.
        cpu_ms = 1000 * sum(cpu) / ok if ok and None not in cpu else None
        out[kind] = {"orders_s": rate, "lines_s": rate * len(goods[kind]), "ok": ok, "warm_ok": warm[kind],
                     "taken": taken[goods[kind][0]], "cpu_ms": cpu_ms,
                     "p50": sorted(r["p50"] for r in measured)[len(measured) // 2],
                     "p99": max(r["p99"] for r in measured)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=10.0, help="each measured wrk run (default 10)")
    p.add_argument("--warmup", type=float, default=2.0, help="an unmeasured wrk run before each (default 2)")
    p.add_argument("--rounds", type=int, default=2, help="single then cart, this many times (default 2)")
    p.add_argument("--concurrency", type=int, default=32, help="wrk's connections (default 32)")
    p.add_argument("--users", type=int, default=64, help="users placing orders (default 64)")
    p.add_argument("--lines", type=int, default=5, help="a cart's lines (default 5)")
    p.add_argument("--cluster", choices=["postgresql", "mysql"], help="bench `shop cluster up --db` instead")
    p.add_argument("--url", help="bench a running server instead of starting one")
    p.add_argument("--admin-token", default=os.environ.get("SHOP_ADMIN_TOKEN"), help="with --url")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="set in the started server's environment (repeatable)")
    args = p.parse_args()
    if not 1 <= args.lines <= 20:
        p.error("--lines must be between 1 and 20")
    server: Server | None = None
    if args.url:
        if not args.admin_token:
            p.error("--url needs --admin-token or SHOP_ADMIN_TOKEN")
        url, token = args.url.rstrip("/"), args.admin_token
    else:
        env = dict(e.split("=", 1) for e in args.env)
        server = ClusterServer(args.cluster, env) if args.cluster else Server(False, env)
        server.start()
        url, token = server.url, server.admin_token
    mode = f"cluster on {args.cluster}" if args.cluster else ("embedded" if server else url)
    print(f"{mode}; wrk 1 thread, {args.concurrency} connections, {args.users} users, {args.rounds} x "
          f"({args.seconds:g}s single + {args.seconds:g}s {args.lines}-line carts), {os.cpu_count()} CPUs", flush=True)
    try:
        pid = server.proc.pid if server is not None and server.proc is not None and not args.cluster else None
        out = asyncio.run(bench(url, token, args, pid))
    finally:
        if server is not None:
            server.stop()
    offline = server.offline_audit() if server is not None and not args.cluster else None
    if server is not None:
        server.cleanup()

    s, c = out["single"], out["cart"]
    print(f"audit: {out['report']}")
    if offline is not None:
        print(f"shop audit on the stopped server's files: {offline}")
    for kind, r in (("single", s), (f"cart x{args.lines}", c)):
        cpu = f" server_cpu_ms_per_order={r['cpu_ms']:.2f}" if r["cpu_ms"] is not None else ""
        print(f"{kind:>9}: orders/s={r['orders_s']:.0f} lines/s={r['lines_s']:.0f} p50_ms={r['p50']:.1f} "
              f"p99_ms={r['p99']:.1f} ok={r['ok']} (+{r['warm_ok']} warm-up) stock_taken={r['taken']}{cpu}")
    ratio = (f"ratio cart/single: orders/s {c['orders_s'] / s['orders_s']:.2f}, "
             f"lines/s {c['lines_s'] / s['lines_s']:.2f}")
    if s["cpu_ms"] is not None and c["cpu_ms"] is not None:
        ratio += f", server CPU per order {c['cpu_ms'] / s['cpu_ms']:.2f}"
    print(ratio)
    consistent = out["report"]["consistent"] and out["report"]["pending"] == 0 and out["stock_ok"]
    if offline is not None:
        consistent = consistent and offline.get("consistent") is True and offline["exit"] == 0
    print(f"errors={out['errors']} stock_ok={out['stock_ok']} consistent={consistent}")
    sys.exit(0 if consistent and out["errors"] == 0 else 1)


if __name__ == "__main__":
    main()
