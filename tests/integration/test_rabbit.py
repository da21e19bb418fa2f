"""The RabbitMQ broker against a real RabbitMQ: every group sees every message, once; failures
are retried with back-off, then parked dead and replayable; nothing published is lost."""
import asyncio
import contextlib
import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from shop.common.errors import ServiceUnavailable
from shop.infra.db import SqliteDatabase
from shop.infra.faults import Faults
from shop.infra.messaging import Inbox, Message, Subscription, add_message_tables
from shop.infra.rabbit import RabbitBroker, queue_name
from tests.conftest import _unavailable

URL = os.environ.get("SHOP_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


class Recorder:
    """A consumer's work: what it committed, and how often it should fail first."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.calls = 0
        self.done: list[str] = []

    async def __call__(self, uow, msg: Message) -> None:
        self.calls += 1
        if self.calls <= self.fail_first:
            raise RuntimeError(f"failing on purpose ({self.calls})")
        self.done.append(msg.key)


def _db(tmp_path: Path, name: str) -> tuple[SqliteDatabase, Inbox]:
    md = sa.MetaData()
    _, inbox = add_message_tables(md)
    db = SqliteDatabase(str(tmp_path / f"{name}.db"))
    md.create_all(sa.create_engine(f"sqlite:///{db.path}"))
    return db, Inbox(inbox)


@pytest.fixture
async def env(tmp_path):
    run = os.urandom(4).hex()
    made: list[RabbitBroker] = []
    tasks: list[asyncio.Task] = []

    async def broker(groups: dict[str, Recorder], *, consume: bool = True, max_attempts: int = 3,
                     backoff_ms: int = 100) -> RabbitBroker:
        subs = []
        for g, rec in groups.items():
            db, inbox = _db(tmp_path, f"{g}-{len(made)}")
            subs.append(Subscription(group=f"t{run}-{g}", service=g, topic=f"t{run}", db=db, inbox=inbox,
                                     handlers={"cancel": rec, "paid": rec}))
        b = RabbitBroker(URL, [(s.group, s.topic, tuple(s.handlers)) for s in subs], Faults(),
                         max_attempts=max_attempts, backoff_base_ms=backoff_ms, backoff_cap_ms=max(300, backoff_ms))
        try:
            await b.connect()
        except Exception as exc:  # noqa: BLE001
            _unavailable("RabbitMQ", exc)
        made.append(b)
        if consume:
            tasks.append(asyncio.create_task(b.run(subs)))
        return b

    yield run, broker
    for t in tasks:
        t.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await t
    live = [b for b in made if b.conn is not None]
    if live:
        ch = await live[-1]._channel()
        for group, _, _ in {t for b in made for t in b.topology}:
            for suffix in ("", ".retry", ".dead"):
                with contextlib.suppress(Exception):
                    await ch.queue_delete(queue_name(group) + suffix)
        with contextlib.suppress(Exception):
            await ch.exchange_delete(f"shop.t{run}")
    for b in made:
        await b.close()


async def _until(check, timeout_s: float = 10.0) -> bool:
    end = asyncio.get_running_loop().time() + timeout_s
    while not check():
        if asyncio.get_running_loop().time() > end:
            return False
        await asyncio.sleep(0.02)
    return True


async def test_every_group_sees_every_message_once(env):
    run, broker = env
    a, b = Recorder(), Recorder()
    br = await broker({"goods": a, "user": b})
    msg = Message(f"t{run}", "cancel", "42", {"orderId": "42"})
    await br.publish(msg)
    await br.publish(msg)  # a redelivery (the relay crashed before deleting its row)
    assert await _until(lambda: a.calls >= 1 and b.calls >= 1)
    await asyncio.sleep(0.3)
    assert a.done == ["42"] and b.done == ["42"]
    assert await br.pending() == 0


async def test_a_batch_published_at_once_reaches_every_group_once(env):
    """The relay's pass: every message of the batch confirmed together, each consumed once."""
    run, broker = env
    a, b = Recorder(), Recorder()
    br = await broker({"goods": a, "user": b})
    keys = [str(k) for k in range(40)]
    await br.publish_many([Message(f"t{run}", "paid", k, {"orderId": k}) for k in keys])
    assert await _until(lambda: len(a.done) >= 40 and len(b.done) >= 40)
    await asyncio.sleep(0.2)
    assert sorted(a.done) == sorted(keys) and sorted(b.done) == sorted(keys)


async def test_a_message_published_before_its_consumer_started_waits_for_it(env):
    run, broker = env
    rec = Recorder()
    publisher = await broker({"log": rec}, consume=False)
    await publisher.publish(Message(f"t{run}", "paid", "7", {}))
    assert await publisher.pending() == 1
    await broker({"log": rec})
    assert await _until(lambda: rec.done == ["7"])


async def test_failures_are_retried_with_back_off_then_succeed(env):
    run, broker = env
    rec = Recorder(fail_first=2)
    br = await broker({"goods": rec}, max_attempts=4)
    t = asyncio.get_running_loop().time()
    await br.publish(Message(f"t{run}", "cancel", "1", {}))
    assert await _until(lambda: rec.done == ["1"])
    assert rec.calls == 3
    assert asyncio.get_running_loop().time() - t >= 0.1 + 0.2  # the two back-offs
    assert await br.dead() == []


async def test_a_message_that_keeps_failing_is_parked_dead_and_can_be_replayed(env):
    run, broker = env
    rec = Recorder(fail_first=100)
    br = await broker({"coupon": rec}, max_attempts=3)
    await br.publish(Message(f"t{run}", "cancel", "9", {"orderId": "9"}))
    assert await _until(lambda: rec.calls >= 3)
    dead: list = []
    for _ in range(100):
        dead = await br.dead()
        if dead:
            break
        await asyncio.sleep(0.05)
    assert len(dead) == 1 and dead[0]["key"] == "9" and dead[0]["attempts"] == 3
    assert len(await br.dead()) == 1  # listing leaves it in place
    assert rec.done == []
    rec.fail_first = 0
    assert await br.replay(dead[0]["id"])
    assert await _until(lambda: rec.done == ["9"])
    assert await br.dead() == []
    assert not await br.replay(dead[0]["id"])
    # An id naming no group of ours is simply not there; no queue is declared for it.
    for bad in ("nogroup:1", "\U000f8a74é\x18P=:x", "", ":", dead[0]["id"].split(":")[0] + ":nope"):
        assert not await br.replay(bad), bad


class DependencyDown(Recorder):
    """A consumer whose dependency refuses connections for its first `fail_first` deliveries: a real
    ConnectionRefusedError, from a port nothing listens on (as while a database restarts)."""

    async def __call__(self, uow, msg: Message) -> None:
        self.calls += 1
        if self.calls <= self.fail_first:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            await asyncio.open_connection("127.0.0.1", port)
        self.done.append(msg.key)


async def test_a_message_whose_dependency_is_down_outlasts_its_attempts_and_is_never_parked(env):
    # Parking it would leave every message of an outage to be replayed by hand (issue 11: a
    # MariaDB restart parked refunds dead after their 4 attempts).
    run, broker = env
    rec = DependencyDown(fail_first=6)
    br = await broker({"goods": rec}, max_attempts=2, backoff_ms=50)
    await br.publish(Message(f"t{run}", "cancel", "5", {}))
    assert await _until(lambda: rec.done == ["5"])
    assert rec.calls == 7
    assert await br.dead() == []


async def test_a_message_parked_twice_is_listed_once_and_replayed_whole(env):
    # At least once: the same message may arrive (and fail, and be parked) twice.
    run, broker = env
    rec = Recorder(fail_first=100)
    br = await broker({"coupon": rec}, max_attempts=2)
    msg = Message(f"t{run}", "cancel", "7", {"orderId": "7"})
    await br.publish(msg)
    await br.publish(msg)
    assert await _until(lambda: rec.calls >= 4)
    dead: list = []
    for _ in range(100):
        dead = await br.dead()
        if dead and await br.pending() == 0:
            break
        await asyncio.sleep(0.05)
    assert [d["key"] for d in dead] == ["7"], dead
    rec.fail_first = 0
    assert await br.replay(dead[0]["id"])
    assert await _until(lambda: rec.done == ["7"])
    assert await _until(lambda: rec.calls >= 5)
    for _ in range(100):
        if await br.pending() == 0:
            break
        await asyncio.sleep(0.05)
    assert rec.done == ["7"]  # both copies came back; the inbox kept the second from working
    assert await br.dead() == []


async def test_an_unacknowledged_delivery_comes_back_after_its_consumer_dies(env):
    run, broker = env
    started, release = asyncio.Event(), asyncio.Event()

    class Stuck(Recorder):
        async def __call__(self, uow, msg):
            self.calls += 1
            started.set()
            await release.wait()  # never released: the process "dies" first

    stuck = Stuck()
    first = await broker({"order": stuck})
    await first.publish(Message(f"t{run}", "cancel", "5", {}))
    assert await asyncio.wait_for(started.wait(), 10)
    await first.close()  # the consumer's connection drops with the delivery unacknowledged
    rec = Recorder()
    await broker({"order": rec})
    assert await _until(lambda: rec.done == ["5"])


async def test_a_message_waiting_in_back_off_is_listed_and_a_replay_tries_it_at_once(env):
    run, broker = env
    rec = Recorder(fail_first=1)
    br = await broker({"goods": rec}, backoff_ms=60_000)
    await br.publish(Message(f"t{run}", "cancel", "7", {"orderId": "7"}))
    assert await _until(lambda: rec.calls == 1)
    waiting: list = []
    for _ in range(100):
        waiting = [w for w in await br.retrying() if w["group"] == f"t{run}-goods"]
        if waiting:
            break
        await asyncio.sleep(0.05)
    assert len(waiting) == 1, waiting
    w = waiting[0]
    assert (w["state"], w["key"], w["attempts"]) == ("retrying", "7", 1) and "failing on purpose" in w["lastError"]
    next_try = datetime.fromisoformat(w["nextAttemptAt"].removesuffix("Z")).replace(tzinfo=UTC)
    assert next_try > datetime.now(UTC) + timedelta(seconds=50)  # not tried again before the replay
    await asyncio.sleep(0.3)
    assert rec.done == []
    assert await br.replay(w["id"])
    assert await _until(lambda: rec.done == ["7"])
    assert [x for x in await br.retrying() if x["group"] == f"t{run}-goods"] == []
    assert not await br.replay(w["id"])  # nothing left to try


async def test_the_operators_reads_with_the_broker_away_are_a_dependency_down(env):
    """aio-pika answers a channel asked of a connection that is not open with a plain RuntimeError;
    the operator's reads (pending work, dead messages) must be a 503, not a 500 of ours."""
    run, broker = env
    b = await broker({"a": Recorder()}, consume=False)
    assert await b.pending() >= 0
    await b.conn.close()  # what a reconnecting connection is to a caller meanwhile: not open
    try:
        for read in (b.pending, b.dead, b.dead_counts):
            with pytest.raises(ServiceUnavailable):
                await read()
    finally:
        b.conn = None  # closed already: the fixture's clean-up uses another broker's connection
        b2 = await broker({}, consume=False)  # so that the clean-up has a live one
        assert b2.conn is not None
