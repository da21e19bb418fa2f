#!/usr/bin/env python3
"""Soak: a long run at 70% of the measured maximum, and whether any process's memory keeps growing.

For each mode (embedded: `shop run` on a fresh data dir; distributed: `shop cluster up --db
postgresql` under a fresh name), it creates goods and users through the admin API
(bench/orders_http.py's set_up), measures the maximum orders/s with wrk for --max-seconds, then
drives --minutes of orders at --load (default 0.7) of that maximum. wrk has no rate option: the Lua
script here gives each request a slot on a fixed schedule (one slot every 1/rate seconds, on wrk's
one thread) and delay() holds the connection until its slot, so the rate holds whatever the latency,
as long as the connections suffice; a stall is not made up for afterwards (no burst).

After the warm-up (--warmup-minutes, part of the run) every process's resident memory (VmRSS in
/proc/<pid>/status) is sampled every --sample-seconds: the process the bench started and all of its
descendants, a cluster's named by their role (SHOP_PROCESS_NAME). Errors: wrk's non-2xx answers and
socket errors, and a count by status from the Lua script's response(). At the end it waits until the
shop is quiet, prints GET /admin/audit, checks the stock went down by the orders that succeeded,
stops the shop (embedded: also `shop audit` on its files) and prints a README-ready table.

    .venv/bin/python bench/soak.py [--mode embedded|distributed|both] [--minutes 10] [--load 0.7]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from orders_http import ClusterServer, Server, data, quiet_audit, run_wrk, set_up, wrk, wrk_lua, wrk_result

# Appended to orders_http's WRK_LUA (which defines request()). The clock: LuaJIT's ffi, as wrk's Lua
# has no sub-second one. delay() is in whole milliseconds: a request leaves up to 1 ms before its
# slot, but the slots keep their spacing, so the rate is the target's.
PACE_LUA = """
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } soak_timespec;
int clock_gettime(int clk_id, soak_timespec *tp);
]]
local ts = ffi.new("soak_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end
local interval = 1000 / %f
local next_at = 0
delay = function()
  local t = now_ms()
  if next_at < t then next_at = t end
  local d = next_at - t
  next_at = next_at + interval
  return d
end

errors = 0
statuses = ""
samples = ""
response = function(status, headers, body)
  if status ~= 200 then
    errors = errors + 1
    if errors <= 1000 then statuses = statuses .. status .. " " end
    if errors <= 3 then samples = samples .. status .. " " .. string.sub(body, 1, 200) .. "\\n" end
  end
end
local threads = {}
setup = function(thread) table.insert(threads, thread) end
done = function(summary, latency, requests)
  for _, t in ipairs(threads) do
    io.write(string.format("SOAK lua_errors=%%d statuses=[%%s]\\n%%s", t:get("errors"), t:get("statuses"),
                           t:get("samples")))
  end
end
"""


@dataclass
class Proc:
    name: str
    pid: int
    rss_kb: list[tuple[float, int]] = field(default_factory=list)  # (seconds into the run, VmRSS)
    restarted: bool = False


def rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def tree(root: int, root_name: str) -> dict[str, int]:
    """The process and its descendants, by name: a cluster's children by SHOP_PROCESS_NAME (their
    role, with -2, -3 for more instances), others by their command line."""
    out = {root_name: root}
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            kids = [int(k) for t in Path(f"/proc/{pid}/task").iterdir()
                    for k in (t / "children").read_text().split()]
        except OSError:
            continue
        for kid in kids:
            todo.append(kid)
            try:
                env = dict(v.split("=", 1) for v in Path(f"/proc/{kid}/environ").read_text().split("\0") if "=" in v)
                argv = Path(f"/proc/{kid}/cmdline").read_text().split("\0")
            except OSError:
                continue
            name = env.get("SHOP_PROCESS_NAME") or " ".join(a for a in argv[1:4] if a) or str(kid)
            out[name if name not in out else f"{name} ({kid})"] = kid
    return out


class Sampler(threading.Thread):
    """Every `every` seconds from `start_at` seconds into the run: each process's RSS. A process
    found under its name with another pid was started again (a cluster's supervisor does that)."""

    def __init__(self, root: int, root_name: str, start_at: float, every: float) -> None:
        super().__init__(daemon=True)
        self.root, self.root_name, self.start_at, self.every = root, root_name, start_at, every
        self.procs: dict[str, Proc] = {}
        self.stopping = threading.Event()
        self.t0 = time.monotonic()

    def sample(self) -> None:
        now = time.monotonic() - self.t0
        for name, pid in tree(self.root, self.root_name).items():
            kb = rss_kb(pid)
            if kb is None:
                continue
            p = self.procs.setdefault(name, Proc(name, pid))
            if p.pid != pid:
                p.pid, p.restarted = pid, True
            p.rss_kb.append((now, kb))

    def run(self) -> None:
        if self.stopping.wait(self.start_at):
            return
        while True:
            self.sample()
            total = sum(p.rss_kb[-1][1] for p in self.procs.values() if p.rss_kb)
            print(f"  {time.monotonic() - self.t0:5.0f}s: {len(self.procs)} processes, RSS {total / 1024:.0f} MiB",
                  flush=True)
            if self.stopping.wait(self.every):
                self.sample()  # the end
                return


def paced(url: str, goods_id: str, users: list[tuple[str, dict]], rate: float, concurrency: int,
          seconds: float) -> dict[str, Any]:
    out = wrk(url, wrk_lua(goods_id, users) + PACE_LUA % rate, concurrency, seconds)
    result = wrk_result(out, seconds)
    m = re.search(r"SOAK lua_errors=(\d+) statuses=\[([^\]]*)\]\n(.*)", out, re.S)
    if m is None:
        raise SystemExit(f"no count from the Lua script:\n{out}")
    result["lua_errors"] = int(m.group(1))
    result["statuses"] = {s: m.group(2).split().count(s) for s in set(m.group(2).split())}  # of the first 1000
    result["error_samples"] = m.group(3).strip()
    result["report"] = out
    return result


async def soak(server: Server, label: str, args: argparse.Namespace) -> dict[str, Any]:
    admin = {"Authorization": f"Bearer {server.admin_token}"}
    assert server.proc is not None
    async with httpx.AsyncClient(base_url=server.url, timeout=60.0) as c:
        goods_id, users = await set_up(c, admin, args.users)
        stock_before = data(await c.get(f"/admin/goods/{goods_id}", headers=admin))["goodsNumber"]
        top = await asyncio.to_thread(run_wrk, server.url, goods_id, users, args.concurrency, args.max_seconds)
        target = top["rate"] * args.load
        print(f"{label}: max {top['rate']:.0f} orders/s over {args.max_seconds:g}s (errors {top['errors'] or 0}); "
              f"soak at {target:.0f}/s for {args.minutes:g} min", flush=True)
        seconds = args.minutes * 60
        sampler = Sampler(server.proc.pid, label, args.warmup_minutes * 60, args.sample_seconds)
        sampler.start()
        try:
            run = await asyncio.to_thread(paced, server.url, goods_id, users, target, args.concurrency, seconds)
        finally:
            sampler.stopping.set()
            sampler.join()
        audit = await quiet_audit(c, admin, timeout_s=120.0)
        stock_after = data(await c.get(f"/admin/goods/{goods_id}", headers=admin))["goodsNumber"]
    # Every order that succeeded took one unit; wrk does not count those in flight at its end
    # (at most one a connection).
    placed = top["ok"] + run["ok"]
    taken = stock_before - stock_after
    return {"label": label, "max": top, "target": target, "run": run, "audit": audit, "procs": sampler.procs,
            "stock_ok": placed <= taken <= placed + 2 * args.concurrency, "taken": taken, "placed": placed}


def growth(p: Proc) -> tuple[float, float, float]:
    first, last = p.rss_kb[0][1], p.rss_kb[-1][1]
    return first / 1024, last / 1024, (last / first - 1) * 100


def report(r: dict[str, Any], args: argparse.Namespace, offline: dict[str, Any] | None) -> str:
    run, audit = r["run"], r["audit"]
    errors = sum(run["errors"].values())
    by_status = f" {run['statuses']}" if run["statuses"] else ""
    saturated = f"; errors at the maximum, not counted below: {r['max']['errors']}" if r["max"]["errors"] else ""
    lines = [
        f"**{r['label']}**: {args.minutes:g} min at {args.load:.0%} of the maximum "
        f"({r['max']['rate']:.0f} orders/s measured over {args.max_seconds:g} s, wrk 1 thread, "
        f"{args.concurrency} connections{saturated}): target {r['target']:.0f}/s, achieved {run['rate']:.1f}/s "
        f"(p50 {run['p50']:.1f} ms, p99 {run['p99']:.1f} ms); errors {errors} (wrk: {run['errors'] or 'none'}; "
        f"Lua: {run['lua_errors']}{by_status}); audit: consistent={audit['consistent']}, "
        f"pending={audit['pending']}, violations={len(audit['violations'])}; stock taken {r['taken']} for "
        f"{r['placed']} orders that succeeded: {'right' if r['stock_ok'] else 'WRONG'}"
        + (f"; `shop audit` on the stopped shop's files: consistent={offline.get('consistent')}" if offline else ""),
        "",
        f"| process | RSS after warm-up ({args.warmup_minutes:g} min) | RSS at end | growth |",
        "| --- | ---: | ---: | ---: |",
    ]
    for p in sorted(r["procs"].values(), key=lambda p: p.name):
        if len(p.rss_kb) < 2:
            continue
        first, last, pct = growth(p)
        lines.append(f"| {p.name}{' (restarted)' if p.restarted else ''} | {first:.1f} MiB | {last:.1f} MiB | "
                     f"{pct:+.1f}% |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=["embedded", "distributed", "both"], default="both")
    p.add_argument("--minutes", type=float, default=10.0, help="the soak's length, warm-up included (default 10)")
    p.add_argument("--warmup-minutes", type=float, default=1.0, help="before the first RSS sample (default 1)")
    p.add_argument("--load", type=float, default=0.7, help="the fraction of the measured maximum (default 0.7)")
    p.add_argument("--max-seconds", type=float, default=15.0, help="the maximum's measurement (default 15)")
    p.add_argument("--sample-seconds", type=float, default=30.0, help="between RSS samples (default 30)")
    p.add_argument("--concurrency", type=int, default=32, help="wrk's connections (default 32)")
    p.add_argument("--users", type=int, default=64, help="users placing orders (default 64)")
    args = p.parse_args()
    if not 0 < args.warmup_minutes < args.minutes:
        p.error("--warmup-minutes must be shorter than --minutes")
    blocks, clean = [], True
    for mode in (["embedded", "distributed"] if args.mode == "both" else [args.mode]):
        server: Server = Server(pin=False) if mode == "embedded" else ClusterServer("postgresql")
        label = "shop run" if mode == "embedded" else "cluster up"
        server.start()
        assert server.proc is not None
        print(f"{mode}: {label} pid {server.proc.pid} on {server.url}", flush=True)
        try:
            r = asyncio.run(soak(server, label, args))
        finally:
            server.stop()
        offline = server.offline_audit() if mode == "embedded" else None
        server.cleanup()
        print(f"audit: {r['audit']}", flush=True)
        if r["run"]["error_samples"]:
            print(f"first errors:\n{r['run']['error_samples']}")
        blocks.append(f"#### Soak, {mode}\n\n" + report(r, args, offline))
        errors = sum(r["run"]["errors"].values()) + r["run"]["lua_errors"]
        grew = [p.name for p in r["procs"].values() if len(p.rss_kb) > 1 and growth(p)[2] >= 10]
        clean = clean and errors == 0 and r["audit"]["consistent"] and r["stock_ok"] and not grew \
            and (offline is None or offline.get("consistent") is True)
    print(f"\n{os.cpu_count()} CPUs, wrk on the same machine; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print("\n\n".join(blocks))
    sys.exit(0 if clean else 1)


if __name__ == "__main__":
    main()
