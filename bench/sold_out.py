#!/usr/bin/env python3
"""The flash sale's sold-out path (issue 12.3) against GET /healthz on the same server, in one run.

Starts `shop run` on a fresh data dir (or, with --cluster DB, `shop cluster up` and its front door),
creates one goods with no stock and --users users, places one order (refused by the order service,
which arms the front door's sold-out memory), then runs wrk -t2 -cC for --seconds on /healthz and
on POST /order/confirm for that goods from every user's token in turn (orders_http.py's Lua),
and prints both rates and their ratio (the issue's target: >= 0.5). It also reads the front door's
/metrics: how many answers the gate gave, and how many orders still reached the order service
(a probe per TTL).

    .venv/bin/python bench/sold_out.py [--seconds 10] [--concurrency 64] [--users 500] [--cluster postgresql]
"""
from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent))
from orders_http import ClusterServer, Server, set_up, wrk, wrk_lua, wrk_result  # noqa: E402


def counters(text: str) -> dict[str, float]:
    out = {"sold_out": 0.0, "order_calls": 0.0}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "shop_sold_out_answers_total":
                out["sold_out"] += s.value
            elif s.name == "shop_rpc_seconds_count" and s.labels.get("method") == "order.confirm_order":
                out["order_calls"] += s.value
    return out


async def prepare(url: str, admin_token: str, n_users: int) -> tuple[str, list[tuple[str, dict[str, str]]]]:
    admin = {"Authorization": f"Bearer {admin_token}"}
    async with httpx.AsyncClient(base_url=url, timeout=60.0) as c:
        goods_id, users = await set_up(c, admin, n_users, stock=0)
        uid, auth = users[0]
        body = {"userId": uid, "goodsId": goods_id, "goodsNumber": 1, "goodsPrice": "200.00",
                "shippingFee": "0.00", "orderAmount": "200.00", "moneyPaid": "1.00", "address": "bench"}
        r = await c.post("/order/confirm", json=body, headers=auth)
        assert r.status_code == 409 and r.json()["data"]["goodsNumber"] == 0, r.text
    return goods_id, users


def run(url: str, admin_token: str, args: argparse.Namespace) -> dict[str, Any]:
    goods_id, users = asyncio.run(prepare(url, admin_token, args.users))
    print(f"set-up: 1 goods sold out, {len(users)} users logged in", flush=True)
    health = wrk_result(wrk(f"{url}/healthz", "", args.concurrency, args.seconds, threads=2), args.seconds)
    before = counters(httpx.get(f"{url}/metrics").text)
    out = wrk(url, wrk_lua(goods_id, users), args.concurrency, args.seconds, threads=2)
    after = counters(httpx.get(f"{url}/metrics").text)
    sold = wrk_result(out, args.seconds)
    total = sold["ok"] + sold["errors"].get("non-2xx", 0)
    return {"healthz": health["rate"], "healthz_p99_ms": health["p99"], "sold_out": total / args.seconds,
            "sold_out_p99_ms": sold["p99"], "answered_200": sold["ok"],
            "socket_errors": sold["errors"].get("socket", 0),
            "gate_answers": after["sold_out"] - before["sold_out"],
            "order_calls": after["order_calls"] - before["order_calls"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--users", type=int, default=500)
    p.add_argument("--cluster", choices=("postgresql", "mysql"), help="bench the distributed shop's front door")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="the server's environment")
    args = p.parse_args()
    env = dict(e.split("=", 1) for e in args.env)
    server = ClusterServer(args.cluster, env) if args.cluster else Server(False, env)
    server.start()
    try:
        r = run(server.url, server.admin_token, args)
    finally:
        server.stop()
        server.cleanup()
    ratio = r["sold_out"] / r["healthz"] if r["healthz"] else 0.0
    print(f"healthz/s={r['healthz']:.0f} (p99 {r['healthz_p99_ms']:.1f} ms) "
          f"sold_out/s={r['sold_out']:.0f} (p99 {r['sold_out_p99_ms']:.1f} ms) ratio={ratio:.2f}")
    print(f"gate answers={r['gate_answers']:.0f} orders reaching the order service={r['order_calls']:.0f} "
          f"200s={r['answered_200']} socket errors={r['socket_errors']}")
    sys.exit(0 if r["answered_200"] == 0 else 1)


if __name__ == "__main__":
    main()
