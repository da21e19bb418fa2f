"""GroupCommit (infra/db/group_commit.py): the first item is written at once and alone, the items
that come while a write is in flight go together in the next (at most `most`), each caller gets its
own result, a failed write fails exactly its batch's callers, and a caller that stops waiting does
not take its item out of a write."""
from __future__ import annotations

import asyncio

import pytest

from shop.infra.db.group_commit import GroupCommit


class Writes:
    """A write that takes until `release` is set, recording each batch."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        self.fail_on = fail_on

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        self.started.set()
        await self.release.wait()
        if self.fail_on is not None and self.fail_on in items:
            raise RuntimeError(f"batch with {self.fail_on}")
        return [i * 10 for i in items]


async def test_a_lone_item_is_written_at_once_and_the_ones_that_wait_go_together() -> None:
    writes = Writes()
    batch = GroupCommit(writes, most=3)
    first = asyncio.create_task(batch(1))
    await writes.started.wait()
    assert writes.batches == [[1]]  # not held back to gather others
    rest = [asyncio.create_task(batch(i)) for i in range(2, 7)]
    await asyncio.sleep(0)
    writes.release.set()
    assert await first == 10
    assert await asyncio.gather(*rest) == [20, 30, 40, 50, 60]
    assert writes.batches == [[1], [2, 3, 4], [5, 6]]  # those that waited, at most 3 a write
    assert batch.batches == 3


async def test_a_failed_write_fails_its_own_batch_only() -> None:
    writes = Writes(fail_on=3)
    writes.release.set()
    batch = GroupCommit(writes, most=2)
    results = await asyncio.gather(*(batch(i) for i in range(1, 6)), return_exceptions=True)
    assert writes.batches == [[1, 2], [3, 4], [5]]  # all five were waiting when the writer began
    assert results[:2] == [10, 20] and results[4] == 50
    assert all(isinstance(r, RuntimeError) for r in results[2:4])


async def one_in_flight(writes: Writes) -> tuple[GroupCommit[int, int], asyncio.Task[int], asyncio.Task[int]]:
    """Item 1 being written, item 2 waiting for the next write."""
    batch = GroupCommit(writes)
    first = asyncio.create_task(batch(1))
    await writes.started.wait()
    second = asyncio.create_task(batch(2))
    await asyncio.sleep(0)
    return batch, first, second


async def test_a_caller_that_stops_waiting_leaves_its_item_in_the_write() -> None:
    writes = Writes()
    _, first, impatient = await one_in_flight(writes)
    impatient.cancel()
    with pytest.raises(asyncio.CancelledError):
        await impatient
    writes.release.set()
    assert await first == 10
    await asyncio.sleep(0)
    assert writes.batches == [[1], [2]]  # written all the same: its write may have been under way


async def test_the_writer_cancelled_cancels_its_callers_and_the_next_call_starts_afresh() -> None:
    writes = Writes()
    batch, first, waiting = await one_in_flight(writes)
    assert batch._writer is not None
    batch._writer.cancel()  # the process stopping
    for caller in (first, waiting):
        with pytest.raises(asyncio.CancelledError):
            await caller
    writes.release.set()
    assert await batch(3) == 30
