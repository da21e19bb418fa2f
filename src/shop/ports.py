"""Ports a process will listen on: finding free ones a process binds a moment later, and saying
which of a plan's are taken (the cluster's, `shop serve`'s, the tests')."""
from __future__ import annotations

import random
import socket
from dataclasses import dataclass
from pathlib import Path


def _free_port(host: str, avoid: set[int]) -> int:
    """A port for a service's /metrics (see free_ports), none of `avoid`: the ports the plan gave
    already, which are free now only because nothing binds them yet (a bench's cluster once drew
    its web's HTTP port for the user service's /metrics, and would not start)."""
    while (port := free_ports(host, 1)) in avoid:
        pass
    return port


def free_ports(host: str = "127.0.0.1", n: int = 1) -> int:
    """A port p, with p+1 ... p+n-1, free now and below the kernel's ephemeral range. The process
    that binds it does so a second or two later (and keeps it across restarts): a port from the
    ephemeral range (what binding port 0 gives) can be taken meanwhile as the local end of any
    outgoing connection (every process opens dozens to the databases, the broker and Zookeeper as
    it starts), and then that listener never comes up for the life of that connection. CI lost a
    cluster's order service, and later its pay-web, to this."""
    low = _ephemeral_range()[0]
    for port in random.sample(range(max(1024, low - 12000), low - n), 200):
        socks = []
        try:
            for k in range(n):
                s = socket.socket()
                socks.append(s)
                s.bind((host, port + k))
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {n} free ports in a row below {low} on {host}")


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):  # not Linux: IANA's dynamic range, which BSD and macOS use
        return 49152, 65535


@dataclass(frozen=True)
class Listen:
    """A port one of the cluster's processes will listen on."""

    process: str  # its Child.name: "web", "goods-2"
    what: str  # "HTTP", "gRPC", "/metrics"
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port} ({self.process}'s {self.what} port)"


def cannot_listen(host: str, port: int) -> str | None:
    """Why a server could not listen on host:port now (None: it could). With SO_REUSEADDR, as
    uvicorn and gRPC bind: a port held only by connections closing (TIME_WAIT) is not taken."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            s.listen()
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def taken_ports(wanted: list[Listen]) -> list[str]:
    """The ports the cluster cannot have, each with the process that wanted it, said before
    anything starts rather than as a process that dies every few seconds."""
    problems = []
    first: dict[int, Listen] = {}
    for w in wanted:
        other = first.setdefault(w.port, w)
        if other is not w and (other.host == w.host or {other.host, w.host} & {"0.0.0.0", "::", ""}):
            hint = " (SHOP_RPC_PORT is set: unset it, and each service takes a free port)" if w.what == "gRPC" else ""
            problems.append(f"port {w.port} is wanted twice: {other} and {w}{hint}")
        elif why := cannot_listen(w.host, w.port):
            problems.append(f"{w} is taken ({why}; `ss -ltnp 'sport = :{w.port}'` shows by what)")
    return problems
