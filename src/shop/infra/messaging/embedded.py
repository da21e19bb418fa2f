"""The embedded broker: RabbitMQ's stand-in in one process, a durable queue per consumer group in
its own SQLite file."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa

from shop.common.clock import iso, now_ms, utcnow
from shop.common.errors import ShopError
from shop.common.ids import parse_id
from shop.infra.db import Query, SqliteDatabase, bind, insert_ignore
from shop.infra.faults import Faults
from shop.infra.messaging.consumer import Binding, Subscription, consume, failed
from shop.infra.messaging.message import Message, message_columns
from shop.infra.messaging.relay import backoff_ms, poll_forever
from shop.infra.tracing import Tracing
from shop.infra.types import Timestamp

log = logging.getLogger("shop.messaging")

broker_metadata = sa.MetaData()
delivery = sa.Table(
    "broker_delivery",
    broker_metadata,
    sa.Column("delivery_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("msg_id", sa.String(64), nullable=False),
    *message_columns(),
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
    **bind("msg_id", "group_name", "msg_topic", "msg_tag", "msg_key", "msg_body", "msg_trace", "next_at",
           "create_time"),
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
# Waiting in back-off: failed at least once, to be tried again at next_at.
_Q_RETRYING = Query(
    sa.select(delivery).where(_d.state == "ready", _d.attempts > 0, _d.next_at > sa.bindparam("now"))
    .order_by(_d.next_at)
)
_Q_REPLAY = Query(
    sa.update(delivery)
    .where(_d.delivery_id == sa.bindparam("id"), _d.state == "dead")
    .values(state="ready", attempts=0, next_at=sa.bindparam("now"))
)
_Q_TRY_NOW = Query(  # a delivery waiting in back-off: at once, its attempts counted on
    sa.update(delivery)
    .where(_d.delivery_id == sa.bindparam("id"), _d.state == "ready", _d.attempts > 0)
    .values(next_at=sa.bindparam("now"))
)
_Q_WAITING = Query(
    sa.select(sa.func.count().label("n"))
    .select_from(delivery)
    .where(_d.msg_tag == sa.bindparam("msg_tag"), _d.msg_key == sa.bindparam("msg_key"), _d.state == "ready")
)
_Q_DEAD_COUNTS = Query(
    sa.select(_d.group_name, sa.func.count().label("n")).where(_d.state == "dead").group_by(_d.group_name)
)
_Q_PENDING = Query(sa.select(sa.func.count().label("n")).select_from(delivery).where(_d.state == "ready"))


def _add_missing_columns(engine: sa.Engine) -> None:
    """The broker's file is made by create_all, which leaves an existing table as it is: a file from
    before a column was added gets it here (nullable ones only), so a shop's data dir outlives an
    upgrade. Its one migration mechanism, for one table it alone reads."""
    with engine.begin() as conn:
        have = {c["name"] for c in sa.inspect(conn).get_columns(delivery.name)}
        for column in delivery.columns:
            if column.name not in have and column.nullable:
                kind = column.type.compile(dialect=conn.dialect)
                conn.exec_driver_sql(f'ALTER TABLE {delivery.name} ADD COLUMN "{column.name}" {kind}')


def _at(ms: int) -> str | None:
    return iso(datetime.fromtimestamp(ms / 1000, UTC))


def _listed(r: Any) -> dict[str, Any]:
    """A delivery as GET /admin/messages lists it."""
    return {
        "id": str(r["delivery_id"]), "msgId": r["msg_id"], "group": r["group_name"], "topic": r["msg_topic"],
        "tag": r["msg_tag"], "key": r["msg_key"], "body": orjson.loads(r["msg_body"]), "attempts": r["attempts"],
        "lastError": r["last_error"], "state": r["state"],
    }


def _row_message(r: Any) -> Message:
    return Message(r["msg_topic"], r["msg_tag"], r["msg_key"], orjson.loads(r["msg_body"]), r["msg_id"],
                   r["msg_trace"])


class EmbeddedBroker:
    """The in-process stand-in for RabbitMQ: a durable queue per consumer group in its own SQLite file.

    publish() stores one delivery per subscribed group; the dispatcher runs each on its own task,
    deletes it when the consumer's transaction committed, and otherwise retries it with back-off,
    parking it as dead after `max_attempts` (listed and replayed through /admin/messages).
    """

    def __init__(
        self, db: SqliteDatabase, topology: Iterable[Binding], faults: Faults, *, max_attempts: int = 5,
        backoff_base_ms: int = 200, backoff_cap_ms: int = 5000, poll_s: float = 0.25, concurrency: int = 64,
        tracing: Tracing = Tracing.OFF,
    ) -> None:
        self.db = db
        self.tracing = tracing
        self.topology = list(topology)
        self.by_group: dict[str, Subscription] = {}  # the groups run() delivers to
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
        engine = sa.create_engine(f"sqlite:///{self.db.path}")
        try:
            broker_metadata.create_all(engine)
            _add_missing_columns(engine)
        finally:
            engine.dispose()

    async def close(self) -> None:
        await self.db.close()

    async def publish(self, msg: Message) -> None:
        await self.publish_many([msg])

    async def publish_many(self, msgs: Sequence[Message]) -> None:
        now, created = now_ms(), utcnow()
        async with self.db.unit_of_work() as uow:  # one commit for them all
            for msg in msgs:
                body = msg.encode().decode()  # once, whatever the number of groups it goes to
                for group, topic, tags in self.topology:
                    if msg.topic == topic and msg.tag in tags:
                        await uow.execute(
                            _Q_ENQUEUE, msg_id=msg.msg_id, group_name=group, msg_topic=msg.topic, msg_tag=msg.tag,
                            msg_key=msg.key, msg_body=body, msg_trace=msg.trace, next_at=now, create_time=created,
                        )
            await uow.commit()
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    async def _deliver(self, row: Any) -> None:
        did = row["delivery_id"]
        msg = _row_message(row)
        try:
            await consume(self.by_group[row["group_name"]], msg, self.faults, self.tracing)
        except Exception as exc:  # noqa: BLE001 - any failure is retried, never acknowledged
            attempts = row["attempts"] + 1
            dead = failed(row["group_name"], msg, attempts, self.max_attempts, exc)
            async with self.db.unit_of_work() as uow:
                await uow.execute(
                    _Q_RETRY, id=did, attempts=attempts, state="dead" if dead else "ready", last_error=repr(exc)[:1000],
                    # A dead delivery keeps the time it was parked (a replay sets it anew).
                    next_at=now_ms() + (0 if dead else backoff_ms(attempts, self.backoff_base_ms, self.backoff_cap_ms)),
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

    async def run(self, subscriptions: Sequence[Subscription]) -> None:
        self.by_group = {s.group: s for s in subscriptions}
        await poll_forever(self.dispatch_once, self._wake, self.poll_s, "dispatcher")

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- operator views ------------------------------------------------------------------------

    async def dead(self) -> list[dict[str, Any]]:
        return [dict(_listed(r), parkedAt=_at(r["next_at"])) for r in await self.db.fetchall(_Q_DEAD)]

    async def retrying(self) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(_Q_RETRYING, now=now_ms())
        return [dict(_listed(r), state="retrying", nextAttemptAt=_at(r["next_at"])) for r in rows]

    async def replay(self, delivery_id: int | str) -> bool:
        """A dead delivery back to its group, attempts reset; one waiting in back-off, at once."""
        try:
            row_id = parse_id(delivery_id)
        except ShopError:  # not a delivery's id, so no delivery has it
            return False
        async with self.db.unit_of_work() as uow:
            n = await uow.execute(_Q_REPLAY, id=row_id, now=now_ms())
            n = n or await uow.execute(_Q_TRY_NOW, id=row_id, now=now_ms())
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

    async def dead_counts(self) -> dict[str, int]:
        rows = await self.db.fetchall(_Q_DEAD_COUNTS)
        return {r["group_name"]: int(r["n"]) for r in rows}

    async def pending(self) -> int:
        row = await self.db.fetchone(_Q_PENDING)
        return int(row["n"]) if row else 0
