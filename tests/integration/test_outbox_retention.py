"""A sent message stays in its outbox, marked sent and never due again, for its order's timeline,
until the retention period passes: on every backend."""
import asyncio

import pytest

from shop.infra.messaging import Message
from tests.support import new_id


@pytest.mark.all_backends
async def test_a_sent_message_is_kept_for_the_timeline_then_pruned(shop):
    relay = next(r for r in shop.runtime.relays if r.name == "order")
    db, outbox = relay.db, relay.outbox
    key = str(new_id())
    msg = Message("order", "paid", key, {"orderId": key})
    async with db.unit_of_work() as uow:
        await outbox.add(uow, msg)
        await uow.commit()
    await relay.send(msg)  # published, and marked sent
    assert msg.msg_id not in {m.msg_id for m in await outbox.due(db)}
    async with db.unit_of_work() as uow:
        sent = await outbox.sent_events(uow, key, "order")
        assert [(e.kind, e.detail["tag"], e.detail["msgId"]) for e in sent] == [("message.sent", "paid", msg.msg_id)]
        assert await outbox.prune(uow, retention_ms=3_600_000) == 0  # sent just now: kept
        await uow.commit()
    # Re-arming or disarming by key leaves a sent message alone.
    async with db.unit_of_work() as uow:
        assert await outbox.set_due(uow, "paid", key, 0) == 0
        assert await outbox.disarm(uow, "paid", key) == 0
        await uow.commit()
    await asyncio.sleep(0.01)
    async with db.unit_of_work() as uow:
        assert await outbox.prune(uow, retention_ms=1) == 1
        await uow.commit()
    async with db.unit_of_work(readonly=True) as uow:
        assert await outbox.sent_events(uow, key, "order") == []
