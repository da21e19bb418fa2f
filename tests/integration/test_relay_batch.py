"""The relay hands the broker a pass's due rows a few at a time (WRITE_AT_MOST), marking each write's
rows sent in one transaction, and a settling request sends its own order's message only: on a real
outbox (SQLite) and the real embedded broker, which the test watches through a wrapper that counts
its writes."""
from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest
import sqlalchemy as sa

from shop.infra.db import SqliteDatabase
from shop.infra.faults import Faults
from shop.infra.messaging import EmbeddedBroker, Message, Outbox, Relay, Settler, add_message_tables
from shop.infra.messaging.relay import WRITE_AT_MOST


class Watched:
    """The real broker, its writes counted; it can be told to fail the next one."""

    def __init__(self, inner: EmbeddedBroker) -> None:
        self.inner = inner
        self.writes: list[list[str]] = []  # each write's message ids
        self.fail_next = False

    async def publish_many(self, msgs: Sequence[Message]) -> None:
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("the broker went away mid-write")
        await self.inner.publish_many(msgs)
        self.writes.append([m.msg_id for m in msgs])

    async def wait_handled(self, tag: str, key: str, timeout_s: float) -> None:
        await self.inner.wait_handled(tag, key, timeout_s)


@pytest.fixture
async def parts(tmp_path: Path):
    md = sa.MetaData()
    table, _ = add_message_tables(md)
    db = SqliteDatabase(str(tmp_path / "order.db"))
    md.create_all(sa.create_engine(f"sqlite:///{db.path}"))
    await db.connect()
    inner = EmbeddedBroker(SqliteDatabase(str(tmp_path / "broker.db")), [("log-group", "order", ("paid",))], Faults())
    await inner.connect()
    broker = Watched(inner)
    outbox = Outbox(table, "order-producer")
    relay = Relay("order", db, outbox, broker)  # type: ignore[arg-type] - the broker's methods it uses
    yield db, outbox, relay, broker
    await inner.close()
    await db.close()


async def _add(db: SqliteDatabase, outbox: Outbox, keys: list[str]) -> list[Message]:
    msgs = [Message("order", "paid", k, {"orderId": k}) for k in keys]
    async with db.unit_of_work() as uow:
        for m in msgs:
            await outbox.add(uow, m)
        await uow.commit()
    return msgs


async def _queued(broker: Watched) -> int:
    return await broker.inner.pending()


async def test_a_pass_sends_its_due_rows_in_a_few_writes_not_one_per_row(parts) -> None:
    db, outbox, relay, broker = parts
    msgs = await _add(db, outbox, [str(k) for k in range(50)])

    assert await relay.run_once() == 50

    # two writes for the pass (WRITE_AT_MOST a write), not one per row
    assert broker.writes == [[m.msg_id for m in msgs[:WRITE_AT_MOST]], [m.msg_id for m in msgs[WRITE_AT_MOST:]]]
    assert await outbox.due(db) == []  # all marked sent
    assert await _queued(broker) == 50
    assert await relay.run_once() == 0 and len(broker.writes) == 2  # nothing sent twice


async def test_a_failed_write_leaves_every_row_due(parts) -> None:
    db, outbox, relay, broker = parts
    msgs = await _add(db, outbox, ["1", "2", "3"])
    broker.fail_next = True

    with pytest.raises(ConnectionError):
        await relay.run_once()

    assert {m.msg_id for m in await outbox.due(db)} == {m.msg_id for m in msgs}
    assert await relay.run_once() == 3  # the next pass sends them
    assert await outbox.due(db) == []


async def test_a_settling_request_sends_its_own_message_not_the_backlog(parts) -> None:
    db, outbox, relay, broker = parts
    backlog = await _add(db, outbox, [str(k) for k in range(100)])
    [own] = await _add(db, outbox, ["own"])

    await Settler(relay, broker, timeout_s=2.0).settle("paid", "own")  # type: ignore[arg-type]

    assert broker.writes == [[own.msg_id]]
    assert {m.msg_id for m in await outbox.due(db)} == {m.msg_id for m in backlog}


async def test_a_settling_request_waits_for_the_pass_in_progress(parts) -> None:
    """The settling request's pass and the loop's never run side by side, so a row both read is
    sent once."""
    db, outbox, relay, broker = parts
    [own] = await _add(db, outbox, ["own"])
    entered = asyncio.Event()
    release = asyncio.Event()
    inner_many = broker.publish_many

    async def slow(msgs: Sequence[Message]) -> None:
        entered.set()
        await release.wait()
        await inner_many(msgs)

    broker.publish_many = slow  # type: ignore[method-assign]
    loop_pass = asyncio.create_task(relay.run_once())
    await entered.wait()
    settling = asyncio.create_task(relay.send_now("paid", "own"))
    await asyncio.sleep(0.05)
    assert not settling.done()  # waits for the pass, which has its row
    release.set()
    await asyncio.gather(loop_pass, settling)

    assert broker.writes == [[own.msg_id]]  # once
    assert await outbox.due(db) == []
