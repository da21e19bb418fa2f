#!/usr/bin/env python3
"""Orders under overload: wrk -c512 for --seconds against `shop run` (embedded) and `shop cluster up
--db postgresql` (distributed), printing the orders/s, the latency of every answer (wrk's, refusals
included: they are fast), the latency of the admitted orders alone, and the share refused (503).

The admitted orders' latency comes from --probes extra connections beside wrk's (plain sockets,
one request at a time each, the same order body as wrk's): wrk's Lua sees no per-request time, and
a probe waits in the front door's queue like any of wrk's connections. A probe costs no more CPU
than a wrk connection (it sends one order per answer).

Afterwards the audit must be consistent and the stock taken must equal the orders confirmed: a
refused order changed nothing.

    .venv/bin/python bench/overload.py [--mode embedded|cluster|both] [--concurrency 512] [--seconds 10]
    .venv/bin/python bench/overload.py --env SHOP_ADMISSION_ACTIVE=0   # no admission control
"""
from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flash_sale import count_line, counting  # noqa: E402 - the sibling scripts, found from any working directory
from orders_http import (  # noqa: E402
    ClusterServer,
    Server,
    add_shop_args,
    cpu_seconds,
    data,
    order_body,
    quiet_audit,
    set_up,
    shop_modes,
    shop_server,
    wrk,
    wrk_lua,
    wrk_result,
)


class Probe(threading.Thread):
    """One keep-alive connection placing orders one at a time until `end`: each answer's status and
    latency (seconds)."""

    def __init__(self, url: str, body: dict[str, Any], auth: str, end: float) -> None:
        super().__init__(daemon=True)
        u = urlsplit(url)
        self.addr = (u.hostname or "127.0.0.1", u.port or 80)
        payload = json.dumps(body).encode()
        self.request = (f"POST /order/confirm HTTP/1.1\r\nHost: {u.netloc}\r\nContent-Type: application/json\r\n"
                        f"Authorization: {auth}\r\nContent-Length: {len(payload)}\r\n\r\n").encode() + payload
        self.end = end
        self.answers: list[tuple[int, float]] = []
        self.error: str | None = None

    def run(self) -> None:
        try:
            with socket.create_connection(self.addr, timeout=60) as s:
                f = s.makefile("rb")
                while time.monotonic() < self.end:
                    t0 = time.monotonic()
                    s.sendall(self.request)
                    status = int(f.readline().split()[1])
                    length = 0
                    while (line := f.readline()) not in (b"\r\n", b""):
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value)
                    f.read(length)
                    self.answers.append((status, time.monotonic() - t0))
        except (OSError, ValueError, IndexError) as exc:
            self.error = repr(exc)


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000


async def _set_up(url: str, admin: dict[str, str], users: int) -> tuple[str, list[tuple[str, dict]], int]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as c:
        goods_id, us = await set_up(c, admin, users)
        stock = data(await c.get(f"/admin/goods/{goods_id}", headers=admin))["goodsNumber"]
        return goods_id, us, stock


async def _after(url: str, admin: dict[str, str], goods_id: str) -> tuple[dict[str, Any], int]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as c:
        report = await quiet_audit(c, admin, timeout_s=60)
        return report, data(await c.get(f"/admin/goods/{goods_id}", headers=admin))["goodsNumber"]


def overload(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    admin = {"Authorization": f"Bearer {server.admin_token}"}
    goods_id, users, stock_before = asyncio.run(_set_up(server.url, admin, args.users + args.probes))
    load_users, probe_users = users[:args.users], users[args.users:]
    pid = server.proc.pid if server.proc is not None and not isinstance(server, ClusterServer) else None
    cpu_before = cpu_seconds(pid)
    end = time.monotonic() + args.seconds
    probes = [Probe(server.url, order_body(uid, goods_id), auth["Authorization"], end) for uid, auth in probe_users]
    for p in probes:
        p.start()
    # A long timeout: an answer after 10 s is the tail this measures, not a socket error.
    script = wrk_lua(goods_id, load_users) + counting(refused=503)
    out = wrk(server.url, script, args.concurrency, args.seconds, timeout_s=60)
    for p in probes:
        p.join(timeout=70)
    cpu_after = cpu_seconds(pid)
    report, stock_after = asyncio.run(_after(server.url, admin, goods_id))
    answers = [a for p in probes for a in p.answers]
    return {"wrk": wrk_result(out, args.seconds), "counts": count_line(out), "probe": answers,
            "probe_errors": [p.error for p in probes if p.error], "audit": report,
            "taken": stock_before - stock_after,
            "cpu_s": cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None}


def show(label: str, r: dict[str, Any], args: argparse.Namespace) -> bool:
    c, w = r["counts"], r["wrk"]
    admitted = [t for status, t in r["probe"] if status == 200]
    probe_ok = sum(1 for status, _ in r["probe"] if status == 200)
    probe_busy = sum(1 for status, _ in r["probe"] if status == 503)
    probe_other = len(r["probe"]) - probe_ok - probe_busy
    confirmed = c["ok"] + probe_ok
    # wrk does not count the answers to requests still in flight when its time is up (one per connection).
    stock_ok = confirmed <= r["taken"] <= confirmed + args.concurrency
    audit = r["audit"]
    consistent = audit["consistent"] and audit["pending"] == 0 and stock_ok
    share = c["refused"] / c["answers"] if c["answers"] else float("nan")
    cpu_s = r["cpu_s"]
    cpu = f" server_cpu_ms_per_order={cpu_s * 1000 / confirmed:.3f}" if cpu_s is not None and confirmed else ""
    print(f"\n{label}: wrk -c{args.concurrency} {args.seconds:g}s + {args.probes} probe connections")
    print(f"  answers {c['answers']}: {c['ok']} x 200, {c['refused']} x 503, {c['other']} other; "
          f"socket errors {w['errors'].get('socket', 0)}")
    print(f"  probes: {len(r['probe'])} answers, {probe_ok} x 200, {probe_busy} x 503, {probe_other} other"
          + (f"; errors {r['probe_errors']}" if r["probe_errors"] else ""))
    print(f"  stock taken {r['taken']}, orders confirmed {confirmed}: {stock_ok}; audit consistent="
          f"{audit['consistent']} pending={audit['pending']} violations={len(audit['violations'])}")
    print(f"orders/s={c['ok'] / args.seconds:.0f} all_p50_ms={w['p50']:.1f} all_p99_ms={w['p99']:.1f} "
          f"admitted_p50_ms={pct(admitted, 0.5):.1f} admitted_p99_ms={pct(admitted, 0.99):.1f} "
          f"refused_share={share:.3f} consistent={consistent}{cpu}", flush=True)
    return consistent and c["other"] == 0 and probe_other == 0


def run_mode(mode: str, args: argparse.Namespace, env: dict[str, str]) -> bool:
    server = shop_server(mode, args.db, env)
    label = "embedded (shop run, SQLite)" if mode == "embedded" else f"cluster (shop cluster up --db {args.db})"
    print(f"== {label}", flush=True)
    server.start()
    try:
        r = overload(server, args)
    finally:
        server.stop()
        server.cleanup()
    return show(label, r, args)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_shop_args(p)
    p.add_argument("--seconds", type=float, default=10.0, help="wrk's duration (default 10)")
    p.add_argument("--concurrency", type=int, default=512, help="wrk's connections (default 512)")
    p.add_argument("--users", type=int, default=64, help="users placing wrk's orders (default 64)")
    p.add_argument("--probes", type=int, default=4, help="latency probe connections beside wrk's (default 4)")
    args = p.parse_args()
    modes, env = shop_modes(p, args)
    ok = [run_mode(m, args, env) for m in modes]
    sys.exit(0 if all(ok) else 1)


if __name__ == "__main__":
    main()
