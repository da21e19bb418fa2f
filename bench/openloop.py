"""An open-loop HTTP/1.1 load generator for the benches: pre-encoded requests, each sent at its
scheduled time whatever the earlier answers did, over plain asyncio sockets (keep-alive).

Why not wrk: wrk's Lua `delay()` paces each connection, which is open loop only while every answer
comes back well within the interval, and wrk reports no per-request time a bench could join to what
the shop recorded (the payment's id, the order's timeline). Why not httpx: it costs about as much per
request as the server does (the guide forbids it as a load generator). A raw socket with bytes
encoded before the run costs ~50-100 us of this process per request: cheap at 500/s.

A request goes out on an idle connection, or on a new one when every connection is busy (up to
`max_connections`; past that it waits, and that wait counts in its latency). Latency is measured
from the scheduled time, so a late send (this process or the machine busy) is not hidden
(coordinated omission); `lag` says how late the sends were.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit


def encode(url: str, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    host = urlsplit(url).netloc
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class Answer:
    index: int
    scheduled: float  # monotonic
    sent: float  # monotonic
    sent_wall: float  # time.time() at the send: to compare with the shop's own timestamps
    answered: float  # monotonic
    status: int
    body: bytes

    @property
    def latency(self) -> float:
        return self.answered - self.scheduled


@dataclass
class _Pool:
    host: str
    port: int
    limit: int
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = field(default_factory=list)
    opened: int = 0
    freed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def get(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while True:
            if self.idle:
                return self.idle.pop()
            if self.opened < self.limit:
                self.opened += 1
                try:
                    return await asyncio.open_connection(self.host, self.port)
                except OSError:
                    self.opened -= 1
                    raise
            async with self.freed:
                await self.freed.wait()

    async def reopen(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A new connection in a closed one's place (its count kept)."""
        return await asyncio.open_connection(self.host, self.port)

    async def put(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None) -> None:
        if conn is None:
            self.opened -= 1
        else:
            self.idle.append(conn)
        async with self.freed:
            self.freed.notify()

    def close(self) -> None:
        for _, w in self.idle:
            w.close()


class Stale(Exception):
    """The server had closed this idle kept-alive connection (uvicorn's keep-alive timeout) before
    the request reached it: nothing was read, so the request is sent again on a new connection, as
    any HTTP client does."""


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bytes]:
    writer.write(request)
    first = await reader.readline()
    if not first:
        raise Stale
    status = int(first.split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def run(url: str, requests: list[bytes], rate: float, max_connections: int = 512) -> tuple[list[Answer], float]:
    """Send requests[i] at start + i / rate; every answer (status 0: the connection failed) and
    the largest lag of a send behind its schedule (seconds)."""
    u = urlsplit(url)
    pool = _Pool(u.hostname or "127.0.0.1", u.port or 80, max_connections)
    loop = asyncio.get_running_loop()
    answers: list[Answer] = []
    max_lag = 0.0

    async def one(i: int, scheduled: float) -> None:
        nonlocal max_lag
        conn = None
        sent = sent_wall = loop.time()
        try:
            conn = await pool.get()
        except OSError as exc:  # could not connect: nothing opened, nothing to give back
            answers.append(Answer(i, scheduled, sent, time.time(), loop.time(), 0, repr(exc).encode()))
            return
        try:
            sent, sent_wall = loop.time(), time.time()
            max_lag = max(max_lag, sent - scheduled)
            try:
                status, body = await _exchange(*conn, requests[i])
            except Stale:
                conn[1].close()
                conn = None
                conn = await pool.reopen()
                status, body = await _exchange(*conn, requests[i])
        except (Stale, OSError, ValueError, IndexError, asyncio.IncompleteReadError) as exc:
            if conn is not None:
                conn[1].close()
            conn = None
            status, body = 0, repr(exc).encode()
        answers.append(Answer(i, scheduled, sent, sent_wall, loop.time(), status, body))
        await pool.put(conn)

    start = loop.time() + 0.05
    tasks = []
    for i in range(len(requests)):
        at = start + i / rate
        delay = at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, at)))
    await asyncio.gather(*tasks)
    pool.close()
    answers.sort(key=lambda a: a.index)
    return answers, max_lag


def pct(xs: list[float], p: float) -> float:
    """The p-quantile of xs in milliseconds (nan when empty)."""
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000
