"""Batcher (infra/rpc/batch.py): calls go alone and at once while fewer than `in_flight` are out;
the calls made meanwhile go together (at most `most` a batch, never more than `in_flight` out), each
caller gets its own result or its own exception, a failed batch fails exactly its callers, a
caller cancelled while its call waits takes it back, and a call out longer than `hold_s` keeps
nobody waiting."""
from __future__ import annotations

import asyncio

import pytest

from shop.infra.rpc.batch import Batcher


class Wire:
    """Calls that take until `release` is set, recording what went out alone and together."""

    def __init__(self) -> None:
        self.sent: list[list[int]] = []  # each gRPC call's items: [n] alone
        self.out = 0
        self.most_out = 0
        self.release = asyncio.Event()

    async def _go(self, items: list[int]) -> None:
        self.sent.append(items)
        self.out += 1
        self.most_out = max(self.most_out, self.out)
        try:
            await self.release.wait()
        finally:
            self.out -= 1

    async def alone(self, item: int) -> int:
        await self._go([item])
        if item < 0:
            raise ValueError(f"refused {item}")
        return item * 10

    async def together(self, items: list[int]) -> list[int | BaseException]:
        await self._go(items)
        if 99 in items:
            raise ConnectionError("the batch never arrived")
        return [ValueError(f"refused {i}") if i < 0 else i * 10 for i in items]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_calls_go_alone_until_in_flight_are_out_then_together() -> None:
    wire = Wire()
    batcher = Batcher(wire.alone, wire.together, in_flight=2, most=3, hold_s=60)
    calls = [asyncio.create_task(batcher(i)) for i in range(1, 10)]
    await settle()
    assert wire.sent == [[1], [2]]  # at once, not held back to gather others
    wire.release.set()
    assert await asyncio.gather(*calls) == [i * 10 for i in range(1, 10)]
    # The seven that waited went at most three a batch, never more than two calls out.
    assert wire.sent == [[1], [2], [3, 4, 5], [6, 7, 8], [9]] and wire.most_out == 2
    assert batcher.batches == 2  # a lone leftover goes alone


async def test_each_caller_gets_its_own_refusal_and_a_failed_batch_fails_its_callers_only() -> None:
    wire = Wire()
    batcher = Batcher(wire.alone, wire.together, in_flight=1, most=3, hold_s=60)
    calls = [asyncio.create_task(batcher(i)) for i in (1, 2, -3, 4, 99, 6)]
    await settle()
    wire.release.set()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert wire.sent == [[1], [2, -3, 4], [99, 6]]
    assert results[:2] == [10, 20] and results[3] == 40
    assert isinstance(results[2], ValueError) and str(results[2]) == "refused -3"
    assert all(isinstance(r, ConnectionError) for r in results[4:])


async def test_a_call_cancelled_while_it_waits_is_not_sent() -> None:
    wire = Wire()
    batcher = Batcher(wire.alone, wire.together, in_flight=1, hold_s=60)
    calls = [asyncio.create_task(batcher(i)) for i in (1, 2, 3)]
    await settle()
    calls[1].cancel()
    await settle()
    wire.release.set()
    assert await calls[0] == 10 and await calls[2] == 30
    assert calls[1].cancelled()
    assert wire.sent == [[1], [3]]


async def test_closing_cancels_what_waits_and_what_is_out() -> None:
    wire = Wire()
    batcher = Batcher(wire.alone, wire.together, in_flight=1, hold_s=60)
    first = asyncio.create_task(batcher(1))
    await settle()
    waiting = [asyncio.create_task(batcher(i)) for i in (2, 3)]
    await settle()
    await batcher.close()
    await settle()
    assert all(w.cancelled() for w in waiting)
    first.cancel()  # a lone call is its caller's own task: the caller ends it
    with pytest.raises(asyncio.CancelledError):
        await first
    assert wire.sent == [[1]]


def test_at_least_one_call_out_and_one_a_batch() -> None:
    for in_flight, most in ((0, 1), (1, 0)):
        with pytest.raises(ValueError):
            Batcher(Wire().alone, Wire().together, in_flight=in_flight, most=most)


async def test_a_call_out_longer_than_hold_s_keeps_nobody_waiting() -> None:
    """A payment's call that waits for its notification, itself a call through the same client:
    were the first to hold its place until it ended, neither would ever end."""
    notified = asyncio.Event()

    async def alone(item: str) -> str:
        if item == "pay":
            await notified.wait()
        else:
            notified.set()
        return item

    async def together(items: list[str]) -> list[str | BaseException]:
        raise AssertionError("nothing waits long enough to go together")

    batcher = Batcher(alone, together, in_flight=1, hold_s=0.05)
    loop = asyncio.get_running_loop()
    started = loop.time()
    pay = asyncio.create_task(batcher("pay"))
    await settle()
    assert await asyncio.wait_for(batcher("notify"), 2) == "notify"
    assert await pay == "pay"
    assert 0.05 <= loop.time() - started < 1.0  # the notification waited out the hold, no more


async def test_with_no_limit_every_call_goes_alone_at_once() -> None:
    """SHOP_RPC_IN_FLIGHT=0: however many are out, each call goes at once on its own, and a refusal
    is still its caller's alone."""
    wire = Wire()
    batcher = Batcher(wire.alone, wire.together, in_flight=None)
    calls = [asyncio.create_task(batcher(i)) for i in (1, 2, -3, 4)]
    await settle()
    assert wire.sent == [[1], [2], [-3], [4]] and wire.most_out == 4
    wire.release.set()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert results[:2] == [10, 20] and isinstance(results[2], ValueError) and results[3] == 40
    assert batcher.batches == 0
