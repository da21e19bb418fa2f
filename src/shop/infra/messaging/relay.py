"""The relay: publishes a service's due outbox rows, and the loop every poller runs."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from shop.infra import metrics
from shop.infra.db import Database, UnitOfWork
from shop.infra.failures import is_unavailable
from shop.infra.messaging.broker import Broker
from shop.infra.messaging.message import Message
from shop.infra.messaging.outbox import Outbox
from shop.infra.tracing import Tracing

log = logging.getLogger("shop.messaging")


Guard = Callable[[UnitOfWork, Message], Awaitable[bool]]

# Rows per broker write: enough that a backlog costs two flushes per this many, few enough that the
# embedded broker's write (one SQLite transaction, on the event loop) holds up no answer for long.
WRITE_AT_MOST = 32


class Relay:
    """Publishes a service's due outbox rows; removes each only after the broker has it.

    A crash between publishing and removing sends it again later: at least once, by design.
    A guard (per tag) runs in a transaction before publishing and may drop the row: the order
    service uses it to cancel an order that its armed cancel message is about to announce.
    """

    def __init__(
        self, name: str, db: Database, outbox: Outbox, broker: Broker, guards: dict[str, Guard] | None = None,
        poll_s: float = 0.25, lease_s: float = 10.0, retention_s: float = 7 * 86400, tracing: Tracing = Tracing.OFF,
    ) -> None:
        self.tracing = tracing
        self.retention_ms = int(retention_s * 1000)
        self.name = name
        self.db = db
        self.outbox = outbox
        self.broker = broker
        self.guards = guards or {}
        self.poll_s = poll_s
        self.lease_ms = int(lease_s * 1000)
        self._wake = asyncio.Event()
        # One pass over the due rows at a time in this process (the loop's, or a settling
        # request's): passes run side by side would each take every due row's guard in turn, the
        # same order rows locked again and again (see Settler).
        self._pass = asyncio.Lock()

    def wake(self) -> None:
        self._wake.set()

    async def sample(self) -> None:
        """The outbox's gauges, and the pruning of what was sent before the retention period
        (infra.metrics.Sampler runs this every few seconds)."""
        async with self.db.unit_of_work() as uow:
            await self.outbox.prune(uow, self.retention_ms)
            await uow.commit()
        async with self.db.unit_of_work(readonly=True) as uow:
            due, oldest_s = await self.outbox.due_stats(uow)
        metrics.outbox_sampled(self.name, due, oldest_s)

    async def run_once(self) -> int:
        async with self._pass:
            msgs = await self.outbox.due(self.db)
            await self._send_all(msgs)
            return len(msgs)

    async def send_now(self, tag: str, key: str) -> None:
        """Send this message (tag, key) now if it is due, and nothing else: a settling request waits
        for its own order's message, not for the backlog. In a pass of its own (the lock), so the
        loop's pass has not read it too and sends it once."""
        async with self._pass:
            await self._send_all(await self.outbox.due_for(self.db, tag, key))

    async def send(self, msg: Message) -> None:
        """Send one row read as due by outbox.due(), some time ago."""
        await self._send_all([msg])

    async def _send_all(self, msgs: list[Message]) -> None:
        """Guard each row, then hand the broker every row kept in one write and mark them sent in
        one transaction: one pass costs two flushes, not two per message (at 500 payments a second
        one row at a time fell behind by seconds). A failure anywhere leaves every row due: all
        are sent again, which the consumers' inboxes make harmless."""
        for at in range(0, len(msgs), WRITE_AT_MOST):
            kept = [msg for msg in msgs[at:at + WRITE_AT_MOST] if await self._guarded(msg)]
            if not kept:
                continue
            # In the trace that wrote each row.
            with self.tracing.publishing(self.name, kept):
                await self.broker.publish_many(kept)
            async with self.db.unit_of_work() as uow:
                await self.outbox.mark_sent(uow, [msg.msg_id for msg in kept])
                await uow.commit()

    async def _guarded(self, msg: Message) -> bool:
        """Whether to publish the row, after its tag's guard (if any) acted on it."""
        guard = self.guards.get(msg.tag)
        if guard is None:
            return True
        async with self.db.unit_of_work() as uow:
            keep = await guard(uow, msg)
            # The guard acts on what the row says now, not on what was read: an order
            # confirmed just after its deadline has re-armed the row for the payment timeout,
            # and another instance's relay may have taken it. The claim comes after the
            # guard's compare-and-set so that every transaction here locks the order row
            # before its outbox row (as confirming does): no deadlock between the two.
            if not await self.outbox.claim(uow, msg.msg_id, self.lease_ms):
                return False  # rolled back: the guard's change with it
            if not keep:
                await self.outbox.delete(uow, msg.msg_id)
            await uow.commit()
        return keep

    async def run(self) -> None:
        # A database or broker hiccup leaves the rows in place: they are tried again shortly.
        await poll_forever(self.run_once, self._wake, self.poll_s, f"relay {self.name}")


class Settler:
    """A failed, cancelled or refunded order's request waits (bounded) until its message is handled
    everywhere, so the caller sees stock, coupon and balance already back: publish the service's
    due messages now, then wait for every group's report. Best effort: with the broker away the
    message stays in the outbox and leaves when it is back; the caller's answer does not wait."""

    def __init__(self, relay: Relay, broker: Broker, timeout_s: float = 2.0) -> None:
        self.relay = relay
        self.broker = broker
        self.timeout_s = timeout_s

    async def settle(self, tag: str, key: str) -> None:
        # Only this message, so not behind a backlog; still bounded, since it waits for the pass in
        # progress (after a restart, every cancel and refund in flight ran the whole backlog and hung
        # past the client's 10 s: tests/e2e/test_infra_restarts.py). The relay's loop sends what is left.
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.relay.send_now(tag, key)
        except TimeoutError:
            log.info("%s/%s: the relay is still busy after %ss; its loop sends it", tag, key, self.timeout_s)
            return
        except Exception as exc:  # noqa: BLE001 - the relay's loop sends it later
            log.warning("could not publish %s/%s now (%r); the relay will", tag, key, exc)
            return
        await self.broker.wait_handled(tag, key, timeout_s=self.timeout_s)


async def poll_forever(step: Callable[[], Awaitable[int]], wake: asyncio.Event, poll_s: float, what: str) -> None:
    """Run `step` (which returns how much it found to do) again at once while it finds work, and
    otherwise after `poll_s` or as soon as `wake` is set. The event is cleared before looking, so
    a wake that comes while `step` runs is not lost."""
    while True:
        wake.clear()
        try:
            found = await step()
        except Exception as exc:  # noqa: BLE001 - logged; the loop must outlive any one failure
            task = asyncio.current_task()
            if task is not None and task.cancelling():  # a cancel a library turned into its own error
                raise asyncio.CancelledError from exc
            if is_unavailable(exc):  # the broker or the database restarting: expected, and said in one line
                log.warning("%s: a dependency is unavailable (%r); retrying", what, exc)
            else:
                log.exception("%s failed; retrying", what)
            found = 0
        if found:
            await asyncio.sleep(0)  # let what it started run before looking again
            continue
        await _nap(wake, poll_s)


async def _nap(wake: asyncio.Event, seconds: float) -> None:
    """Sleep until woken or the poll interval passes. Not wait_for(): on 3.11 a cancel that
    lands as the wait times out can be swallowed, and stop() would wait forever."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await wake.wait()


def backoff_ms(attempt: int, base_ms: int, cap_ms: int) -> int:
    return min(cap_ms, base_ms * (2 ** max(0, attempt - 1)))
