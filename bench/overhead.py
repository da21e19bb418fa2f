#!/usr/bin/env python3
"""What a feature costs in orders/s: the shop with it and without it, in one run, the variants
interleaved round by round so that the machine's drift falls on all of them alike.

--what telemetry: metrics and traces off, on, and on exporting every span over OTLP.
--what tls (distributed): the calls between processes over mutual TLS (the default) against plain
gRPC (SHOP_RPC_TLS=off, which exists for this measurement).
--what durability (embedded): the SQLite files' commits made durable by the shared flush (barrier,
the default), by synchronous=FULL, and not at all (normal: not power-safe).

Each measurement is bench/orders_http.py (wrk, a fresh shop or cluster per measurement). Embedded:
`shop run` with SHOP_TELEMETRY=off|on. Distributed: `shop cluster up --db postgresql` with the same
variables given to every process. "export" points OTEL_EXPORTER_OTLP_ENDPOINT at a sink served here
that accepts each batch and throws it away, so the export's whole cost (encoding, sending) is paid;
"export-10%" records and exports a tenth of the traces.

    .venv/bin/python bench/overhead.py [--what telemetry|tls|durability] [--mode embedded|distributed]
                                       [--rounds 3] [--seconds 10]
"""
from __future__ import annotations

import argparse
import http.server
import re
import statistics
import subprocess
import sys
import threading
from pathlib import Path

from orders_http import ClusterServer

ROOT = Path(__file__).resolve().parents[1]
# export-10%: the same, a tenth of the traces recorded and exported (the SDK's own sampler variables).
TELEMETRY = {"off": {"SHOP_TELEMETRY": "off"}, "on": {"SHOP_TELEMETRY": "on"}, "export": {"SHOP_TELEMETRY": "on"},
             "export-10%": {"SHOP_TELEMETRY": "on", "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                            "OTEL_TRACES_SAMPLER_ARG": "0.1"}}
# Each set's first variant is the one the others are compared with.
VARIANTS = {
    "telemetry": TELEMETRY,
    "tls": {"plain": {"SHOP_RPC_TLS": "off"}, "tls": {"SHOP_RPC_TLS": "on"}},
    "durability": {"normal": {"SHOP_SQLITE_DURABILITY": "normal"}, "barrier": {"SHOP_SQLITE_DURABILITY": "barrier"},
                   "full": {"SHOP_SQLITE_DURABILITY": "full"}},
}
RATE = re.compile(r"orders/s=(\d+).*p99_ms=([\d.]+) errors=(\d+) consistent=(\w+)"
                  r"(?: server_cpu_ms_per_order=([\d.]+))?")


class _Sink(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver that keeps nothing: 200 to every POST /v1/traces."""

    spans_bytes = 0

    def do_POST(self) -> None:  # noqa: N802 - the http.server's name
        _Sink.spans_bytes += len(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def sink() -> str:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


Result = tuple[float, float | None, bool]  # orders/s, the server's CPU ms per order (embedded), clean


def orders_http(args: argparse.Namespace, extra: list[str]) -> Result:
    argv = [sys.executable, str(ROOT / "bench/orders_http.py"), "--wrk", "--concurrency", str(args.concurrency),
            "--seconds", str(args.seconds), *extra]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600).stdout
    m = RATE.search(out)
    if m is None:
        raise RuntimeError(f"no result from orders_http.py:\n{out[-2000:]}")
    return float(m[1]), float(m[5]) if m[5] else None, m[3] == "0" and m[4] == "True"


def embedded(args: argparse.Namespace, env: dict[str, str]) -> Result:
    return orders_http(args, [a for k, v in env.items() for a in ("--env", f"{k}={v}")])


def distributed(args: argparse.Namespace, env: dict[str, str]) -> Result:
    server = ClusterServer("postgresql", env)  # a fresh name, data dir and ports; removed afterwards
    server.start()
    try:
        return orders_http(args, ["--url", server.url, "--admin-token", server.admin_token])
    finally:
        server.stop()
        server.cleanup()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--what", choices=sorted(VARIANTS), default="telemetry")
    p.add_argument("--mode", choices=["embedded", "distributed"], default=None,
                   help="default: distributed for tls, embedded otherwise")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--concurrency", type=int, default=32)
    args = p.parse_args()
    args.mode = args.mode or ("distributed" if args.what == "tls" else "embedded")
    variants = VARIANTS[args.what]
    base = next(iter(variants))
    endpoint = sink()
    run = embedded if args.mode == "embedded" else distributed
    rates: dict[str, list[float]] = {v: [] for v in variants}
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(args.rounds):
        for variant, env in variants.items():
            env = dict(env, **({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint} if variant.startswith("export") else {}))
            rate, cpu_ms, ok = run(args, env)
            rates[variant].append(rate)
            if cpu_ms is not None:
                cpu[variant].append(cpu_ms)
            print(f"round {r + 1} {variant:10} orders/s={rate:.0f} server_cpu_ms_per_order={cpu_ms} clean={ok}",
                  flush=True)
    off = statistics.median(rates[base])
    print(f"\n{args.mode}, {args.rounds} rounds of {args.seconds:g}s, wrk -c{args.concurrency}; "
          f"OTLP bytes received by the sink: {_Sink.spans_bytes}")
    for variant, values in rates.items():
        med = statistics.median(values)
        line = (f"{variant:10} median {med:.0f} orders/s ({(med / off - 1) * 100:+.0f}% against {base}); "
                f"each: {', '.join(f'{v:.0f}' for v in values)}")
        if cpu[variant] and cpu[base]:
            c, c_off = statistics.median(cpu[variant]), statistics.median(cpu[base])
            line += f"; server CPU {c:.3f} ms an order ({(c / c_off - 1) * 100:+.0f}%)"
        print(line)


if __name__ == "__main__":
    main()
