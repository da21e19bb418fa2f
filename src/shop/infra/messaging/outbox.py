"""The outbox: a service's messages, written in the transactions that decide them."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

import orjson
import sqlalchemy as sa

from shop.common.clock import now_ms, utcnow
from shop.common.timeline import TimelineEvent
from shop.infra.db import Database, Query, Row, UnitOfWork, bind
from shop.infra.messaging.message import Message
from shop.infra.tracing import traceparent

# A sent message's due_at is SENT + the epoch milliseconds it was sent at: past every due range,
# so the relay never sees it again, and still in the due_at index, so pruning is a range scan and
# no other column or index is written per message.
SENT = 2**62


class Outbox:
    """Statements on one service's outbox table. A sent message stays, marked sent, for its order's
    timeline, until prune() removes it after the retention period."""

    def __init__(self, table: sa.Table, group: str) -> None:
        t = self.table = table
        self.group = group
        self._add = Query(
            sa.insert(t).values(
                bind("id", "group_name", "msg_topic", "msg_tag", "msg_key", "msg_body", "msg_trace", "create_time",
                     "due_at")
            )
        )
        self._delete = Query(sa.delete(t).where(t.c.id == sa.bindparam("id")))
        self._make_due = Query(
            sa.update(t).where(t.c.id == sa.bindparam("id")).values(due_at=sa.bindparam("due_at"))
        )
        unsent = t.c.due_at < SENT
        self._due_by_key = Query(
            sa.update(t)
            .where(t.c.msg_tag == sa.bindparam("tag"), t.c.msg_key == sa.bindparam("key"), unsent)
            .values(due_at=sa.bindparam("due_at"))
        )
        self._sent = Query(
            sa.update(t).where(t.c.id == sa.bindparam("id")).values(due_at=SENT + sa.bindparam("now"))
        )
        self._prune = Query(sa.delete(t).where(t.c.due_at >= SENT, t.c.due_at < SENT + sa.bindparam("before")))
        self._sent_for = Query(
            sa.select(t.c.msg_topic, t.c.msg_tag, t.c.id, t.c.due_at)
            .where(t.c.msg_key == sa.bindparam("key"), t.c.due_at >= SENT)
        )
        self._sent_since = Query(sa.select(t.c.msg_key).distinct().where(t.c.due_at >= sa.bindparam("since")))
        self._claim = Query(
            sa.update(t)
            .where(t.c.id == sa.bindparam("id"), t.c.due_at <= sa.bindparam("now"))
            .values(due_at=sa.bindparam("lease_until"))
        )
        self._delete_by_key = Query(
            sa.delete(t).where(t.c.msg_tag == sa.bindparam("tag"), t.c.msg_key == sa.bindparam("key"), unsent)
        )
        message = (t.c.id, t.c.msg_topic, t.c.msg_tag, t.c.msg_key, t.c.msg_body, t.c.msg_trace, t.c.due_at)
        self._due = Query(
            sa.select(*message)
            .where(t.c.due_at <= sa.bindparam("now"))
            .order_by(t.c.due_at)
            .limit(200)
        )
        self._due_for = Query(
            sa.select(*message)
            .where(t.c.msg_key == sa.bindparam("key"), t.c.msg_tag == sa.bindparam("tag"),
                   t.c.due_at <= sa.bindparam("now"))
        )
        self._count_due = Query(
            sa.select(sa.func.count().label("n"), sa.func.min(t.c.due_at).label("oldest"))
            .select_from(t).where(t.c.due_at <= sa.bindparam("now"))
        )

    async def add(self, uow: UnitOfWork, msg: Message, due_at_ms: int | None = None) -> None:
        """Store `msg` in the transaction that decided it, in the trace of the work deciding it: an
        armed cancel fired at its deadline still joins its order's trace."""
        await uow.execute(self._add, **self._row(msg, due_at_ms))

    async def add_many(self, uow: UnitOfWork, msgs: Sequence[tuple[Message, int]]) -> None:
        """Several messages, each with its due time, in one statement where the driver can: a group
        commit's (infra/db/group_commit.py), whose messages were `stamped` by their own work."""
        await uow.execute_many(self._add, [self._row(msg, due_at_ms) for msg, due_at_ms in msgs])

    @staticmethod
    def stamped(msg: Message) -> Message:
        """`msg` carrying the current trace, for a write made outside the work deciding it (a group
        commit writes in a context of its own)."""
        return msg if msg.trace is not None else replace(msg, trace=traceparent())

    def _row(self, msg: Message, due_at_ms: int | None) -> dict[str, object]:
        return {
            "id": msg.msg_id, "group_name": self.group, "msg_topic": msg.topic, "msg_tag": msg.tag,
            "msg_key": msg.key, "msg_body": msg.encode().decode(), "msg_trace": msg.trace or traceparent(),
            "create_time": utcnow(), "due_at": now_ms() if due_at_ms is None else due_at_ms,
        }

    async def delete(self, uow: UnitOfWork, msg_id: str) -> int:
        return await uow.execute(self._delete, id=msg_id)

    async def delete_many(self, uow: UnitOfWork, msg_ids: Sequence[str]) -> None:
        await uow.execute_many(self._delete, [{"id": msg_id} for msg_id in msg_ids])

    async def make_due(self, uow: UnitOfWork, msg_id: str, due_at_ms: int | None = None) -> int:
        """Fire the message now, or re-arm it for another deadline."""
        return await uow.execute(self._make_due, id=msg_id, due_at=now_ms() if due_at_ms is None else due_at_ms)

    async def make_due_many(self, uow: UnitOfWork, due: Sequence[tuple[str, int]]) -> None:
        """Re-arm several messages, each (msg_id, due_at_ms)."""
        await uow.execute_many(self._make_due, [{"id": msg_id, "due_at": at} for msg_id, at in due])

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
        return _messages(await db.fetchall(self._due, now=now_ms()))

    async def due_for(self, db: Database, tag: str, key: str) -> list[Message]:
        """This message (tag, key), if it is due."""
        return _messages(await db.fetchall(self._due_for, tag=tag, key=key, now=now_ms()))
    async def mark_sent(self, uow: UnitOfWork, msg_ids: list[str]) -> None:
        now = now_ms()  # one transaction, so one flush for them all
        await uow.execute_many(self._sent, [{"id": msg_id, "now": now} for msg_id in msg_ids])

    async def prune(self, uow: UnitOfWork, retention_ms: int) -> int:
        """Remove the messages sent longer ago than the retention period."""
        return await uow.execute(self._prune, before=now_ms() - retention_ms)

    async def sent_events(self, uow: UnitOfWork, key: str, service: str) -> list[TimelineEvent]:
        """The messages about this key (an order) that left, for its timeline."""
        return [
            TimelineEvent(datetime.fromtimestamp((r["due_at"] - SENT) / 1000, UTC).replace(tzinfo=None), service,
                          "message.sent", {"topic": r["msg_topic"], "tag": r["msg_tag"], "msgId": r["id"]})
            for r in await uow.fetchall(self._sent_for, key=key)
        ]

    async def sent_keys(self, uow: UnitOfWork, since_ms: int) -> list[str]:
        """The keys (orders) of the messages sent since then, through the due_at index: what changed
        since the audit last looked."""
        return [r["msg_key"] for r in await uow.fetchall(self._sent_since, since=SENT + since_ms)]

    async def count_due(self, uow: UnitOfWork) -> int:
        return (await self.due_stats(uow))[0]

    async def due_stats(self, uow: UnitOfWork) -> tuple[int, float]:
        """How many messages are due, and how long (seconds) the oldest of them has been."""
        now = now_ms()
        row = await uow.fetchone(self._count_due, now=now)
        if not row or not row["n"]:
            return 0, 0.0
        return int(row["n"]), (now - int(row["oldest"])) / 1000


def _messages(rows: Sequence[Row]) -> list[Message]:
    return [
        Message(r["msg_topic"], r["msg_tag"], r["msg_key"], orjson.loads(r["msg_body"]), r["id"], r["msg_trace"])
        for r in rows
    ]
