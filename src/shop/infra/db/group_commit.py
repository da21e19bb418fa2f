"""Group commit: the same small transaction, asked for by many requests at once, written for all of
them in one.

Each unit of work costs its round trips (BEGIN, the statements, COMMIT: each a wait, and CPU on
both sides of the wire) and a flush of the log, whatever it carries. A `GroupCommit` writes the
first item at once, alone; the items that arrive while a write is in flight wait for it and then
go together in the next, up to `most`. An idle service pays no delay, a busy one pays a
transaction per batch rather than per request.

Why by hand: this is the few lines of a queue and a future per item; the libraries that batch
(aiodataloader and the like) batch reads by key within one loop tick, delaying even a lone call.

What a batch shares: its fate. A write that fails fails every item in it (each caller sees the
error, as it would have from a transaction of its own), and none is written. A caller that stops
waiting (cancelled) does not take its item back: a write may already be carrying it, so an item is
written or not as its batch is, whatever became of its caller. Only what would be safe to commit
after its caller went away may be handed to one.
"""
from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """`await batch(item)`: `write(items)` is called with this item and those waiting beside it,
    and returns one result per item, in their order."""

    def __init__(self, write: Callable[[list[T]], Awaitable[Sequence[R]]], most: int = 64) -> None:
        self.write = write
        self.most = most
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.batches = 0  # written so far (tests, benchmarks)

    async def __call__(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[R] = loop.create_future()
        self._waiting.append((item, done))
        if self._writer is None:
            # In a context of its own: a batch is no caller's (its log lines, its spans).
            self._writer = loop.create_task(self._write_all(), context=contextvars.Context())
        return await done

    async def _write_all(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:self.most], self._waiting[self.most:]
                try:
                    results = await self.write([item for item, _ in batch])
                except Exception as exc:
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                except BaseException:  # cancelled (the process stopping): so are its callers
                    for _, done in batch:
                        done.cancel()
                    raise
                finally:
                    self.batches += 1
                for (_, done), result in zip(batch, results, strict=True):
                    if not done.done():
                        done.set_result(result)
        finally:
            self._writer = None
            for _, done in self._waiting:  # left when the writer was cancelled
                done.cancel()
            self._waiting = []
