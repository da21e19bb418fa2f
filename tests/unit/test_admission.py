"""The admission limiter (infra/admission.py): slots, a FIFO queue, its bound and its wait."""
from __future__ import annotations

import asyncio

import pytest

from shop.infra.admission import Limiter


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def queued(limiter: Limiter, n: int) -> list[asyncio.Task[bool]]:
    """n waiters, queued in this order."""
    tasks = []
    for _ in range(n):
        tasks.append(asyncio.create_task(limiter.admit()))
        await settle()
    return tasks


async def test_admits_up_to_its_slots_then_queues_then_refuses():
    waits: list[float] = []
    limiter = Limiter(active=2, queue=2, wait_s=10, on_wait=waits.append)
    assert await limiter.admit() and await limiter.admit()
    waiters = await queued(limiter, 2)
    assert limiter.running == 2 and limiter.waiting == 2 and not any(t.done() for t in waiters)
    assert await limiter.admit() is False  # the queue is full: refused at once, nothing held
    assert limiter.running == 2 and limiter.waiting == 2
    limiter.release(None)
    await settle()
    assert waiters[0].result() is True and not waiters[1].done()
    assert limiter.running == 2 and limiter.waiting == 1 and len(waits) == 1


async def test_the_oldest_waiter_starts_first():
    limiter = Limiter(active=1, queue=100, wait_s=10)
    assert await limiter.admit()
    waiters = await queued(limiter, 50)
    order = []
    for i, t in enumerate(waiters):
        t.add_done_callback(lambda _, i=i: order.append(i))
    for _ in waiters:
        limiter.release(None)
        await settle()
    assert order == list(range(50))
    limiter.release(None)
    assert limiter.running == 0 and limiter.waiting == 0


async def test_a_freed_slot_goes_to_a_waiter_not_to_a_newcomer():
    limiter = Limiter(active=1, queue=1, wait_s=10)
    assert await limiter.admit()
    [waiter] = await queued(limiter, 1)
    limiter.release(None)
    # Before the waiter has run, a newcomer finds the slot taken (handed over) and the queue empty:
    # it queues rather than overtaking.
    newcomer = asyncio.create_task(limiter.admit())
    await settle()
    assert waiter.result() is True and not newcomer.done()
    newcomer.cancel()
    await settle()
    assert limiter.running == 1 and limiter.waiting == 0


async def test_a_waiter_past_its_wait_is_refused_and_leaves_its_place():
    limiter = Limiter(active=1, queue=1, wait_s=0.05)
    assert await limiter.admit()
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await limiter.admit() is False
    assert 0.04 <= loop.time() - start < 1
    assert limiter.waiting == 0 and limiter.running == 1
    [waiter] = await queued(limiter, 1)  # its place is free again
    limiter.release(None)
    assert await waiter is True and limiter.running == 1


async def test_a_cancelled_waiter_frees_its_place():
    limiter = Limiter(active=1, queue=2, wait_s=10)
    assert await limiter.admit()
    first, second = await queued(limiter, 2)
    first.cancel()
    await settle()
    assert first.cancelled() and limiter.waiting == 1
    [third] = await queued(limiter, 1)  # the cancelled one's place taken
    limiter.release(None)
    await settle()
    assert second.result() is True and not third.done()


async def test_a_waiter_cancelled_as_it_is_handed_the_slot_passes_it_on():
    limiter = Limiter(active=1, queue=2, wait_s=10)
    assert await limiter.admit()
    first, second = await queued(limiter, 2)
    limiter.release(None)  # the slot is first's, but first has not run yet
    first.cancel()
    await settle()
    assert first.cancelled() and second.result() is True
    assert limiter.running == 1 and limiter.waiting == 0


async def test_no_queue_refuses_at_once_and_settings_are_checked():
    limiter = Limiter(active=1, queue=0, wait_s=1)
    assert await limiter.admit() and await limiter.admit() is False
    limiter.release(None)
    assert limiter.running == 0
    with pytest.raises(ValueError):
        Limiter(active=0, queue=1, wait_s=1)


async def test_the_limit_comes_down_while_requests_are_slow_and_back_up_when_quick():
    limiter = Limiter(active=4, queue=10, wait_s=10, target_s=0.1)
    for _ in range(4):
        assert await limiter.admit()
    waiters = await queued(limiter, 4)
    limiter.release(0.5)  # slow: 3.5 may be held, 3 are: nobody starts
    limiter.release(0.5)  # 3.0 may be held, 2 are: the oldest waiter starts
    await settle()
    assert limiter.limit == 3.0 and limiter.running == 3 and [t.done() for t in waiters] == [True, False, False, False]
    for _ in range(4):  # a round of slow ones halves the limit
        limiter.release(0.5)
        await settle()
    assert limiter.limit == 1.0 and limiter.running == 1 and [t.done() for t in waiters] == [True, True, True, False]
    limiter.release(0.5)  # no lower than 1: the last waiter starts
    await settle()
    assert limiter.limit == 1.0 and limiter.running == 1 and waiters[3].done()
    more = await queued(limiter, 2)
    limiter.release(0.01)  # quick: 1 + 1/1 = 2 may be held: both start
    await settle()
    assert limiter.limit == 2.0 and limiter.running == 2 and all(t.result() for t in more)
    for _ in range(100):  # up to `active` and no higher
        limiter.release(0.01)
        assert await limiter.admit()
    assert limiter.limit == 4.0


async def test_without_a_target_or_a_duration_the_limit_stays():
    limiter = Limiter(active=2, queue=1, wait_s=10)
    assert await limiter.admit()
    limiter.release(60.0)
    assert limiter.limit == 2.0
    limiter = Limiter(active=2, queue=1, wait_s=10, target_s=0.1)
    assert await limiter.admit()
    limiter.release(None)  # a cancelled waiter's slot passed on: no measure of the work
    assert limiter.limit == 2.0


async def test_the_limit_stays_at_its_least():
    limiter = Limiter(active=8, queue=0, wait_s=1, target_s=0.1, least=3)
    for _ in range(50):
        assert await limiter.admit()
        limiter.release(5.0)
    assert limiter.limit == 3.0
    assert all([await limiter.admit() for _ in range(3)]) and await limiter.admit() is False
