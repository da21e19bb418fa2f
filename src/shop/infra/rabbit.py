"""RabbitMQ as the broker (the distributed mode), through aio-pika.

The original's RocketMQ topics and tags become topic exchanges (`shop.<topic>`) and routing keys
(the tag). Each consumer group is a durable quorum queue (`shop.<group>`) bound to its topic's
exchange for its tags, so every group sees every message. The relay publishes with publisher
confirms and deletes an outbox row only once the broker has confirmed it.

A delivery is acknowledged only after the consumer's transaction (work + inbox row) committed.
A failure is not acknowledged as done: the message is republished (confirmed) to the group's
retry queue with a TTL, which dead-letters it back to the group's queue when the back-off is
over, and only then is the original acknowledged. After `max_attempts` it is parked in the
group's dead queue (`shop.<group>.dead`), which operators list and replay.

Deadlines (the armed cancel, the payment timeout) are not delayed broker messages: they wait in
the order service's outbox, because the order's compare-and-set must run in the order database's
transaction at the moment the message leaves (ARCHITECTURE.md point 5).

The retry queue holds messages of different back-offs; RabbitMQ expires per-message TTLs only at
the head of a queue, so a short back-off behind a long one waits for it (at most the back-off cap).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from shop.common.clock import iso
from shop.common.errors import ServiceUnavailable
from shop.infra.faults import Faults
from shop.infra.messaging import Binding, Message, Subscription, backoff_ms, consume
from shop.infra.messaging.consumer import failed
from shop.infra.tracing import Tracing

log = logging.getLogger("shop.rabbit")

_REPORTS_KEPT = 10_000

PREFIX = "shop"


def exchange_name(topic: str, prefix: str = PREFIX) -> str:
    return f"{prefix}.{topic}"


def queue_name(group: str, prefix: str = PREFIX) -> str:
    return f"{prefix}.{group}"


def reports_exchange_name(prefix: str = PREFIX) -> str:
    """Where consumer groups report what they handled (see RabbitBroker.wait_handled)."""
    return f"{prefix}.handled"


class RabbitBroker:
    def __init__(
        self, url: str, topology: Iterable[Binding], faults: Faults, *, max_attempts: int = 5,
        backoff_base_ms: int = 200, backoff_cap_ms: int = 5000, prefetch: int = 32, prefix: str = PREFIX,
        report_tags: Iterable[str] = (), listen_for_reports: bool = False, tracing: Tracing = Tracing.OFF,
    ) -> None:
        """topology: every (group, topic, tags) of the whole shop, declared by every process, so a
        message published before its consumer ever started waits in that consumer's queue instead
        of being dropped; run() is handed the groups this process consumes for.
        report_tags: the tags whose handling is reported, so that wait_handled can wait for it
        (rare ones: the shop waits only for a failed order's cancel); listen_for_reports: this
        process waits (the order service), so it hears the reports."""
        self.url = url
        self.tracing = tracing
        self.prefix = prefix  # one shop's exchanges and queues apart from another's on one broker
        self.faults = faults
        self.max_attempts = max_attempts
        self.backoff_base_ms = backoff_base_ms
        self.backoff_cap_ms = backoff_cap_ms
        self.prefetch = prefetch
        self.topology = list(topology)
        self.conn: AbstractRobustConnection | None = None
        self.pub: AbstractChannel | None = None
        self._exchanges: dict[str, Any] = {}
        self._consumers: list[tuple[Any, str]] = []
        self._lock = asyncio.Lock()
        self.report_tags = frozenset(report_tags)
        self.listen_for_reports = listen_for_reports
        self._notes: AbstractChannel | None = None
        self._reports: Any = None  # the reports exchange (given report_tags), declared at connect
        # (tag, key) -> the groups that reported it handled, recent ones only; and who waits.
        self._handled: OrderedDict[tuple[str, str], set[str]] = OrderedDict()
        self._waiters: dict[tuple[str, str], asyncio.Event] = {}

    async def connect(self) -> None:
        # Reconnect a second after the broker went away, not aio-pika's default five.
        self.conn = await aio_pika.connect_robust(self.url, reconnect_interval=1.0)
        self.pub = await self.conn.channel(publisher_confirms=True)
        await self.declare()
        if self.report_tags:
            # Declared once here and kept (the robust channel declares it again after a
            # reconnection): a report goes out for every handled cancel, and a declaration is a
            # round trip to the broker.
            self._notes = await self.conn.channel(publisher_confirms=False)
            self._reports = await self._notes.declare_exchange(reports_exchange_name(self.prefix),
                                                               aio_pika.ExchangeType.TOPIC)
            if self.listen_for_reports:
                await self._listen_for_reports()

    async def _listen_for_reports(self) -> None:
        """A consumer group reports each (tag, key) of report_tags it handled to a topic exchange;
        this process hears them on a private queue. It is how a process waits for work done in
        other processes without polling their databases: see wait_handled."""
        assert self._notes is not None
        q = await self._notes.declare_queue(exclusive=True, auto_delete=True)
        for tag in self.report_tags:
            await q.bind(self._reports, routing_key=tag)
        await q.consume(self._on_report, no_ack=True)

    async def _on_report(self, m: AbstractIncomingMessage) -> None:
        h = m.headers or {}
        handled = (str(h.get("tag", "")), str(h.get("key", "")))
        self._handled.setdefault(handled, set()).add(str(h.get("group", "")))
        self._handled.move_to_end(handled)
        while len(self._handled) > _REPORTS_KEPT:
            self._handled.popitem(last=False)
        waiter = self._waiters.get(handled)
        if waiter is not None:
            waiter.set()

    async def _report(self, group: str, msg: Message) -> None:
        """Best effort, unconfirmed: a lost report only makes a waiter wait its whole timeout."""
        if self._reports is None:
            return
        try:
            await self._reports.publish(aio_pika.Message(b"", headers={"group": group, "tag": msg.tag, "key": msg.key}),
                             routing_key=msg.tag)
        except Exception as exc:  # noqa: BLE001
            log.info("could not report %s/%s handled: %r", msg.tag, msg.key, exc)

    async def declare(self) -> None:
        assert self.pub is not None
        for group, topic, tags in self.topology:
            ex = await self._exchange(topic)
            q = await self.pub.declare_queue(
                queue_name(group, self.prefix), durable=True, arguments={"x-queue-type": "quorum"}
            )
            for tag in tags:
                await q.bind(ex, routing_key=tag)
            await self.pub.declare_queue(
                queue_name(group, self.prefix) + ".retry", durable=True,
                # An expired retry goes back, through the default exchange, to the group's queue.
                arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": queue_name(group, self.prefix)},
            )
            await self.pub.declare_queue(queue_name(group, self.prefix) + ".dead", durable=True)

    async def _exchange(self, topic: str) -> Any:
        if topic not in self._exchanges:
            assert self.pub is not None
            self._exchanges[topic] = await self.pub.declare_exchange(
                exchange_name(topic, self.prefix), aio_pika.ExchangeType.TOPIC, durable=True
            )
        return self._exchanges[topic]

    @staticmethod
    def _amqp(msg: Message, attempts: int = 0) -> aio_pika.Message:
        headers: dict[str, Any] = {"topic": msg.topic, "tag": msg.tag, "key": msg.key, "attempts": attempts}
        if msg.trace:  # the W3C header's own name: what any other consumer of the queue would look for
            headers["traceparent"] = msg.trace
        return aio_pika.Message(
            msg.encode(), message_id=msg.msg_id, content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT, headers=headers,
        )

    async def publish(self, msg: Message) -> None:
        """Returns once the broker confirmed the message (raises otherwise: the row stays)."""
        ex = await self._exchange(msg.topic)
        await ex.publish(self._amqp(msg), routing_key=msg.tag)

    async def publish_many(self, msgs: Sequence[Message]) -> None:
        """All at once on the channel: the broker's confirms come back together, not one round trip
        (and one disk flush) after another."""
        await asyncio.gather(*(self.publish(msg) for msg in msgs))

    def wake(self) -> None:  # deliveries are pushed by the broker: nothing to wake
        pass

    async def drain(self) -> None:  # unacknowledged deliveries go back to their queues on close
        pass

    async def run(self, subscriptions: Sequence[Subscription]) -> None:
        """Consume these groups until cancelled."""
        assert self.conn is not None
        for sub in subscriptions:
            ch = await self.conn.channel(publisher_confirms=True)
            await ch.set_qos(prefetch_count=self.prefetch)
            q = await ch.declare_queue(
                queue_name(sub.group, self.prefix), durable=True, arguments={"x-queue-type": "quorum"}
            )
            tag = await q.consume(self._handler(sub, ch))
            self._consumers.append((q, tag))
        await asyncio.Event().wait()

    def _handler(self, sub: Subscription, ch: AbstractChannel) -> Any:
        async def on_message(m: AbstractIncomingMessage) -> None:
            await self._on_message(sub, ch, m)

        return on_message

    async def _on_message(self, sub: Subscription, ch: AbstractChannel, m: AbstractIncomingMessage) -> None:
        h = m.headers or {}
        trace = h.get("traceparent")
        if isinstance(trace, bytes):
            trace = trace.decode(errors="replace")
        msg = Message(str(h.get("topic", sub.topic)), str(h.get("tag", m.routing_key)), str(h.get("key", "")),
                      orjson.loads(m.body), m.message_id or "", trace if isinstance(trace, str) else None)
        try:
            await consume(sub, msg, self.faults, self.tracing)
            if msg.tag in self.report_tags:
                await self._report(sub.group, msg)
        except Exception as exc:  # noqa: BLE001 - never acknowledged as done
            prior = h.get("attempts", 0)  # an int: _amqp and replay write it
            attempts = (prior if isinstance(prior, int) else 0) + 1
            out = self._amqp(msg, attempts)
            out.headers["error"] = repr(exc)[:500]
            if failed(sub.group, msg, attempts, self.max_attempts, exc):
                out.headers["parked_at"] = int(time.time() * 1000)
                await ch.default_exchange.publish(out, routing_key=queue_name(sub.group, self.prefix) + ".dead")
            else:
                wait_ms = backoff_ms(attempts, self.backoff_base_ms, self.backoff_cap_ms)
                out.expiration = wait_ms / 1000
                out.headers["next_at"] = int(time.time() * 1000) + wait_ms
                await ch.default_exchange.publish(out, routing_key=queue_name(sub.group, self.prefix) + ".retry")
        await m.ack()

    async def wait_handled(self, tag: str, key: str, timeout_s: float) -> None:
        """Until every group that consumes `tag` reported (tag, key) handled, at most timeout_s.
        The groups may run in other processes; `tag` must be one of report_tags."""
        groups = {g for g, _, tags in self.topology if tag in tags}
        handled = (tag, key)
        event = self._waiters.setdefault(handled, asyncio.Event())
        try:
            async with asyncio.timeout(timeout_s):
                while not groups <= self._handled.get(handled, set()):
                    event.clear()
                    await event.wait()
        except TimeoutError:
            log.info("%s/%s: not every group reported it handled within %ss", tag, key, timeout_s)
        finally:
            self._waiters.pop(handled, None)

    # -- operator views ------------------------------------------------------------------------

    async def dead(self) -> list[dict[str, Any]]:
        """Every parked message, left in place (fetched, then returned to its queue)."""
        return await self._peek(".dead", lambda h: {"state": "dead", "parkedAt": _at(h.get("parked_at"))})

    async def retrying(self) -> list[dict[str, Any]]:
        """Every message waiting in back-off in a group's retry queue, left in place."""
        return await self._peek(".retry", lambda h: {"state": "retrying", "nextAttemptAt": _at(h.get("next_at"))})

    async def _peek(self, suffix: str, more: Callable[[dict[str, Any]], dict[str, Any]]) -> list[dict[str, Any]]:
        """The messages of every group's `suffix` queue, fetched and returned to it. Delivery is at
        least once, so one message may be there twice: it is listed once, by its id."""
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        async with self._lock:
            ch = await self._channel()
            try:
                for group, _, _ in self.topology:
                    q = await ch.declare_queue(queue_name(group, self.prefix) + suffix, passive=True)
                    held = []
                    while (m := await q.get(no_ack=False, fail=False)) is not None:
                        held.append(m)
                        h = m.headers or {}
                        listed_id = f"{group}:{m.message_id}"
                        if listed_id in seen:
                            continue
                        seen.add(listed_id)
                        out.append({
                            "id": listed_id, "msgId": m.message_id, "group": group,
                            "topic": h.get("topic"), "tag": h.get("tag"), "key": h.get("key"),
                            "body": orjson.loads(m.body), "attempts": h.get("attempts"), "lastError": h.get("error"),
                            **more(h),
                        })
                    for m in held:
                        await m.nack(requeue=True)
            finally:
                await ch.close()
        return out

    async def replay(self, listed_id: str) -> bool:
        """A parked message back to its group's queue, attempts reset; or one waiting in back-off,
        at once. Every copy of it goes (a duplicate delivery parks twice); the group's inbox lets
        only one do the work."""
        group, _, message_id = listed_id.partition(":")
        # Only a group of ours has these queues. Declaring one for any other name would create a
        # stray queue on the broker (or fail on a name AMQP refuses), so anything else is unknown.
        if group not in {g for g, _, _ in self.topology}:
            return False
        async with self._lock:
            return await self._move(group, ".dead", message_id, reset=True) or \
                await self._move(group, ".retry", message_id, reset=False)

    async def _move(self, group: str, suffix: str, message_id: str, *, reset: bool) -> bool:
        ch = await self._channel()
        try:
            q = await ch.declare_queue(queue_name(group, self.prefix) + suffix, passive=True)
            held, found = [], False
            while (m := await q.get(no_ack=False, fail=False)) is not None:
                if m.message_id == message_id:
                    h = dict(m.headers or {})
                    if reset:
                        h["attempts"] = 0
                    await ch.default_exchange.publish(
                        aio_pika.Message(m.body, message_id=m.message_id, content_type="application/json",
                                         delivery_mode=aio_pika.DeliveryMode.PERSISTENT, headers=h),
                        routing_key=queue_name(group, self.prefix),
                    )
                    await m.ack()
                    found = True
                else:
                    held.append(m)
            for m in held:
                await m.nack(requeue=True)
        finally:
            await ch.close()
        return found

    async def dead_counts(self) -> dict[str, int]:
        """Parked messages per group of the shop (each copy of a message parked twice counts)."""
        ch = await self._channel()
        try:
            counts = {}
            for group, _, _ in self.topology:
                q = await ch.declare_queue(queue_name(group, self.prefix) + ".dead", passive=True)
                counts[group] = q.declaration_result.message_count or 0
            return counts
        finally:
            await ch.close()

    async def pending(self) -> int:
        """Messages waiting in the groups' queues and retry queues (ready, not yet delivered)."""
        ch = await self._channel()
        try:
            n = 0
            for group, _, _ in self.topology:
                for name in (queue_name(group, self.prefix), queue_name(group, self.prefix) + ".retry"):
                    q = await ch.declare_queue(name, passive=True)
                    n += q.declaration_result.message_count or 0
            return n
        finally:
            await ch.close()

    async def _channel(self) -> AbstractChannel:
        """A channel for one of the operator's reads or moves. While RabbitMQ is away the robust
        connection is reconnecting, and aio-pika says so with a plain RuntimeError ("Connection was
        not opened", "closed"), which would read as a bug of ours (a 500): it is a broker down (503)."""
        assert self.conn is not None
        try:
            return await self.conn.channel(publisher_confirms=True)
        except RuntimeError as exc:
            raise ServiceUnavailable(f"RabbitMQ is unavailable ({exc})") from exc

    async def close(self) -> None:
        for q, tag in self._consumers:
            try:
                await q.cancel(tag)
            except Exception:  # noqa: BLE001 - closing anyway
                pass
        self._consumers = []
        if self.conn is not None:
            await self.conn.close()
            self.conn = None
        self._notes = self._reports = None


def _at(ms: Any) -> str | None:
    return iso(datetime.fromtimestamp(ms / 1000, UTC)) if isinstance(ms, int) else None


async def delete_topology(url: str, prefix: str, topology: Iterable[Binding]) -> None:
    """Remove one shop's queues and exchanges from a broker: for a shop taken down for good, and
    for tests, whose shops each have a prefix of their own. Quorum queues are not free on the
    broker (each is a replicated log): left behind by the hundred, they slow every declaration."""
    conn = await aio_pika.connect(url)  # a plain connection: nothing to restore
    async with conn:
        ch = await conn.channel()
        for group, topic, _ in topology:
            for name in (queue_name(group, prefix), queue_name(group, prefix) + ".retry",
                         queue_name(group, prefix) + ".dead"):
                await ch.queue_delete(name)
            await ch.exchange_delete(exchange_name(topic, prefix))
        await ch.exchange_delete(reports_exchange_name(prefix))
