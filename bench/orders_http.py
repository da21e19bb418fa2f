#!/usr/bin/env python3
"""Order placement over real HTTP: orders/s, latency and errors, then the audit.

Starts `shop run` in a subprocess on a free loopback port with a fresh data dir (or, with --url,
uses a server that is already running), creates one goods item with a huge stock and N users with
big balances through the admin API, logs them in, and then for --seconds runs --concurrency client
workers that POST /order/confirm (one unit, moneyPaid 1.00) on one httpx.AsyncClient (HTTP/1.1
keep-alive, a pool of C connections). Afterwards it waits for the shop to be quiet, prints the
audit, checks the stock went down by exactly the orders that succeeded, and stops the server
(and audits its files again with `shop audit`).

The load generator is one Python process, on the same machine as the server: on a small box it
competes with the server for CPU, and httpx costs about as much per request as the server does,
so the figure is a floor for the server, not its ceiling. --pin puts the server on CPU 0 and the
load generator on the other CPUs, so they do not fight over one.

One httpx.AsyncClient with a pool of C connections is itself the bottleneck once more than a few
requests wait on its pool: httpcore's pool does work per waiting request on every hand-out
(encode/httpx#3215). Measured here against GET /healthz with 64 workers: one client with 64
connections ~85 req/s, 64 clients with 1 connection each ~1000 req/s, with the server mostly
idle. --clients K spreads the workers over K clients with C/K connections each (still HTTP/1.1
keep-alive, still one process); --clients C is the fairest to the server.

With --wrk the load comes from wrk (Debian's `wrk`, C, one thread), which costs a fraction of
what Python does per request; it cycles through the users' bodies and tokens from a Lua script.

    .venv/bin/python bench/orders_http.py [--seconds 10] [--concurrency 64] [--users 64] [--pin]
    .venv/bin/python bench/orders_http.py --wrk --concurrency 32
    .venv/bin/python bench/orders_http.py --url http://127.0.0.1:8000 --admin-token "$SHOP_ADMIN_TOKEN"
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

SHOP = Path(sys.executable).with_name("shop")
PRICE = Decimal("200.00")  # over 100: no shipping fee
STOCK = 1_000_000_000
BALANCE = "1000000.00"
PASSWORD = "bench-password"
COUPON_PRICE = "1.00"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`shop run` on a fresh data dir, for the length of the bench."""

    def __init__(self, pin: bool, extra_env: dict[str, str] | None = None) -> None:
        self.extra_env = extra_env or {}  # --env: e.g. SHOP_TELEMETRY=off
        self.tmp = tempfile.TemporaryDirectory(prefix="shop-bench-")
        self.data_dir = Path(self.tmp.name) / "data"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_token = secrets.token_urlsafe(24)
        self.pin = pin
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = Path(self.tmp.name) / "shop.log"

    def env(self) -> dict[str, str]:
        # SHOP_FAULTS unset, among others; OTEL_* only as --env gives them (bench/overhead.py does).
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SHOP_", "OTEL_"))}
        env["SHOP_ADMIN_TOKEN"] = self.admin_token
        # Cheap password hashing: only the set-up logs in; the order path never hashes.
        env["SHOP_PASSWORD_TIME_COST"] = "1"
        env["SHOP_PASSWORD_MEMORY_KIB"] = "1024"
        env.update(self.extra_env)
        return env

    def start(self) -> None:
        cmd = [str(SHOP), "run", "--host", "127.0.0.1", "--port", str(self.port), "--data-dir", str(self.data_dir)]
        preexec = (lambda: os.sched_setaffinity(0, {0})) if self.pin else None
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(cmd, env=self.env(), stdout=out, stderr=subprocess.STDOUT,
                                         preexec_fn=preexec, start_new_session=True)
        end = time.monotonic() + 30
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise SystemExit(f"shop run exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise SystemExit(f"shop run did not come up:\n{self.log.read_text()}")

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def offline_audit(self) -> dict[str, Any]:
        """`shop audit` on the stopped server's files: what is on disk agrees too."""
        r = subprocess.run([str(SHOP), "audit", "--data-dir", str(self.data_dir)], env=self.env(),
                           capture_output=True, text=True, timeout=120)
        try:
            return {"exit": r.returncode, **json.loads(r.stdout)}
        except ValueError:
            return {"exit": r.returncode, "consistent": False, "output": (r.stdout + r.stderr)[-2000:]}

    def cleanup(self) -> None:
        self.tmp.cleanup()


class ClusterServer(Server):
    """`shop cluster up --db DB` under a fresh name, data dir and ports, for the length of the bench;
    what it left on the shared servers (databases, queues, registry nodes) removed by cleanup()."""

    def __init__(self, db: str = "postgresql", extra_env: dict[str, str] | None = None, scale: str = "") -> None:
        from shop.cluster import ClusterConfig, free_ports, parse_scale

        super().__init__(pin=False, extra_env=extra_env)
        self.name = f"bench_{secrets.token_hex(3)}"
        self.port = free_ports("127.0.0.1", 4)  # web and the 3 after it, below the ephemeral range
        self.url = f"http://127.0.0.1:{self.port}"
        self.scale = scale  # --scale, e.g. "order=2,goods=2"
        self.config = ClusterConfig(db=db, port=self.port, data_dir=self.data_dir, name=self.name,
                                    scale=parse_scale(scale))

    def start(self) -> None:
        self.data_dir.mkdir(parents=True)
        cmd = [sys.executable, "-m", "shop", "cluster", "up", "--db", self.config.db, "--port", str(self.port),
               "--data-dir", str(self.data_dir), "--name", self.name, "--scale", self.scale]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(cmd, env=self.env(), stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        end = time.monotonic() + 180
        while b"shop cluster serving on" not in self.log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > end:
                self.stop()
                raise SystemExit(f"shop cluster up did not come up:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> int | None:
        rc = super().stop()
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # any process of it left behind
        return rc

    def cleanup(self) -> None:
        from shop.cluster import remove

        remove(self.config, self.config.environment(self.admin_token, base=self.env()))
        super().cleanup()


def data(r: httpx.Response) -> Any:
    if r.status_code != 200:
        raise SystemExit(f"{r.request.method} {r.request.url} -> {r.status_code} {r.text}")
    return r.json()["data"]


async def set_up(c: httpx.AsyncClient, admin: dict[str, str], n_users: int,
                 stock: int = STOCK) -> tuple[str, list[tuple[str, dict]]]:
    goods = {"goodsName": "bench", "goodsNumber": stock, "goodsPrice": str(PRICE)}
    goods_id = data(await c.post("/admin/goods", headers=admin, json=goods))["goodsId"]
    run = secrets.token_hex(4)  # unique names, also against a server that already has users

    async def user(i: int) -> tuple[str, dict[str, str]]:
        name = f"bench-{run}-{i}"
        uid = data(await c.post("/admin/users", headers=admin,
                                json={"userName": name, "userPassword": PASSWORD, "userMoney": BALANCE}))["userId"]
        token = data(await c.post("/user/login", json={"userName": name, "userPassword": PASSWORD}))["token"]
        return uid, {"Authorization": f"Bearer {token}"}

    users = []
    for i in range(0, n_users, 16):  # a few at a time: hashing a password is the slow part
        users += await asyncio.gather(*(user(j) for j in range(i, min(i + 16, n_users))))
    return goods_id, users


def order_body(user_id: str, goods_id: str, coupon_id: str | None = None) -> dict[str, Any]:
    body = {"userId": user_id, "goodsId": goods_id, "goodsNumber": 1, "goodsPrice": str(PRICE),
            "shippingFee": "0.00", "orderAmount": str(PRICE), "moneyPaid": "1.00", "address": "bench"}
    return body if coupon_id is None else {**body, "couponId": coupon_id}


async def add_coupons(c: httpx.AsyncClient, admin: dict[str, str], users: list[tuple[str, dict]],
                      per_user: int) -> list[list[str]]:
    """`per_user` fresh coupons (price COUPON_PRICE) for each user: for orders that each use one, as
    the issue measures the distributed shop (its SQL limit uses a coupon per order too)."""
    async def coupon(uid: str) -> str:
        r = await c.post("/admin/coupons", headers=admin, json={"userId": uid, "couponPrice": COUPON_PRICE})
        return str(data(r)["couponId"])

    out: list[list[str]] = [[] for _ in users]
    for _ in range(per_user):
        for u, made in enumerate(await asyncio.gather(*(coupon(uid) for uid, _ in users))):
            out[u].append(made)
    return out


async def load(clients: list[httpx.AsyncClient], goods_id: str, users: list[tuple[str, dict]], concurrency: int,
               seconds: float, warmup: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    ok = 0
    warm_ok = [0]  # orders placed during the warm-up: not measured, but they took stock
    loop = asyncio.get_running_loop()
    start = loop.time()
    measure_from = start + warmup
    end = measure_from + seconds

    async def worker(k: int) -> None:
        nonlocal ok
        c = clients[k % len(clients)]
        user_id, auth = users[k % len(users)]
        body = order_body(user_id, goods_id)
        while True:
            t0 = loop.time()
            if t0 >= end:
                return
            try:
                r = await c.post("/order/confirm", json=body, headers=auth)
                failure = None if r.status_code == 200 else f"{r.status_code} {r.json().get('code')}"
            except httpx.HTTPError as e:
                failure = e.__class__.__name__
            t1 = loop.time()
            if t0 < measure_from:
                if failure is None:
                    warm_ok[0] += 1
                continue
            if failure is None:
                ok += 1
                latencies.append(t1 - t0)
            else:
                errors[failure] = errors.get(failure, 0) + 1

    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    elapsed = loop.time() - measure_from
    latencies.sort()

    def pct(p: float) -> float:
        if not latencies:
            return float("nan")
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {"ok": ok, "warm_ok": warm_ok[0], "errors": errors, "elapsed": elapsed,
            "rate": ok / elapsed if elapsed > 0 else 0.0, "p50": pct(0.50), "p99": pct(0.99)}


WRK_LUA = """
local bodies = {%s}
local tokens = {%s}
local i = 0
request = function()
  i = i %% #bodies + 1
  return wrk.format("POST", "/order/confirm",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. tokens[i]}, bodies[i])
end
"""


def wrk_lua(goods_id: str, users: list[tuple[str, dict]], coupons: list[list[str]] | None = None) -> str:
    """The Lua script that makes wrk cycle through the users' orders (WRK_LUA); with `coupons` (each
    user's, add_coupons), each order uses the next one of its user's, the users taking turns: a
    coupon is used once only as long as the run places fewer orders than there are coupons."""
    if coupons is None:
        orders = [(uid, auth, None) for uid, auth in users]
    else:
        orders = [(uid, auth, mine[k]) for k in range(min(map(len, coupons)))
                  for (uid, auth), mine in zip(users, coupons, strict=True)]
    bodies = ", ".join("[[" + json.dumps(order_body(uid, goods_id, coupon)) + "]]" for uid, _, coupon in orders)
    tokens = ", ".join('"' + auth["Authorization"].split()[1] + '"' for _, auth, _ in orders)
    return WRK_LUA % (bodies, tokens)


def wrk(url: str, script: str, concurrency: int, seconds: float, threads: int = 1, timeout_s: float = 2.0) -> str:
    """wrk's report: `threads` threads, `concurrency` connections, for `seconds`, driven by `script`.
    An answer slower than `timeout_s` (wrk's default 2 s) is counted as a timeout, not a latency."""
    import shutil

    if not shutil.which("wrk"):
        raise SystemExit("this needs wrk on PATH (Debian: apt-get install wrk)")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        cmd = ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{seconds:g}s", f"--timeout={timeout_s:g}s", "--latency",
               "-s", f.name, url]
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(f.name)


def wrk_result(out: str, seconds: float) -> dict[str, Any]:
    """orders/s, latencies and errors (non-2xx answers, socket errors) from wrk's report."""
    import re

    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\b", out, re.M)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    found = re.search(r"(\d+) requests in", out)
    if found is None:
        raise SystemExit(f"no result from wrk:\n{out}")
    total = int(found.group(1))
    non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    sock = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    ok = total - non2xx
    errors = {k: v for k, v in (("non-2xx", non2xx), ("socket", sock)) if v}
    return {"ok": ok, "warm_ok": 0, "errors": errors, "elapsed": seconds, "rate": ok / seconds,
            "p50": ms("50%"), "p99": ms("99%")}


def run_wrk(url: str, goods_id: str, users: list[tuple[str, dict]], concurrency: int, seconds: float,
            coupons: list[list[str]] | None = None) -> dict[str, Any]:
    return wrk_result(wrk(url, wrk_lua(goods_id, users, coupons), concurrency, seconds), seconds)


async def quiet_audit(c: httpx.AsyncClient, admin: dict[str, str], timeout_s: float = 30.0) -> dict[str, Any]:
    end = time.monotonic() + timeout_s
    while True:
        report = data(await c.get("/admin/audit", headers=admin))
        if report["pending"] == 0 or time.monotonic() > end:
            return report
        await asyncio.sleep(0.2)


def cpu_seconds(pid: int | None) -> float | None:
    """A process's CPU time so far (user + system), from /proc: None without a pid or on another OS."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def session_pids(sid: int) -> list[int]:
    """Every live process of session `sid`: a started shop's (Server and ClusterServer start theirs
    in a session of its own), so one process embedded, every service and the supervisor in a cluster."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # after ")": state ppid pgrp session ...
            out.append(int(d.name))
    return out


def session_cpu_s(sid: int | None) -> float | None:
    """CPU seconds (user + system) of every live process of session `sid` (session_pids)."""
    if sid is None:
        return None
    return sum(cpu_seconds(p) or 0.0 for p in session_pids(sid))


def add_shop_args(p: argparse.ArgumentParser) -> None:
    """--mode, --db and --env: which shops a bench starts (shop_modes, shop_server)."""
    p.add_argument("--mode", choices=["embedded", "cluster", "both"], default="both")
    p.add_argument("--db", choices=["postgresql", "mysql"], default="postgresql", help="the cluster's database")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="set in the started shop's environment (repeatable), e.g. SHOP_ADMISSION_ACTIVE=0")


def shop_modes(p: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    """The modes add_shop_args's --mode names, and --env as a dict (a malformed one is p's error)."""
    if any("=" not in e for e in args.env):
        p.error("--env takes NAME=VALUE")
    modes = ["embedded", "cluster"] if args.mode == "both" else [args.mode]
    return modes, dict(e.split("=", 1) for e in args.env)


def shop_server(mode: str, db: str, env: dict[str, str]) -> Server:
    """`shop run` (embedded) or `shop cluster up --db DB` (cluster), not started yet."""
    return Server(pin=False, extra_env=env) if mode == "embedded" else ClusterServer(db, extra_env=env)


async def bench(url: str, admin_token: str, args: argparse.Namespace,
                server_pid: int | None = None) -> tuple[dict[str, Any], dict[str, Any], bool]:
    admin = {"Authorization": f"Bearer {admin_token}"}
    per_client = -(-args.concurrency // args.clients)
    limits = httpx.Limits(max_connections=per_client, max_keepalive_connections=per_client)
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=url, limits=limits, timeout=60.0, http1=True, http2=False)
            )
            for _ in range(args.clients)
        ]
        c = clients[0]
        t = time.monotonic()
        goods_id, users = await set_up(c, admin, args.users)
        print(f"set-up: 1 goods, {len(users)} users logged in ({time.monotonic() - t:.1f}s)", flush=True)
        stock_before = data(await c.get(f"/admin/goods/{goods_id}", headers=admin))["goodsNumber"]
        cpu_before = cpu_seconds(server_pid)
        if args.wrk:
            result = await asyncio.to_thread(run_wrk, url, goods_id, users, args.concurrency, args.seconds)
        else:
            result = await load(clients, goods_id, users, args.concurrency, args.seconds, args.warmup)
        cpu_after = cpu_seconds(server_pid)
        placed = result["ok"] + result["warm_ok"] + sum(result["errors"].values())
        # The server's CPU per order: steadier than orders/s on a machine shared with other work.
        result["cpu_ms"] = (cpu_after - cpu_before) * 1000 / placed if cpu_before is not None and \
            cpu_after is not None and placed else None
        report = await quiet_audit(c, admin)
        stock_after = data(await c.get(f"/admin/goods/{goods_id}", headers=admin))["goodsNumber"]
    # Every order that succeeded took one unit; every one that failed gave its unit back. wrk does
    # not count the requests still in flight when its time is up (at most one per connection).
    result["taken"] = stock_before - stock_after
    counted = result["ok"] + result["warm_ok"]
    slack = args.concurrency if args.wrk else 0
    stock_ok = counted <= result["taken"] <= counted + slack
    return result, report, stock_ok


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=10.0, help="measured duration (default 10)")
    p.add_argument("--concurrency", type=int, default=64, help="concurrent client workers and connections (default 64)")
    p.add_argument("--users", type=int, default=64, help="users placing orders (default 64)")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of load before measuring (default 1)")
    p.add_argument("--url", help="bench a running server instead of starting one")
    p.add_argument("--admin-token", default=os.environ.get("SHOP_ADMIN_TOKEN"),
                   help="with --url: the server's admin token (default $SHOP_ADMIN_TOKEN)")
    p.add_argument("--clients", type=int, default=1,
                   help="spread the workers over this many httpx clients, each with its share of the pool "
                        "(default 1: one client, one pool of C; see the note on httpx above)")
    p.add_argument("--wrk", action="store_true", help="generate the load with wrk instead of httpx")
    p.add_argument("--pin", action="store_true", help="server on CPU 0, load generator on the other CPUs")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="set in the started server's environment (repeatable), e.g. SHOP_TELEMETRY=off, "
                        "OTEL_EXPORTER_OTLP_ENDPOINT=...; the bench's own SHOP_* variables are not passed on")
    args = p.parse_args()
    if any("=" not in e for e in args.env):
        p.error("--env takes NAME=VALUE")
    if not 1 <= args.clients <= args.concurrency:
        p.error("--clients must be between 1 and --concurrency")

    server = None
    if args.url:
        if not args.admin_token:
            p.error("--url needs --admin-token or SHOP_ADMIN_TOKEN")
        url, token = args.url.rstrip("/"), args.admin_token
    else:
        server = Server(args.pin, dict(e.split("=", 1) for e in args.env))
        server.start()
        url, token = server.url, server.admin_token
        print(f"shop run pid {server.proc.pid} on {url}, data in {server.data_dir}", flush=True)
    if args.pin:
        cpus = os.sched_getaffinity(0)
        os.sched_setaffinity(0, (cpus - {0}) or cpus)
    gen = "wrk, 1 thread," if args.wrk else f"1 process, {args.concurrency} workers on {args.clients} httpx client(s),"
    print(f"load: {gen} {args.concurrency} connections, {args.users} users, {args.seconds:g}s "
          f"(+{args.warmup:g}s warm-up) on {os.cpu_count()} CPUs"
          f"{' (server pinned to CPU 0)' if args.pin else ', shared with the server'}", flush=True)
    try:
        pid = server.proc.pid if server is not None and server.proc is not None else None
        result, report, stock_ok = asyncio.run(bench(url, token, args, pid))
    finally:
        if server is not None:
            server.stop()
    offline = server.offline_audit() if server is not None else None
    if server is not None:
        server.cleanup()

    n_err = sum(result["errors"].values())
    if result["errors"]:
        print("errors by kind:", result["errors"])
    print(f"audit: {report}")
    if offline is not None:
        print(f"shop audit on the stopped server's files: {offline}")
    print(f"stock taken {result['taken']} == orders that succeeded {result['ok'] + result['warm_ok']} "
          f"(incl. {result['warm_ok']} in the warm-up): {stock_ok}")
    consistent = report["consistent"] and report["pending"] == 0 and stock_ok
    if offline is not None:
        consistent = consistent and offline.get("consistent") is True and offline["exit"] == 0
    cpu = f" server_cpu_ms_per_order={result['cpu_ms']:.3f}" if result.get("cpu_ms") is not None else ""
    print(f"orders/s={result['rate']:.0f} p50_ms={result['p50']:.1f} p99_ms={result['p99']:.1f} "
          f"errors={n_err} consistent={consistent}{cpu}")
    sys.exit(0 if consistent and n_err == 0 else 1)


if __name__ == "__main__":
    main()
