"""Batching a client's calls to one service: while `in_flight` calls are out, the calls made
meanwhile wait, and the next to go out carries up to `most` of them in one gRPC call
(BatchService.Call, proto/shop/v1/batch.proto; the server handles each item as a lone call).

Why: under load a call's cost is mostly gRPC's own, per call and on both sides (its HTTP/2 frames,
TLS records, the completion queue's wake-ups, the server's task per call), whatever the call
carries. A busy order service makes hundreds of small calls a second to each participant: sent
together, they pay that once per batch. An idle client pays nothing: a call goes alone, at once, as
before, until `in_flight` are out.

Why by hand: what batches calls in Python (aiodataloader and the like) batches reads by key within
one turn of the loop, delaying even a lone call; gRPC itself has no batching of unary calls. It is
infra/db/group_commit.py's idea with two differences that matter for calls: several go out at once
(a participant serves calls concurrently, and a registry's providers share the load), and a caller
that stops waiting before its call left takes it back.

A call holds its place among the `in_flight` for HOLD_S at most: one that takes longer (a slow read,
a provider that hangs, a payment whose answer waits for its notification, itself a call through
the same client) keeps nobody waiting longer than that.

What a batch shares: its transport. A batch that fails to arrive (the provider down, the deadline
passed) fails each of its calls as a lone call would have failed, and each caller decides alone
whether to retry (client.py). A refusal is one item's: the others are answered as usual.
"""
from __future__ import annotations

import asyncio
import contextvars
import sys
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

# How long a call out keeps the calls made after it waiting, at most (Batcher._hold).
HOLD_S = 0.02

T = TypeVar("T")
R = TypeVar("R")


def _held_by_nobody() -> None:
    pass


class Batcher(Generic[T, R]):
    """`await batcher(item)`: `alone(item)` at once while fewer than `in_flight` calls are out;
    otherwise the item waits and goes out with those waiting beside it, `together(items)`, which
    answers one result or exception per item, in their order."""

    def __init__(self, alone: Callable[[T], Awaitable[R]],
                 together: Callable[[list[T]], Awaitable[Sequence[R | BaseException]]],
                 *, in_flight: int | None = 2, most: int = 32, hold_s: float = HOLD_S) -> None:
        if (in_flight is not None and in_flight < 1) or most < 1:
            raise ValueError("in_flight and most must be at least 1 (in_flight None: no limit)")
        self.alone = alone
        self.together = together
        self.in_flight = in_flight or sys.maxsize  # None: every call alone
        self.most = most
        self.hold_s = hold_s
        self._out = 0
        self._waiting: deque[tuple[T, asyncio.Future[R]]] = deque()
        self._sending: set[asyncio.Task[None]] = set()
        self.batches = 0  # sent together so far (tests, benchmarks)

    async def __call__(self, item: T) -> R:
        if self._out < self.in_flight and not self._waiting:
            release = self._hold()
            try:
                return await self.alone(item)
            finally:
                release()
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, done))
        # A caller cancelled while its item waits takes it back: its future is done, and a batch
        # leaves done items behind (below). Once sent, an item is answered whatever its caller does.
        return await done

    def _send_waiting(self) -> None:
        while self._out < self.in_flight and self._waiting:
            batch: list[tuple[T, asyncio.Future[R]]] = []
            while self._waiting and len(batch) < self.most:
                item, done = self._waiting.popleft()
                if not done.done():
                    batch.append((item, done))
            if not batch:
                continue
            release = self._hold()
            # In a context of its own: a batch is no caller's (its log lines, its spans).
            task = asyncio.get_running_loop().create_task(self._send(batch, release), context=contextvars.Context())
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    def _hold(self) -> Callable[[], None]:
        """Count a call out until it ends, or for hold_s at most: a call that takes longer (a slow
        read, a provider that hangs, or one whose answer waits for a call of ours that waits here:
        a payment waiting for its notification) stops keeping the others waiting. Returns what ends
        the hold; calling it twice is harmless. With no limit nothing ever waits: nothing to count."""
        if self.in_flight == sys.maxsize:
            return _held_by_nobody
        self._out += 1
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                timer.cancel()
                self._out -= 1
                self._send_waiting()

        timer = asyncio.get_running_loop().call_later(self.hold_s, release)
        return release

    async def _send(self, batch: list[tuple[T, asyncio.Future[R]]], release: Callable[[], None]) -> None:
        try:
            if len(batch) == 1:
                results: Sequence[R | BaseException] = [await self.alone(batch[0][0])]
            else:
                self.batches += 1
                results = await self.together([item for item, _ in batch])
        except Exception as exc:  # the whole batch failed to go or come back
            results = [exc] * len(batch)
        except BaseException:  # cancelled (the process stopping): so are its callers
            for _, done in batch:
                done.cancel()
            raise
        finally:
            release()
        for (_, done), result in zip(batch, results, strict=True):
            if done.done():
                continue
            if isinstance(result, BaseException):
                done.set_exception(result)
            else:
                done.set_result(result)

    async def close(self) -> None:
        """Cancel what is waiting or being sent (the client closing)."""
        for _, done in self._waiting:
            done.cancel()
        self._waiting.clear()
        for task in list(self._sending):
            task.cancel()
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
