"""A consumer's committed work wakes its service's relay: a message its handler wrote (the order's
OrderPaid, written on the payment's PaymentPaid) leaves at once, not at the relay's next poll, which
was most of a payment's fan-out when the shop was not busy (bench/notify.py: p50 143 ms at 30/s, 7 ms
since)."""
from __future__ import annotations

import dataclasses

from shop.infra.faults import Faults
from shop.infra.messaging import Message, consume
from tests.support import new_id


async def test_every_service_with_a_relay_wakes_it_when_its_consumers_commit(shop) -> None:
    relays = {r.name: r for r in shop.runtime.relays}
    subs = shop.runtime.subscriptions
    assert any(s.service == "order" and "paid" in s.handlers for s in subs)  # the pay -> order -> user/log hop
    for sub in subs:
        if sub.service in relays:
            assert sub.committed == relays[sub.service].wake, sub.group


async def test_the_wake_comes_after_the_commit_and_not_for_a_duplicate(shop) -> None:
    sub = next(s for s in shop.runtime.subscriptions if s.service == "order")
    woken: list[bool] = []

    async def handler(uow, msg: Message) -> None:
        assert not woken  # not before the handler's transaction

    tag = next(iter(sub.handlers))
    mine = dataclasses.replace(sub, handlers={tag: handler}, committed=lambda: woken.append(True))
    key = str(new_id())
    msg = Message(sub.topic, tag, key, {"orderId": key})
    await consume(mine, msg, Faults())
    assert woken == [True]
    await consume(mine, msg, Faults())  # redelivered: the inbox finds it handled, nothing committed
    assert woken == [True]
