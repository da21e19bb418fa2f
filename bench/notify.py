#!/usr/bin/env python3
"""Signed payment notifications at a fixed rate, open loop: the answer's latency and the fan-out's.

For each mode it starts a fresh shop (`shop run`, or `shop cluster up --db DB`: bench/orders_http.py's
Server and ClusterServer), creates users and one goods (orders_http.set_up), places --count orders
(one unit at 200.00, moneyPaid 1.00: payAmount 199.00) and opens a payment for each (set-up, through
httpx, not measured). Then, as the platform would, it signs one notification per payment with the
platform's private key (the sandbox's key pair in the shop's data dir, as tests/e2e/test_payments.py
does) and sends them all to POST /pay/callbackPayment at --rate per second, open loop: each at its
scheduled time whatever the earlier answers did (bench/openloop.py: a raw asyncio HTTP/1.1 client
with pre-encoded requests, why not wrk or httpx is said there). It reports

- the answer's latency p50/p99/max, measured from the scheduled send (issue 13 item 3: p99 <= 5 ms);
- the fan-out: from each notification's send to the last of the order's `order.paid`, the user's
  `user.points_added` and the log's `log.recorded` (GET /admin/orders/{id}/timeline after the run,
  the shop's own clocks, same machine, millisecond timestamps) p50/p99/max (limit 1 s p99);
- the server's CPU per notification (every process of the shop; its fan-out included), and with
  --per-process each process's, PostgreSQL's and RabbitMQ's (bench/cpu_per_process.py's roles),
  with --profile DIR also where each shop process's goes (py-spy, as cpu_per_process.py --profile);
- the audit after the shop is quiet, and that every order is paid exactly once.

    .venv/bin/python bench/notify.py [--mode embedded|cluster|both] [--rate 500] [--count 2500] [--json]
        [--per-process] [--profile DIR]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import openloop  # noqa: E402 - the sibling scripts, found from any working directory
from cpu_per_process import by_role, profile_report, role_cpu, start_profiles  # noqa: E402
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

from shop.infra.signing import Signer  # noqa: E402

ANSWER_LIMIT_MS = 5.0
FANOUT_LIMIT_MS = 1000.0
FANOUT_KINDS = ("order.paid", "user.points_added", "log.recorded")


async def gather_limited(n: int, coros: list[Any]) -> list[Any]:
    sem = asyncio.Semaphore(n)

    async def one(c: Any) -> Any:
        async with sem:
            return await c
    return await asyncio.gather(*(one(c) for c in coros))


async def payments(url: str, admin: dict[str, str], count: int, users: int) -> list[dict[str, Any]]:
    """`count` confirmed orders, each with its open payment."""
    async with httpx.AsyncClient(base_url=url, timeout=120) as c:
        goods_id, us = await set_up(c, admin, users)

        async def pay(i: int) -> dict[str, Any]:
            uid, auth = us[i % len(us)]
            order = data(await c.post("/order/confirm", json=order_body(uid, goods_id), headers=auth))
            return data(await c.post("/pay/createPayment", headers=auth,
                                     json={"orderId": order["orderId"], "payAmount": order["payAmount"]}))
        pays = await gather_limited(16, [pay(i) for i in range(count)])
        await quiet_audit(c, admin, timeout_s=120)  # the orders' own messages handled: not in the run
        await asyncio.sleep(1.0)
        return pays


def notifications(url: str, private_pem: bytes, pays: list[dict[str, Any]]) -> list[bytes]:
    """One signed notification per payment, as the platform sends it (API.md), pre-encoded."""
    signer = Signer(private_pem)
    out = []
    for p in pays:
        raw = orjson.dumps({"payId": p["payId"], "isPaid": 2, "payAmount": p["payAmount"],
                            "tradeNo": "T-" + os.urandom(6).hex(), "notifyId": os.urandom(6).hex()})
        ts, nonce = str(int(time.time())), os.urandom(8).hex()
        headers = {"Content-Type": "application/json", "X-Pay-Timestamp": ts, "X-Pay-Nonce": nonce,
                   "X-Pay-Signature": signer.sign(ts, nonce, raw)}
        out.append(openloop.encode(url, "POST", "/pay/callbackPayment", raw, headers))
    return out


def epoch(at: str) -> float:
    return datetime.fromisoformat(at.rstrip("Z")).replace(tzinfo=UTC).timestamp()


async def fan_out(url: str, admin: dict[str, str], pays: list[dict[str, Any]],
                  answers: list[openloop.Answer]) -> tuple[list[float], int, dict[str, Any]]:
    """Each payment's fan-out time (seconds, from its send to the last of FANOUT_KINDS), how many
    payments miss one of them (or have one twice), and the audit once the shop is quiet."""
    async with httpx.AsyncClient(base_url=url, timeout=120) as c:
        report = await quiet_audit(c, admin, timeout_s=120)

        async def timeline(p: dict[str, Any]) -> list[dict[str, Any]]:
            return data(await c.get(f"/admin/orders/{p['orderId']}/timeline", headers=admin))["events"]
        lines = await gather_limited(16, [timeline(p) for p in pays])
    times, incomplete = [], 0
    for a, events in zip(answers, lines, strict=True):
        ats = {k: [epoch(e["at"]) for e in events if e["kind"] == k] for k in FANOUT_KINDS}
        if any(len(v) != 1 for v in ats.values()):
            incomplete += 1
            continue
        times.append(max(v[0] for v in ats.values()) - a.sent_wall)
    return times, incomplete, report


def run_mode(mode: str, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    # The sandbox: the pay service opens a payment only with a platform to send the customer to.
    server = shop_server(mode, args.db, {"SHOP_SANDBOX": "1", **env})
    print(f"== {mode}: starting the shop", file=sys.stderr, flush=True)
    server.start()
    try:
        admin = {"Authorization": f"Bearer {server.admin_token}"}
        t = time.monotonic()
        pays = asyncio.run(payments(server.url, admin, args.count, args.users))
        reqs = notifications(server.url, (server.data_dir / "sandbox_private.pem").read_bytes(), pays)
        print(f"   set-up: {len(pays)} orders with a payment, signed ({time.monotonic() - t:.0f}s)",
              file=sys.stderr, flush=True)
        sid = server.proc.pid if server.proc is not None else None
        roles = by_role(sid) if sid is not None and (args.per_process or args.profile) else {}
        before = role_cpu(roles)
        profiles = start_profiles(roles, len(reqs) / args.rate, args.profile) if args.profile else []
        cpu0 = session_cpu_s(sid)
        answers, lag = asyncio.run(openloop.run(server.url, reqs, args.rate))
        cpu1 = session_cpu_s(sid)
        after = role_cpu(roles)
        for role in sorted(roles):
            print(f"   {role:<24} {(after[role] - before[role]) * 1000 / len(reqs):6.2f} ms CPU per notification",
                  file=sys.stderr, flush=True)
        if profiles:
            profile_report(profiles, args.profile, sys.stderr)
        times, incomplete, report = asyncio.run(fan_out(server.url, admin, pays, answers))
    finally:
        server.stop()
        server.cleanup()
    ok = [a for a in answers if a.status == 200 and orjson.loads(a.body).get("success") is True]
    errors: dict[str, int] = {}
    for a in answers:
        if a not in ok:
            kind = f"{a.status} {a.body[:120].decode(errors='replace')}"
            errors[kind] = errors.get(kind, 0) + 1
    lat = [a.latency for a in ok]
    cpu_ms = (cpu1 - cpu0) * 1000 / len(answers) if cpu0 is not None and cpu1 is not None else None
    return {"mode": mode, "rate": args.rate, "count": len(answers), "ok": len(ok),
            "errors": len(answers) - len(ok), "error_kinds": errors, "answer_p50_ms": openloop.pct(lat, 0.5),
            "answer_p99_ms": openloop.pct(lat, 0.99), "answer_max_ms": openloop.pct(lat, 1.0),
            "send_lag_max_ms": lag * 1000, "fanout_p50_ms": openloop.pct(times, 0.5),
            "fanout_p99_ms": openloop.pct(times, 0.99), "fanout_max_ms": openloop.pct(times, 1.0),
            "fanout_incomplete": incomplete, "server_cpu_ms_per_notification": cpu_ms,
            "consistent": report["consistent"] and report["pending"] == 0, "load": os.getloadavg()[0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_shop_args(p)
    p.add_argument("--rate", type=float, default=500.0, help="notifications per second (default 500)")
    p.add_argument("--count", type=int, default=2500, help="notifications, one per order (default 2500: 5 s at 500/s)")
    p.add_argument("--users", type=int, default=32, help="users placing the orders (default 32)")
    p.add_argument("--json", action="store_true", help="print one JSON dict per mode instead of the summary")
    p.add_argument("--per-process", action="store_true", help="each process's CPU per notification (stderr)")
    p.add_argument("--profile", type=Path, metavar="DIR", help="py-spy every shop process over the sends (stderr)")
    args = p.parse_args()
    modes, env = shop_modes(p, args)
    good = True
    for mode in modes:
        r = run_mode(mode, args, env)
        good = good and r["errors"] == 0 and r["consistent"] and r["fanout_incomplete"] == 0
        if args.json:
            print(json.dumps(r), flush=True)
            continue
        if r["error_kinds"]:
            print(f"   errors by kind: {r['error_kinds']}", flush=True)
        cpu = r["server_cpu_ms_per_notification"]
        print(f"notify {mode} {r['rate']:g}/s n={r['count']}: answer p50={r['answer_p50_ms']:.1f}ms "
              f"p99={r['answer_p99_ms']:.1f}ms (limit {ANSWER_LIMIT_MS:g}, ratio "
              f"{r['answer_p99_ms'] / ANSWER_LIMIT_MS:.2f}) max={r['answer_max_ms']:.1f}ms | fan-out "
              f"p50={r['fanout_p50_ms']:.0f}ms p99={r['fanout_p99_ms']:.0f}ms (limit {FANOUT_LIMIT_MS:g}, ratio "
              f"{r['fanout_p99_ms'] / FANOUT_LIMIT_MS:.2f}) | errors={r['errors']} incomplete="
              f"{r['fanout_incomplete']} consistent={r['consistent']} send_lag_max={r['send_lag_max_ms']:.1f}ms "
              f"server_cpu_ms_per_notification={cpu if cpu is None else round(cpu, 3)} load1={r['load']:.1f}",
              flush=True)
    sys.exit(0 if good else 1)


if __name__ == "__main__":
    main()
