#!/usr/bin/env python3
"""Compensation latency: orders at a fixed rate, open loop, 1 in 10 failing at a random saga step;
the failed orders' answer and the time until every participant has undone its step.

For each mode it starts a fresh shop with SHOP_FAULTS=1 (`shop run`, or `shop cluster up --db DB`:
bench/orders_http.py's Server and ClusterServer), creates users, one goods and one coupon per order
(so every step of the saga has something to undo), then sends --count orders (one unit at 200.00,
coupon 1.00, moneyPaid 1.00) at --rate per second open loop (bench/openloop.py). Before every 10th
order the same schedule sends POST /admin/faults arming an "error" with times=1 at a point drawn at
random from the saga's (FAULT_POINTS): the next order to pass that point fails there, whichever it
is, so about 1 in 10 fail, at a random step. After the shop is quiet it reads each failed order's
timeline (GET /admin/orders/{id}/timeline: every participant's facts, its compensation included;
the shop's own millisecond clocks, same machine) and reports

- the failed orders' answer latency p50/p99 (from the scheduled send) and how many waited the
  whole settle (SETTLE_S: the Settler's bound in infra/messaging/relay.py);
- the time until restored: from the send to the failed order's last fact p50/p99
  (targets: <= 1 s p99 embedded, <= 3 s distributed);
- the confirmed orders' latency, for comparison, and the audit.

    .venv/bin/python bench/compensation.py [--mode embedded|cluster|both] [--rate 40] [--count 600] [--json]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import openloop  # noqa: E402 - the sibling scripts, found from any working directory
from notify import epoch, gather_limited  # noqa: E402
from orders_http import (  # noqa: E402
    add_shop_args,
    data,
    order_body,
    quiet_audit,
    session_cpu_s,
    set_up,
    shop_modes,
    shop_server,
)

FAULT_POINTS = ("order.after_pre_order", "order.after_reduce_stock", "order.after_use_coupon",
                "order.after_reduce_money", "order.before_confirm")
LIMIT_MS = {"embedded": 1000.0, "cluster": 3000.0}
SETTLE_S = 2.0
EVERY = 10


async def prepare(url: str, admin: dict[str, str], count: int, users: int) -> list[tuple[dict[str, Any], str]]:
    """Each order's body (with a coupon of its own) and its user's bearer token."""
    async with httpx.AsyncClient(base_url=url, timeout=120) as c:
        goods_id, us = await set_up(c, admin, users)

        async def one(i: int) -> tuple[dict[str, Any], str]:
            uid, auth = us[i % len(us)]
            cid = data(await c.post("/admin/coupons", headers=admin, json={"userId": uid, "couponPrice": "1.00"}))
            return {**order_body(uid, goods_id), "couponId": cid["couponId"]}, auth["Authorization"]
        return await gather_limited(16, [one(i) for i in range(count)])


def requests(url: str, token: str, orders: list[tuple[dict[str, Any], str]],
             seed: int) -> tuple[list[bytes], list[int]]:
    """The schedule: the orders, with an arming request before every EVERY-th; the indexes of the orders."""
    rnd = random.Random(seed)
    out, idx = [], []
    for i, (body, auth) in enumerate(orders):
        if i % EVERY == EVERY // 2:
            arm = {"point": rnd.choice(FAULT_POINTS), "action": "error", "times": 1}
            out.append(openloop.encode(url, "POST", "/admin/faults", orjson.dumps(arm),
                                       {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}))
        idx.append(len(out))
        out.append(openloop.encode(url, "POST", "/order/confirm", orjson.dumps(body),
                                   {"Content-Type": "application/json", "Authorization": auth}))
    return out, idx


async def restored(url: str, admin: dict[str, str], failed: list[tuple[openloop.Answer, str]]) -> tuple[list[float],
                                                                                                     dict[str, Any]]:
    """Each failed order's time from its send to its last fact, and the audit once quiet."""
    async with httpx.AsyncClient(base_url=url, timeout=120) as c:
        report = await quiet_audit(c, admin, timeout_s=120)

        async def last(a: openloop.Answer, order_id: str) -> float:
            events = data(await c.get(f"/admin/orders/{order_id}/timeline", headers=admin))["events"]
            return max(epoch(e["at"]) for e in events) - a.sent_wall
        return await gather_limited(16, [last(a, o) for a, o in failed]), report


def run_mode(mode: str, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    server = shop_server(mode, args.db, {"SHOP_FAULTS": "1", **env})
    print(f"== {mode}: starting the shop", file=sys.stderr, flush=True)
    server.start()
    try:
        admin = {"Authorization": f"Bearer {server.admin_token}"}
        t = time.monotonic()
        orders = asyncio.run(prepare(server.url, admin, args.count, args.users))
        reqs, idx = requests(server.url, server.admin_token, orders, args.seed)
        print(f"   set-up: {len(orders)} orders with a coupon each ({time.monotonic() - t:.0f}s)",
              file=sys.stderr, flush=True)
        sid = server.proc.pid if server.proc is not None else None
        cpu0 = session_cpu_s(sid)
        answers, lag = asyncio.run(openloop.run(server.url, reqs, args.rate * (1 + 1 / EVERY)))
        cpu1 = session_cpu_s(sid)
        mine = [answers[i] for i in idx]
        arms_ok = sum(1 for i, a in enumerate(answers) if i not in set(idx) and a.status == 200)
        ok = [a for a in mine if a.status == 200]
        failed, other = [], {}
        for a in mine:
            if a.status == 200:
                continue
            answer = orjson.loads(a.body) if a.status else {}
            order_id = (answer.get("data") or {}).get("orderId")
            if order_id:
                failed.append((a, order_id))
            else:  # refused before a pre-order (503 by the admission control when saturated), or broken
                kind = f"{a.status} {answer.get('code')}"
                other[kind] = other.get(kind, 0) + 1
        times, report = asyncio.run(restored(server.url, admin, failed))
    finally:
        server.stop()
        server.cleanup()
    flat = [a.latency for a, _ in failed]
    cpu_ms = (cpu1 - cpu0) * 1000 / len(mine) if cpu0 is not None and cpu1 is not None else None
    return {"mode": mode, "rate": args.rate, "count": len(mine), "confirmed": len(ok), "failed": len(failed),
            "other": other, "faults_armed": arms_ok,
            "failed_answer_p50_ms": openloop.pct(flat, 0.5), "failed_answer_p99_ms": openloop.pct(flat, 0.99),
            "failed_waited_settle": sum(1 for x in flat if x >= SETTLE_S),
            "restored_p50_ms": openloop.pct(times, 0.5), "restored_p99_ms": openloop.pct(times, 0.99),
            "restored_max_ms": openloop.pct(times, 1.0), "limit_ms": LIMIT_MS[mode],
            "confirmed_p50_ms": openloop.pct([a.latency for a in ok], 0.5),
            "confirmed_p99_ms": openloop.pct([a.latency for a in ok], 0.99), "send_lag_max_ms": lag * 1000,
            "server_cpu_ms_per_order": cpu_ms, "consistent": report["consistent"] and report["pending"] == 0,
            "load": os.getloadavg()[0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_shop_args(p)
    p.add_argument("--rate", type=float, default=40.0, help="orders per second (default 40)")
    p.add_argument("--count", type=int, default=600, help="orders (default 600: 15 s at 40/s, ~60 failing)")
    p.add_argument("--users", type=int, default=32, help="users placing the orders (default 32)")
    p.add_argument("--seed", type=int, default=13, help="the random fault points' seed")
    p.add_argument("--json", action="store_true", help="print one JSON dict per mode instead of the summary")
    args = p.parse_args()
    modes, env = shop_modes(p, args)
    good = True
    for mode in modes:
        r = run_mode(mode, args, env)
        # Refusals at the front door (saturation) change nothing; anything else is a defect.
        good = good and set(r["other"]) <= {"503 SHOP_SERVICE_UNAVAILABLE"} and r["consistent"]
        if args.json:
            print(json.dumps(r), flush=True)
            continue
        cpu = r["server_cpu_ms_per_order"]
        print(f"compensation {mode} {r['rate']:g}/s n={r['count']} failed={r['failed']}: answer "
              f"p50={r['failed_answer_p50_ms']:.0f}ms p99={r['failed_answer_p99_ms']:.0f}ms waited_settle="
              f"{r['failed_waited_settle']} | restored p50={r['restored_p50_ms']:.0f}ms "
              f"p99={r['restored_p99_ms']:.0f}ms "
              f"(limit {r['limit_ms']:g}, ratio {r['restored_p99_ms'] / r['limit_ms']:.2f}) | confirmed "
              f"p50={r['confirmed_p50_ms']:.0f}ms p99={r['confirmed_p99_ms']:.0f}ms other={r['other']} "
              f"consistent={r['consistent']} send_lag_max={r['send_lag_max_ms']:.1f}ms "
              f"server_cpu_ms_per_order={cpu if cpu is None else round(cpu, 3)} load1={r['load']:.1f}", flush=True)
    sys.exit(0 if good else 1)


if __name__ == "__main__":
    main()
