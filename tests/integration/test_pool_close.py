"""A server database's close() is bounded: a connection a cancelled task never gave back is cut
after the grace, instead of holding the shop's stop forever (both drivers' own close waits for every
connection without a bound; a MariaDB shutdown in CI hung until the test's 300 s timeout)."""
import asyncio
import time

import pytest
import sqlalchemy as sa

from shop.infra.db import PooledDatabase, Query
from shop.infra.db.servers import open_database
from tests.conftest import server_urls


@pytest.fixture(params=["postgresql", "mysql"])
def url(request: pytest.FixtureRequest) -> str:
    return server_urls(request.param)["goods"]  # outside the test's event loop: it runs its own


async def test_close_cuts_a_connection_never_given_back(url):
    db = open_database(url)
    assert isinstance(db, PooledDatabase)
    db.CLOSE_GRACE_S = 0.5
    await db.connect()
    pool = db.pool
    leaked = await pool.acquire()  # taken and never released: what a cancelled task can leave
    started = time.monotonic()
    # Bounded here too: before the fix this close never returned.
    await asyncio.wait_for(db.close(), 5.0)
    assert time.monotonic() - started < 3.0
    assert db.pool is None
    assert leaked is not None


async def test_close_waits_for_a_connection_given_back_within_the_grace(url):
    db = open_database(url)
    assert isinstance(db, PooledDatabase)
    await db.connect()
    async with db.unit_of_work() as uow:
        closing = asyncio.create_task(db.close())
        await asyncio.sleep(0.1)
        assert not closing.done()  # it waits for the unit of work in flight
    await asyncio.wait_for(closing, 5.0)
    assert db.pool is None
    assert uow is not None


SLEEP = Query(lambda dialect: sa.text("SELECT pg_sleep(5)" if dialect == "postgresql" else "SELECT SLEEP(5)"))


async def test_a_unit_of_work_cancelled_mid_statement_is_cancelled(url):
    """The cancel, not the driver's error from the rollback on the connection the cancel broke:
    asyncmy closes a connection cancelled mid-read, its rollback then raised InterfaceError
    ('Cancelled during execution') in place of the CancelledError, the relay's loop took that for
    a database away and went on, and the shop's stop waited for it until the test's 300 s timeout."""
    db = open_database(url)
    await db.connect()
    try:
        async def sleep() -> None:
            async with db.unit_of_work() as uow:
                await uow.fetchone(SLEEP)

        task = asyncio.create_task(sleep())
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 3.0)
        row = await db.fetchone(Query(sa.text("SELECT 1 AS one")))
        assert row is not None and row["one"] == 1  # the pool still serves
    finally:
        await db.close()
