"""Messages: the outbox every service writes in its own transactions, the relay that publishes it,
the inbox (consumer log) that makes every consumer idempotent, and the embedded broker.

The outbox (`trade_mq_producer_temp`) holds a message until the broker has it; a row may carry
a due time in the future (the armed cancel of ARCHITECTURE.md point 5, an unpaid order's timeout).
The inbox (`trade_mq_consumer_log`) is written in the same transaction as the consumer's work,
keyed (group, tag, key): a redelivered message finds its row and is only acknowledged.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
import sqlalchemy as sa

from shop.common.clock import now_ms, utcnow
from shop.infra.db import Database, Query, UnitOfWork, bind, insert_ignore
from shop.infra.types import Timestamp

log = logging.getLogger("shop.messaging")


@dataclass(frozen=True, slots=True)
class Message:
    topic: str  # RocketMQ topic / RabbitMQ exchange
    tag: str  # RocketMQ tag / RabbitMQ routing key
    key: str  # the business key (an order id): the inbox deduplicates on (group, tag, key)
    body: dict[str, Any]
    msg_id: str = field(default_factory=lambda: os.urandom(16).hex())

    def encode(self) -> bytes:
        return orjson.dumps(self.body)

    @property
    def event(self) -> str:
        return f"{self.topic}_{self.tag}"


def add_message_tables(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    """Every service owns an outbox and an inbox in its own database."""
    outbox = sa.Table(
        "trade_mq_producer_temp",
        metadata,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("group_name", sa.String(100), nullable=False),
        sa.Column("msg_topic", sa.String(100), nullable=False),
        sa.Column("msg_tag", sa.String(100), nullable=False),
        sa.Column("msg_key", sa.String(100), nullable=False),
        sa.Column("msg_body", sa.Text, nullable=False),
        sa.Column("msg_status", sa.Integer, nullable=False, server_default="0"),
        sa.Column("create_time", Timestamp(), nullable=False),
        # Epoch milliseconds after which the relay may publish it: now, or a deadline.
        sa.Column("due_at", sa.BigInteger, nullable=False),
        sa.Index("ix_trade_mq_producer_temp_due_at", "due_at"),
    )
    inbox = sa.Table(
        "trade_mq_consumer_log",
        metadata,
        sa.Column("group_name", sa.String(100), primary_key=True),
        sa.Column("msg_tag", sa.String(100), primary_key=True),
        sa.Column("msg_key", sa.String(100), primary_key=True),
        sa.Column("msg_id", sa.String(64), nullable=False),
        sa.Column("msg_body", sa.Text, nullable=False),
        sa.Column("consumer_status", sa.Integer, nullable=False),  # 2 done (in the work's transaction)
        sa.Column("consumer_times", sa.Integer, nullable=False),
        sa.Column("consumer_timestamp", Timestamp(), nullable=False),
        sa.Column("remark", sa.String(255)),
    )
    return outbox, inbox


class Outbox:
    """Statements on one service's outbox table."""

    def __init__(self, table: sa.Table, group: str) -> None:
        t = self.table = table
        self.group = group
        self._add = Query(
            sa.insert(t).values(
                bind("id", "group_name", "msg_topic", "msg_tag", "msg_key", "msg_body", "create_time", "due_at")
            )
        )
        self._delete = Query(sa.delete(t).where(t.c.id == sa.bindparam("id")))
        self._make_due = Query(
            sa.update(t).where(t.c.id == sa.bindparam("id")).values(due_at=sa.bindparam("due_at"))
        )
        self._due_by_key = Query(
            sa.update(t)
            .where(t.c.msg_tag == sa.bindparam("tag"), t.c.msg_key == sa.bindparam("key"))
            .values(due_at=sa.bindparam("due_at"))
        )
        self._claim = Query(
            sa.update(t)
            .where(t.c.id == sa.bindparam("id"), t.c.due_at <= sa.bindparam("now"))
            .values(due_at=sa.bindparam("lease_until"))
        )
        self._delete_by_key = Query(
            sa.delete(t).where(t.c.msg_tag == sa.bindparam("tag"), t.c.msg_key == sa.bindparam("key"))
        )
        self._due = Query(
            sa.select(t.c.id, t.c.msg_topic, t.c.msg_tag, t.c.msg_key, t.c.msg_body, t.c.due_at)
            .where(t.c.due_at <= sa.bindparam("now"))
            .order_by(t.c.due_at)
            .limit(200)
        )
        self._count_due = Query(sa.select(sa.func.count().label("n")).select_from(t).where(t.c.due_at <= sa.bindparam("now")))

    async def add(self, uow: UnitOfWork, msg: Message, due_at_ms: int | None = None) -> None:
        await uow.execute(
            self._add,
            id=msg.msg_id,
            group_name=self.group,
            msg_topic=msg.topic,
            msg_tag=msg.tag,
            msg_key=msg.key,
            msg_body=msg.encode().decode(),
            create_time=utcnow(),
            due_at=now_ms() if due_at_ms is None else due_at_ms,
        )

    async def delete(self, uow: UnitOfWork, msg_id: str) -> int:
        return await uow.execute(self._delete, id=msg_id)

    async def make_due(self, uow: UnitOfWork, msg_id: str, due_at_ms: int | None = None) -> int:
        """Fire the message now, or re-arm it for another deadline."""
        return await uow.execute(self._make_due, id=msg_id, due_at=now_ms() if due_at_ms is None else due_at_ms)

    async def set_due(self, uow: UnitOfWork, tag: str, key: str, due_at_ms: int) -> int:
        """Re-arm (or fire now) the message with this tag and key: a deadline moved."""
        return await uow.execute(self._due_by_key, tag=tag, key=key, due_at=due_at_ms)

    async def claim(self, uow: UnitOfWork, msg_id: str, lease_ms: int) -> bool:
        """Take a due row for sending: only if it is still due (not re-armed, not removed, not
        taken by another relay since it was read), and not due again until the lease ends, so a
        relay that dies before sending it leaves it for a later pass."""
        now = now_ms()
        return await uow.execute(self._claim, id=msg_id, now=now, lease_until=now + lease_ms) == 1

    async def disarm(self, uow: UnitOfWork, tag: str, key: str) -> int:
        return await uow.execute(self._delete_by_key, tag=tag, key=key)

    async def due(self, db: Database) -> list[Message]:
        rows = await db.fetchall(self._due, now=now_ms())
        return [
            Message(r["msg_topic"], r["msg_tag"], r["msg_key"], orjson.loads(r["msg_body"]), r["id"]) for r in rows
        ]

    async def count_due(self, db: Database) -> int:
        row = await db.fetchone(self._count_due, now=now_ms())
        return int(row["n"]) if row else 0


class Inbox:
    """The consumer log: one row per (group, tag, key), written with the consumer's work."""

    def __init__(self, table: sa.Table) -> None:
        t = table
        self._keys = Query(sa.select(t.c.msg_key).where(t.c.msg_tag == sa.bindparam("msg_tag")))
        self._claim = insert_ignore(
            t,
            **bind(
                "group_name", "msg_tag", "msg_key", "msg_id", "msg_body", "consumer_status", "consumer_times",
                "consumer_timestamp",
            ),
        )

    async def keys(self, uow: UnitOfWork, tag: str) -> set[str]:
        """The keys of the messages with this tag that this service has handled (for the audit)."""
        return {r["msg_key"] for r in await uow.fetchall(self._keys, msg_tag=tag)}

    async def claim(self, uow: UnitOfWork, group: str, msg: Message) -> bool:
        """True if this group has not handled this message before (and now has, once uow commits)."""
        n = await uow.execute(
            self._claim,
            group_name=group,
            msg_tag=msg.tag,
            msg_key=msg.key,
            msg_id=msg.msg_id,
            msg_body=msg.encode().decode(),
            consumer_status=2,
            consumer_times=1,
            consumer_timestamp=utcnow(),
        )
        return n == 1


Handler = Callable[[UnitOfWork, Message], Awaitable[None]]
Before = Callable[[Message], Awaitable[None]]


@dataclass(frozen=True)
class Subscription:
    """A consumer group: every group sees every message of its topic and tags (RocketMQ's
    consumer group, a durable queue per group on RabbitMQ)."""

    group: str
    service: str
    topic: str
    db: Database
    inbox: Inbox
    handlers: dict[str, Handler]  # by tag; each runs in the transaction that writes the inbox row
    # By tag: a call outside any transaction, before the handler (an external system, such as the
    # payment platform). It must be idempotent: a redelivery runs it again.
    before: dict[str, Before] = field(default_factory=dict)

    def wants(self, msg: Message) -> bool:
        return msg.topic == self.topic and msg.tag in self.handlers


async def consume(sub: Subscription, msg: Message, faults: Any) -> None:
    """Run one delivery; raise to have the broker retry it later."""
    await faults.hit(f"{sub.service}.on_{msg.topic}_{msg.tag}")  # e.g. goods.on_order_cancel
    before = sub.before.get(msg.tag)
    if before is not None:
        await before(msg)
    async with sub.db.unit_of_work() as uow:
        if not await sub.inbox.claim(uow, sub.group, msg):
            return  # a duplicate: the first delivery's work is already committed
        await sub.handlers[msg.tag](uow, msg)
        await uow.commit()


class Broker(Protocol):
    async def publish(self, msg: Message) -> None: ...

    def wake(self) -> None: ...


Guard = Callable[[UnitOfWork, Message], Awaitable[bool]]


class Relay:
    """Publishes a service's due outbox rows; removes each only after the broker has it.

    A crash between publishing and removing sends it again later: at least once, by design.
    A guard (per tag) runs in a transaction before publishing and may drop the row: the order
    service uses it to cancel an order that its armed cancel message is about to announce.
    """

    def __init__(
        self, name: str, db: Database, outbox: Outbox, broker: Broker, guards: dict[str, Guard] | None = None,
        poll_s: float = 0.25, lease_s: float = 10.0,
    ) -> None:
        self.name = name
        self.db = db
        self.outbox = outbox
        self.broker = broker
        self.guards = guards or {}
        self.poll_s = poll_s
        self.lease_ms = int(lease_s * 1000)
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run_once(self) -> int:
        msgs = await self.outbox.due(self.db)
        for msg in msgs:
            await self.send(msg)
        return len(msgs)

    async def send(self, msg: Message) -> None:
        """Send one row read as due by outbox.due(), some time ago."""
        guard = self.guards.get(msg.tag)
        if guard is not None:
            async with self.db.unit_of_work() as uow:
                keep = await guard(uow, msg)
                # The guard acts on what the row says now, not on what was read: an order
                # confirmed just after its deadline has re-armed the row for the payment timeout,
                # and another instance's relay may have taken it. The claim comes after the
                # guard's compare-and-set so that every transaction here locks the order row
                # before its outbox row (as confirming does): no deadlock between the two.
                if not await self.outbox.claim(uow, msg.msg_id, self.lease_ms):
                    return  # rolled back: the guard's change with it
                if not keep:
                    await self.outbox.delete(uow, msg.msg_id)
                await uow.commit()
            if not keep:
                return
        await self.broker.publish(msg)
        async with self.db.unit_of_work() as uow:
            await self.outbox.delete(uow, msg.msg_id)
            await uow.commit()

    async def run(self) -> None:
        # A database or broker hiccup leaves the rows in place: they are tried again shortly.
        await poll_forever(self.run_once, self._wake, self.poll_s, f"relay {self.name}")


async def poll_forever(step: Callable[[], Awaitable[int]], wake: asyncio.Event, poll_s: float, what: str) -> None:
    """Run `step` (which returns how much it found to do) again at once while it finds work, and
    otherwise after `poll_s` or as soon as `wake` is set. The event is cleared before looking, so
    a wake that comes while `step` runs is not lost."""
    while True:
        wake.clear()
        try:
            found = await step()
        except Exception:  # noqa: BLE001 - logged; the loop must outlive any one failure
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


# --- The embedded broker ----------------------------------------------------------------------

broker_metadata = sa.MetaData()
delivery = sa.Table(
    "broker_delivery",
    broker_metadata,
    sa.Column("delivery_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("msg_id", sa.String(64), nullable=False),
    sa.Column("group_name", sa.String(100), nullable=False),
    sa.Column("msg_topic", sa.String(100), nullable=False),
    sa.Column("msg_tag", sa.String(100), nullable=False),
    sa.Column("msg_key", sa.String(100), nullable=False),
    sa.Column("msg_body", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_at", sa.BigInteger, nullable=False),
    sa.Column("state", sa.String(10), nullable=False),  # ready | dead
    sa.Column("last_error", sa.Text),
    sa.Column("create_time", Timestamp(), nullable=False),
    sa.UniqueConstraint("msg_id", "group_name", name="uq_broker_delivery_msg_group"),
    sa.Index("ix_broker_delivery_state_next", "state", "next_at"),
)

_d = delivery.c
_Q_ENQUEUE = insert_ignore(
    delivery,
    **bind("msg_id", "group_name", "msg_topic", "msg_tag", "msg_key", "msg_body", "next_at", "create_time"),
    attempts=0,
    state="ready",
)
_Q_READY = Query(
    sa.select(delivery)
    .where(_d.state == "ready", _d.next_at <= sa.bindparam("now"))
    .order_by(_d.next_at, _d.delivery_id)
    .limit(200)
)
_Q_DONE = Query(sa.delete(delivery).where(_d.delivery_id == sa.bindparam("id")))
_Q_RETRY = Query(
    sa.update(delivery)
    .where(_d.delivery_id == sa.bindparam("id"))
    .values(attempts=sa.bindparam("attempts"), next_at=sa.bindparam("next_at"), state=sa.bindparam("state"),
            last_error=sa.bindparam("last_error"))
)
_Q_DEAD = Query(sa.select(delivery).where(_d.state == "dead").order_by(_d.delivery_id))
_Q_REPLAY = Query(
    sa.update(delivery)
    .where(_d.delivery_id == sa.bindparam("id"), _d.state == "dead")
    .values(state="ready", attempts=0, next_at=sa.bindparam("now"))
)
_Q_WAITING = Query(
    sa.select(sa.func.count().label("n")).select_from(delivery).where(_d.msg_tag == sa.bindparam("msg_tag"), _d.msg_key == sa.bindparam("msg_key"), _d.state == "ready")
)
_Q_PENDING = Query(sa.select(sa.func.count().label("n")).select_from(delivery).where(_d.state == "ready"))


def _row_message(r: Any) -> Message:
    return Message(r["msg_topic"], r["msg_tag"], r["msg_key"], orjson.loads(r["msg_body"]), r["msg_id"])


class EmbeddedBroker:
    """The in-process stand-in for RabbitMQ: a durable queue per consumer group in its own SQLite file.

    publish() stores one delivery per subscribed group; the dispatcher runs each on its own task,
    deletes it when the consumer's transaction committed, and otherwise retries it with back-off,
    parking it as dead after `max_attempts` (listed and replayed through /admin/messages).
    """

    def __init__(
        self, db: Database, subscriptions: Iterable[Subscription], faults: Any, *, max_attempts: int = 5,
        backoff_base_ms: int = 200, backoff_cap_ms: int = 5000, poll_s: float = 0.25, concurrency: int = 64,
    ) -> None:
        self.db = db
        self.subscriptions = list(subscriptions)
        self.by_group = {s.group: s for s in self.subscriptions}
        self.faults = faults
        self.max_attempts = max_attempts
        self.backoff_base_ms = backoff_base_ms
        self.backoff_cap_ms = backoff_cap_ms
        self.poll_s = poll_s
        self._wake = asyncio.Event()
        self._inflight: set[int] = set()
        self._sem = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()

    async def connect(self) -> None:
        await self.db.connect()

    async def close(self) -> None:
        await self.db.close()

    async def publish(self, msg: Message) -> None:
        now = now_ms()
        async with self.db.unit_of_work() as uow:
            for sub in self.subscriptions:
                if sub.wants(msg):
                    await uow.execute(
                        _Q_ENQUEUE, msg_id=msg.msg_id, group_name=sub.group, msg_topic=msg.topic, msg_tag=msg.tag,
                        msg_key=msg.key, msg_body=msg.encode().decode(), next_at=now, create_time=utcnow(),
                    )
            await uow.commit()
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    async def _deliver(self, row: Any) -> None:
        did = row["delivery_id"]
        try:
            sub = self.by_group[row["group_name"]]
            await consume(sub, _row_message(row), self.faults)
        except Exception as exc:  # noqa: BLE001 - any failure is retried, never acknowledged
            attempts = row["attempts"] + 1
            dead = attempts >= self.max_attempts
            log.warning("delivery %s to %s failed (attempt %s): %r", did, row["group_name"], attempts, exc)
            async with self.db.unit_of_work() as uow:
                await uow.execute(
                    _Q_RETRY, id=did, attempts=attempts, state="dead" if dead else "ready", last_error=repr(exc)[:1000],
                    next_at=now_ms() + backoff_ms(attempts, self.backoff_base_ms, self.backoff_cap_ms),
                )
                await uow.commit()
        else:
            async with self.db.unit_of_work() as uow:
                await uow.execute(_Q_DONE, id=did)
                await uow.commit()
        finally:
            self._inflight.discard(did)
            self._sem.release()

    async def dispatch_once(self) -> int:
        rows = await self.db.fetchall(_Q_READY, now=now_ms())
        started = 0
        for row in rows:
            did = row["delivery_id"]
            if did in self._inflight:
                continue
            await self._sem.acquire()
            self._inflight.add(did)
            task = asyncio.create_task(self._deliver(row))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            started += 1
        return started

    async def run(self) -> None:
        await poll_forever(self.dispatch_once, self._wake, self.poll_s, "dispatcher")

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- operator views ------------------------------------------------------------------------

    async def dead(self) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(_Q_DEAD)
        return [
            {
                "id": str(r["delivery_id"]), "msgId": r["msg_id"], "group": r["group_name"], "topic": r["msg_topic"],
                "tag": r["msg_tag"], "key": r["msg_key"], "body": orjson.loads(r["msg_body"]),
                "attempts": r["attempts"], "lastError": r["last_error"], "state": r["state"],
            }
            for r in rows
        ]

    async def replay(self, delivery_id: int | str) -> bool:
        if not str(delivery_id).isdigit():
            return False
        delivery_id = int(delivery_id)
        async with self.db.unit_of_work() as uow:
            n = await uow.execute(_Q_REPLAY, id=delivery_id, now=now_ms())
            await uow.commit()
        self._wake.set()
        return n == 1

    async def wait_handled(self, tag: str, key: str, timeout_s: float) -> None:
        """Until no delivery of this message is waiting to be handled (or the time is up)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while loop.time() < end:
            row = await self.db.fetchone(_Q_WAITING, msg_tag=tag, msg_key=key)
            if not row or not row["n"]:
                return
            await asyncio.sleep(0.002)

    async def pending(self) -> int:
        row = await self.db.fetchone(_Q_PENDING)
        return int(row["n"]) if row else 0
