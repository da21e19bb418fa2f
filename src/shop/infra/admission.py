"""Admission control: at most `active` requests in progress, the others waiting in one FIFO queue of
at most `queue` places for at most `wait_s` seconds; a request that cannot start in time, or finds
the queue full, is refused at once (the front door answers 503 with Retry-After, infra/web.py).

Why: a shop taking every request it is sent shares its CPU among all of them, and under more load
than it can serve each one's share shrinks until some wait many seconds (p99 10 s at 512
connections) while the orders/s stay the same. Bounding the work in progress keeps each admitted
request's service time short; the FIFO queue makes the oldest waiter the next to start, so no
connection starves; the bounded wait turns the rest into a fast refusal the client can retry.

How many may be in progress adapts (AIMD): an order's own time grows with the work beside it and
with what else the machine runs (the distributed shop on a busy 2-core box took 1 s an order at 24
in progress), so a fixed number that keeps the tail short on a quiet machine does not on a busy
one. Each request that took longer than `target_s` from its start to its answer takes half a slot
off the limit (a round of slow ones halves it); each quicker one adds 1/limit (a round of quick ones
adds one), up to `active`. An answer's time is then about `wait_s` in the queue and `target_s` at
work. The limit stays at `least` or more: where an order takes longer than the target even alone
(a slow database), the limit would otherwise come down to one order at a time and the orders/s
with it, without making any order quicker.

Plain asyncio (one event loop, no locks): a slot freed is handed to the oldest live waiter
directly, so a newcomer cannot overtake the queue between a release and the waiter waking up."""
from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable


class Limiter:
    """`await admit()` True: the caller holds a slot and must `release(seconds)` it once, saying how
    long its work took (None: not counted); False: refused, nothing held. A waiter cancelled (its
    client gone) leaves its place, or gives back the slot it was handed just then.
    `on_wait(seconds)`: told each admitted request's time in the queue. `target_s` None: the limit
    stays `active`."""

    def __init__(self, active: int, queue: int, wait_s: float, target_s: float | None = None, least: int = 1,
                 on_wait: Callable[[float], None] | None = None) -> None:
        if active < 1 or least < 1 or queue < 0 or wait_s < 0 or (target_s is not None and target_s <= 0):
            raise ValueError("admission needs active >= 1, least >= 1, queue >= 0, wait_s >= 0, target_s > 0")
        self.active = active
        self.least = float(min(least, active))
        self.queue = queue
        self.wait_s = wait_s
        self.target_s = target_s
        self.on_wait = on_wait
        self.limit = float(active)  # slots that may be held now: 1..active
        self.running = 0  # slots held
        self.waiting = 0  # live waiters (the deque may still hold ones that timed out or left)
        self._waiters: deque[asyncio.Future[bool]] = deque()

    async def admit(self) -> bool:
        if self.running < int(self.limit) and not self.waiting:
            self.running += 1
            return True
        if self.waiting >= self.queue:
            return False
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiters.append(waiter)
        self.waiting += 1
        started = time.monotonic()
        timer = loop.call_later(self.wait_s, self._expire, waiter)
        try:
            admitted = await waiter
        except asyncio.CancelledError:
            timer.cancel()
            if waiter.done() and not waiter.cancelled():
                if waiter.result():  # handed a slot just as the caller was cancelled: pass it on
                    self.release(None)
            else:
                waiter.cancel()
                self.waiting -= 1
            raise
        timer.cancel()
        if admitted and self.on_wait is not None:
            self.on_wait(time.monotonic() - started)
        return admitted

    def _expire(self, waiter: asyncio.Future[bool]) -> None:
        if not waiter.done():
            waiter.set_result(False)
            self.waiting -= 1

    def release(self, seconds: float | None) -> None:
        """The slot goes to the oldest live waiters, as many as the limit now allows."""
        if seconds is not None and self.target_s is not None:
            if seconds > self.target_s:
                self.limit = max(self.least, self.limit - 0.5)
            else:
                self.limit = min(float(self.active), self.limit + 1 / self.limit)
        self.running -= 1
        # Counted held before the waiter runs: a newcomer meanwhile finds it taken (and queues).
        while self.running < int(self.limit) and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.waiting -= 1
                self.running += 1
                waiter.set_result(True)
