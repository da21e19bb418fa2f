#!/usr/bin/env python3
"""Where one order's CPU goes: every process of a shop, and PostgreSQL's and RabbitMQ's, in CPU
milliseconds per order over a wrk -c64 run of bench/orders_http.py's orders (docs/scaling.md).

Starts `shop cluster up --db postgresql [--scale ...]` (or `shop run` with --embedded), without
admission control, sets up 64 users, warms up 3 s, then reads each process's CPU time from
/proc/PID/stat before and after a --seconds run. PostgreSQL's and RabbitMQ's are every process of
theirs on the machine (postgres backends opened during the run are not counted: a floor), so run it
on a quiet machine.

    .venv/bin/python bench/cpu_per_process.py [--seconds 10] [--scale order=2,goods=2] [--embedded] [--env K=V]
        [--coupons N] [--profile DIR]

--profile DIR also records every shop process with py-spy (100 samples a second; --nonblocking: the
process is not paused, so it costs the process little) over the measured run, writes each one's
collapsed stacks to DIR/ROLE-PID.txt (flamegraph.pl and speedscope read them), and prints where each
role's CPU goes: the share of its samples by the code they were in (the innermost frame's library,
or the shop's module) and its busiest functions. Code with no Python frame of its own is charged to
the innermost Python frame: "the loop" is the event loop's own C code and what it calls without a
Python frame (uvloop, gRPC's Cython coroutines, asyncpg's protocol). py-spy --native would name
those, but it pauses the process for each sample and counts the idle threads' waits as work.
"""
from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import TextIO

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from orders_http import (  # noqa: E402
    ClusterServer,
    Server,
    add_coupons,
    cpu_seconds,
    quiet_audit,
    run_wrk,
    session_pids,
    set_up,
)

CAPACITY = {"SHOP_ADMISSION_ACTIVE": "0"}


def by_role(session: int) -> dict[str, list[int]]:
    """The shop's processes by role (`shop serve ROLE` in their command line; the session's leader
    is the supervisor or `shop run`), and PostgreSQL's and RabbitMQ's by name."""
    out: dict[str, list[int]] = {}
    for pid in session_pids(session):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        role = argv[argv.index(b"serve") + 1].decode() if b"serve" in argv else "supervisor or shop run"
        out.setdefault(role, []).append(pid)
    for p in Path("/proc").iterdir():
        try:
            comm = (p / "comm").read_text().strip() if p.name.isdigit() else ""
        except OSError:
            continue
        if comm.startswith(("postgres", "beam")):
            out.setdefault("postgres" if comm.startswith("postgres") else "rabbitmq", []).append(int(p.name))
    return out


def role_cpu(roles: dict[str, list[int]]) -> dict[str, float]:
    """Each role's CPU seconds so far, over its processes."""
    return {r: sum(cpu_seconds(p) or 0.0 for p in ps) for r, ps in roles.items()}


PY_SPY = Path(sys.executable).with_name("py-spy")
FRAME = re.compile(r"^(?P<fn>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


Profile = tuple[str, Path, subprocess.Popen[bytes]]  # a role, its collapsed stacks' file, py-spy


def start_profiles(roles: dict[str, list[int]], seconds: float, out: Path) -> list[Profile]:
    """py-spy on every shop process (not PostgreSQL's or RabbitMQ's) for the run's length."""
    out.mkdir(parents=True, exist_ok=True)
    started = []
    for role, pids in roles.items():
        for pid in pids if role not in ("postgres", "rabbitmq") else ():
            f = out / f"{role.split()[0]}-{pid}.txt"
            started.append((role, f, subprocess.Popen(
                [str(PY_SPY), "record", "--nonblocking", "-r", "100", "-d", str(int(seconds)), "-f", "raw",
                 "-p", str(pid), "-o", str(f)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
    return started


def where(file: str) -> str:
    """The code a frame is in: a library (the folder under site-packages), the shop's module, or the
    standard library's module."""
    if "site-packages/" in file:
        return file.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if "/shop/" in file:
        return "shop/" + file.rsplit("/shop/", 1)[1].removesuffix(".py")
    parts = file.split("/")
    return (parts[-2] + "/" if len(parts) > 1 and parts[-2] not in ("lib", "python3.11") else "") + parts[-1]


def profile_report(profiles: list[Profile], out: Path, to: TextIO = sys.stdout) -> None:
    by_role: dict[str, tuple[Counter[str], Counter[str]]] = {}
    for role, f, proc in profiles:
        proc.wait(timeout=60)
        places, functions = by_role.setdefault(role, (Counter(), Counter()))
        for line in f.read_text().splitlines() if f.exists() else ():
            stack, _, n = line.rpartition(" ")
            m = FRAME.match(stack.rsplit(";", 1)[-1])
            if m is None or not n.isdigit():
                continue
            place = "the loop" if m["fn"] == "Runner.run" else where(m["file"])
            places[place] += int(n)
            functions[f"{m['fn']} ({place})"] += int(n)
    print(f"py-spy, share of each role's samples (collapsed stacks in {out}):", file=to)
    for role, (places, functions) in sorted(by_role.items()):
        total = sum(places.values()) or 1
        print(f"  {role}: {total} samples", file=to)
        print("    by code:  " + ", ".join(f"{k} {v * 100 / total:.0f}%" for k, v in places.most_common(10)), file=to)
        print("    functions: " + ", ".join(f"{k} {v * 100 / total:.1f}%" for k, v in functions.most_common(8)),
              file=to)


async def measure(server: Server, seconds: float, coupons: int, profile: Path | None = None) -> None:
    admin = {"Authorization": f"Bearer {server.admin_token}"}
    assert server.proc is not None
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as c:
        goods_id, users = await set_up(c, admin, 64)
        # Apart for the warm-up and the run: each wrk starts at the first of its list.
        warm = await add_coupons(c, admin, users, coupons * 3 // 10) if coupons else None
        used = await add_coupons(c, admin, users, coupons) if coupons else None
        await asyncio.to_thread(run_wrk, server.url, goods_id, users, 64, 3.0, warm)
        roles = by_role(server.proc.pid)
        before = role_cpu(roles)
        profiles = start_profiles(roles, seconds, profile) if profile else []
        r = await asyncio.to_thread(run_wrk, server.url, goods_id, users, 64, seconds, used)
        after = role_cpu(roles)
        audit = await quiet_audit(c, admin)
    n = r["ok"] + sum(r["errors"].values())
    print(f"{r['rate']:.0f} orders/s, p50 {r['p50']:.0f} ms, p99 {r['p99']:.0f} ms, errors {r['errors'] or 0}, "
          f"audit consistent {audit['consistent']}; CPU ms per order:")
    total = 0.0
    for role in sorted(roles):
        ms = (after[role] - before[role]) * 1000 / n if n else float("nan")
        total += ms
        print(f"  {role:<24} {ms:6.2f}  ({len(roles[role])} process{'es' if len(roles[role]) > 1 else ''})")
    print(f"  {'all':<24} {total:6.2f}")
    if profile:
        profile_report(profiles, profile)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--scale", default="", help="the cluster's --scale, e.g. order=2,goods=2,user=2")
    p.add_argument("--embedded", action="store_true", help="`shop run` instead of the cluster")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="set in the started shop's environment (repeatable), e.g. SHOP_TELEMETRY=off")
    p.add_argument("--coupons", type=int, default=0, metavar="N",
                   help="each order uses a fresh coupon, as the issue measures: N per user for the run (64 "
                        "users; 100 covers 640 orders/s over 10 s), and 3/10 as many for the warm-up")
    p.add_argument("--profile", type=Path, metavar="DIR", help="py-spy every shop process over the run (see above)")
    args = p.parse_args()
    if any("=" not in e for e in args.env):
        p.error("--env takes NAME=VALUE")
    env = {**CAPACITY, **dict(e.split("=", 1) for e in args.env)}
    server = Server(pin=False, extra_env=env) if args.embedded else ClusterServer("postgresql", env, args.scale)
    server.start()
    try:
        asyncio.run(measure(server, args.seconds, args.coupons, args.profile))
    finally:
        server.stop()
    server.cleanup()


if __name__ == "__main__":
    main()
