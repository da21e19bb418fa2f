"""The consuming side: the inbox (consumer log), what a service declares it consumes, the consumer
group that declaration becomes when it is wired, and one delivery's handling."""
from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Generic, TypeVar

import sqlalchemy as sa

from shop.common.clock import utcnow
from shop.common.timeline import TimelineEvent
from shop.infra import metrics
from shop.infra.db import Database, PooledDatabase, Query, Row, ScopedRows, UnitOfWork, bind, insert_ignore
from shop.infra.db.group_commit import GroupCommit
from shop.infra.failures import is_unavailable
from shop.infra.faults import Faults
from shop.infra.logs import about_order
from shop.infra.messaging.message import Message
from shop.infra.tracing import Tracing, in_trace_of


class Inbox:
    """The consumer log: one row per (group, tag, key), written with the consumer's work."""

    def __init__(self, table: sa.Table) -> None:
        t = table
        self._keys = Query(sa.select(t.c.msg_key).where(t.c.msg_tag == sa.bindparam("msg_tag")))
        self._of_orders = ScopedRows(sa.select(t.c.msg_key, t.c.msg_tag, t.c.msg_body), t.c.msg_key, key=str)
        self._for_key = Query(
            sa.select(t.c.group_name, t.c.msg_tag, t.c.msg_id, t.c.msg_body, t.c.consumer_times, t.c.consumer_timestamp)
            .where(t.c.msg_key == sa.bindparam("key"))
        )
        self._claim = insert_ignore(
            t,
            **bind(
                "group_name", "msg_tag", "msg_key", "msg_id", "msg_body", "consumer_status", "consumer_times",
                "consumer_timestamp",
            ),
        )

    async def orders_handled(self, uow: UnitOfWork, tag: str, among: Iterable[int] | None = None) -> set[int]:
        """The orders (a message's key is its order id) whose messages with this tag this service
        has handled, of all or only `among` these: for the audit."""
        if among is None:
            return {int(r["msg_key"]) for r in await uow.fetchall(self._keys, msg_tag=tag)}
        return {int(r["msg_key"]) for r in await self.handled_orders(uow, among) if r["msg_tag"] == tag}

    async def handled_orders(self, uow: UnitOfWork, order_ids: Iterable[int]) -> list[Row]:
        """What this service handled about these orders (msg_key, msg_tag, msg_body), through the
        key's index: for the audit of a scope of orders."""
        return await self._of_orders.by_ids(uow, sorted(set(order_ids)))

    async def handled(self, uow: UnitOfWork, key: str) -> list[Row]:
        """What this service's groups handled about this key (an order): for its timeline."""
        return list(await uow.fetchall(self._for_key, key=key))

    async def handled_events(self, uow: UnitOfWork, key: str, service: str) -> list[TimelineEvent]:
        return [
            TimelineEvent(r["consumer_timestamp"], service, "message.handled",
                          {"group": r["group_name"], "tag": r["msg_tag"], "msgId": r["msg_id"],
                           "attempts": r["consumer_times"]})
            for r in await self.handled(uow, key)
        ]

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


log = logging.getLogger("shop.messaging")

Handler = Callable[[UnitOfWork, Message], Awaitable[None]]
Before = Callable[[Message], Awaitable[None]]
H = TypeVar("H")
# (consumer group, topic, tags): what the broker declares, for every group of the shop.
Binding = tuple[str, str, tuple[str, ...]]


@dataclass(frozen=True)
class Consumes(Generic[H]):
    """What one service consumes from one topic, declared beside its handlers: tag -> the handler
    method itself (unbound, `GoodsHandlers.on_order_cancel`), so that a reader, or a tool, can
    follow a message to the code that handles it. One declaration is one consumer group,
    `<service>-<topic>-group` as in the original, and every group sees every message of its tags.

    `before`: tag -> a call made outside any transaction, before the handler (an external system,
    such as the payment platform). It must be idempotent: a redelivery runs it again."""

    service: str
    topic: str
    handlers: Mapping[str, Callable[[H, UnitOfWork, Message], Awaitable[None]]]
    before: Mapping[str, Callable[[H, Message], Awaitable[None]]] = field(default_factory=dict)

    @property
    def group(self) -> str:
        return f"{self.service}-{self.topic}-group"

    @property
    def fault_points(self) -> tuple[str, ...]:
        return tuple(fault_point(self.service, self.topic, tag) for tag in self.handlers)

    @property
    def binding(self) -> Binding:
        return self.group, self.topic, tuple(self.handlers)

    def subscribe(self, impl: H, db: Database, inbox: Inbox,
                  committed: Callable[[], None] | None = None) -> Subscription:
        """The consumer group, wired to the service's handlers object, database and inbox;
        `committed`: the service's relay's wake (see Subscription)."""
        return Subscription(
            group=self.group, service=self.service, topic=self.topic, db=db, inbox=inbox,
            handlers={tag: partial(f, impl) for tag, f in self.handlers.items()},
            before={tag: partial(f, impl) for tag, f in self.before.items()},
            committed=committed,
        )


def fault_point(service: str, topic: str, tag: str) -> str:
    """Where a consumer's fault is armed (SHOP_FAULTS=1): e.g. goods.on_order_cancel."""
    return f"{service}.on_{topic}_{tag}"


def topology(declarations: Iterable[Consumes[object]]) -> list[Binding]:
    return [d.binding for d in declarations]


@dataclass(frozen=True)
class Subscription:
    """A consumer group as a broker runs it (see Consumes)."""

    group: str
    service: str
    topic: str
    db: Database
    inbox: Inbox
    handlers: dict[str, Handler]  # by tag; each runs in the transaction that writes the inbox row
    before: dict[str, Before] = field(default_factory=dict)
    # Called once a handler's transaction committed: the service's relay's wake, so a message the
    # handler wrote (the order's OrderPaid, on the payment's) leaves now, not at the relay's next
    # poll (up to 0.25 s later, most of a notification's fan-out when the shop is not busy).
    committed: Callable[[], None] | None = None
    # On a database server, the deliveries being handled at the same time share one transaction (a
    # group commit, as the saga's writes are): one BEGIN and COMMIT, and one flush, for all of them
    # (handle_together). Not on SQLite, whose transactions cost no round trips and whose flushes are
    # shared already (infra/db/durable.py): there a group commit only made each batch wait for the
    # last one's flush (measured: the embedded fan-out's p99 doubled at 241/s and 500/s).
    together: GroupCommit[tuple[Message, contextvars.Context | None], Exception | None] | None = field(
        init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        batched = isinstance(self.db, PooledDatabase)
        object.__setattr__(self, "together", GroupCommit(self.handle_together, most=32) if batched else None)

    async def handle_together(self, deliveries: list[tuple[Message, contextvars.Context | None]],
                              ) -> list[Exception | None]:
        """Deliveries in one transaction, each claimed in the inbox and handled in the context it
        came in (its order in the log lines, its trace on the messages its handler writes; None:
        the current one). What each failed of, or None. If the transaction fails, each is handled
        again in one of its own, so that a delivery that fails, fails alone, and is retried or
        parked as before."""
        loop, handled = asyncio.get_running_loop(), False
        try:
            async with self.db.unit_of_work() as uow:
                for msg, context in deliveries:
                    handle = self._handle(uow, msg)
                    handled |= await (handle if context is None else loop.create_task(handle, context=context))
                await uow.commit()
        except Exception as exc:  # noqa: BLE001 - told to the delivery it belongs to
            if len(deliveries) == 1:
                return [exc]
            return [(await self.handle_together([d]))[0] for d in deliveries]
        if handled and self.committed is not None:
            self.committed()
        return [None] * len(deliveries)

    async def _handle(self, uow: UnitOfWork, msg: Message) -> bool:
        if await self.inbox.claim(uow, self.group, msg):
            await self.handlers[msg.tag](uow, msg)
            return True
        return False  # a duplicate: the first delivery's work is committed, or is in this transaction


async def consume(sub: Subscription, msg: Message, faults: Faults, tracing: Tracing = Tracing.OFF) -> None:
    """Run one delivery, in the trace of the work that wrote the message; raise to have the broker
    retry it later."""
    with about_order(msg.key), tracing.consuming(sub.service, sub.group, msg):  # every key is an order's id
        await faults.hit(fault_point(sub.service, msg.topic, msg.tag))
        before = sub.before.get(msg.tag)
        if before is not None:
            await before(msg)
        if sub.together is not None:
            failure = await sub.together((msg, contextvars.copy_context()))
        else:
            [failure] = await sub.handle_together([(msg, None)])
        if failure is not None:
            raise failure
    metrics.delivered(sub.group, "handled")


def failed(group: str, msg: Message, attempts: int, max_attempts: int, exc: BaseException) -> bool:
    """Count and log a delivery that failed; True when its retries ran out and it is parked dead.
    Only a failure of the delivery's own is counted against it: one because a dependency is down (the
    database restarting, a service away) is retried at the back-off's cap until the dependency is
    back, as parking it would leave an operator to replay every message of every outage by hand."""
    dead = attempts >= max_attempts and not is_unavailable(exc)
    metrics.delivered(group, "dead" if dead else "retried")
    with about_order(msg.key), in_trace_of(msg):
        if dead:
            log.error("%s parked %s/%s %s dead after %s attempts: %r", group, msg.topic, msg.tag, msg.key, attempts,
                      exc)
        else:
            log.warning("%s failed on %s/%s %s (attempt %s): %r", group, msg.topic, msg.tag, msg.key, attempts, exc)
    return dead
