"""What the shop asks of a broker: the embedded one (embedded.py) or RabbitMQ (infra/rabbit.py).

A broker is built knowing the whole shop's topology (every consumer group and its tags), so a
message published before its consumer ever ran waits in that group's queue; the groups this process
consumes for are handed to run()."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from shop.infra.messaging.consumer import Subscription
from shop.infra.messaging.message import Message


class Broker(Protocol):
    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, msg: Message) -> None:
        """Returns once the broker holds the message (raises otherwise: the outbox row stays)."""

    async def publish_many(self, msgs: Sequence[Message]) -> None:
        """Returns once the broker holds every one of them (raises otherwise: the rows stay, and any
        that did reach it are sent again, which consumers' inboxes make harmless)."""

    def wake(self) -> None:
        """Something was published: look for deliveries now, not at the next poll."""

    async def run(self, subscriptions: Sequence[Subscription]) -> None:
        """Deliver to these groups until cancelled."""

    async def drain(self) -> None:
        """Let the deliveries in flight finish (on a clean stop)."""

    async def wait_handled(self, tag: str, key: str, timeout_s: float) -> None:
        """Until every group that consumes `tag` handled (tag, key), or timeout_s passed."""

    async def dead_counts(self) -> dict[str, int]:
        """Parked messages per consumer group (for the metrics)."""

    async def pending(self) -> int:
        """Deliveries waiting to be handled (ready or in back-off)."""

    async def dead(self) -> list[dict[str, Any]]:
        """The parked messages, as GET /admin/messages lists them."""

    async def retrying(self) -> list[dict[str, Any]]:
        """The messages waiting in back-off, with their attempts and their next try (nextAttemptAt)."""

    async def replay(self, dead_id: str) -> bool:
        """Send a parked message back to its group, or try one waiting in back-off at once; False if
        there is no such message."""
