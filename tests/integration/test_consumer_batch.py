"""Deliveries handled at the same time share one transaction on a database server
(Subscription.together), and one that fails, fails alone: the others are handled, its own work is
not, and its error is its own."""
from __future__ import annotations

import asyncio
import dataclasses

import pytest

from shop.infra.faults import Faults
from shop.infra.logs import ORDER_ID, about_order
from shop.infra.messaging import Message, consume
from tests.support import new_id

pytestmark = pytest.mark.all_backends


async def test_deliveries_at_once_share_a_transaction_and_a_failing_one_fails_alone(shop) -> None:
    sub = next(s for s in shop.runtime.subscriptions if s.service == "order")
    tag = next(iter(sub.handlers))
    contexts: dict[str, str | None] = {}

    async def handler(uow, msg: Message) -> None:
        contexts[msg.key] = ORDER_ID.get()  # each in its own delivery's context, batched or not
        if msg.body["poison"]:
            raise RuntimeError(f"poison {msg.key}")

    mine = dataclasses.replace(sub, handlers={tag: handler})
    keys = [str(new_id()) for _ in range(8)]
    msgs = [Message(sub.topic, tag, k, {"orderId": k, "poison": i == 3}) for i, k in enumerate(keys)]
    results = await asyncio.gather(*(consume(mine, m, Faults()) for m in msgs), return_exceptions=True)

    assert [str(r) if r else None for r in results] == [f"poison {k}" if i == 3 else None for i, k in enumerate(keys)]
    if mine.together is None:  # SQLite: each in a transaction of its own
        assert shop.runtime.dbs["order"].dialect == "sqlite"
    else:  # all eight came before the first transaction began: one for them all, then, the poisoned
        # one having failed it, each again alone
        assert mine.together.batches == 1
    async with mine.db.unit_of_work(readonly=True) as uow:
        handled = {k for k in keys if await mine.inbox.handled(uow, k)}
    assert handled == set(keys) - {keys[3]}
    assert contexts == {k: k for k in keys}

    # Redelivered, the handled ones are duplicates and the poisoned one is handled once it is not.
    again = [dataclasses.replace(m, body={**m.body, "poison": False}) for m in msgs]
    with about_order("0"):
        assert await asyncio.gather(*(consume(mine, m, Faults()) for m in again)) == [None] * 8
    async with mine.db.unit_of_work(readonly=True) as uow:
        assert [len(await mine.inbox.handled(uow, k)) for k in keys] == [1] * 8
