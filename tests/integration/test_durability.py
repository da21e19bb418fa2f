"""The durability check on the real local servers: what the shop's own connection to a database
reads, a per-database weakening seen (and only where it is), and `prepare` (which `shop cluster up`
runs) saying it. Global server settings are changed only inside a test and restored in a finally."""
from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import asyncmy
import asyncpg
import pytest

from shop.bootstrap import prepare
from shop.infra.config import SERVICES, Settings
from shop.infra.db import drop_databases, ensure_databases, weak_durability
from tests.conftest import MYSQL_URL, PG_URL, _unavailable


def _databases(server: str, names: list[str]) -> Iterator[list[str]]:
    try:
        ensure_databases(server, names, fresh=True)
    except Exception as exc:  # noqa: BLE001
        _unavailable(server.split(":")[0], exc)
    try:
        yield [f"{server}/{n}" for n in names]
    finally:
        drop_databases(server, names)


@pytest.fixture
def pg_prefix() -> str:
    return f"shop_durable_{os.getpid()}_{os.urandom(2).hex()}"


@pytest.fixture
def pg_urls(pg_prefix: str) -> Iterator[list[str]]:
    """One database per service, as a cluster named pg_prefix has them."""
    yield from _databases(PG_URL, [f"{pg_prefix}_{s}" for s in SERVICES])


@pytest.fixture
def mysql_url() -> Iterator[str]:
    for urls in _databases(MYSQL_URL, [f"shop_durable_{os.getpid()}_{os.urandom(2).hex()}"]):
        yield urls[0]


def _pg(sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(PG_URL + "/postgres")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def test_the_local_postgresql_server_is_durable_as_it_comes(pg_urls: list[str]) -> None:
    assert weak_durability(pg_urls) == []


def test_a_database_with_synchronous_commit_off_is_named_and_the_others_are_not(pg_urls: list[str],
                                                                                pg_prefix: str) -> None:
    _pg(f'ALTER DATABASE "{pg_prefix}_order" SET synchronous_commit = off')  # dropped with the database
    [warning] = weak_durability(pg_urls)
    assert warning.startswith(f"postgresql server 127.0.0.1:5432: synchronous_commit is off (in {pg_prefix}_order)")
    assert "OS crash or power cut" in warning


def test_prepare_warns_of_it_and_goes_on(pg_urls: list[str], pg_prefix: str, tmp_path: Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
    _pg(f'ALTER DATABASE "{pg_prefix}_pay" SET synchronous_commit = off')
    settings = Settings(data_dir=tmp_path, **{f"{s}_db_url": f"{PG_URL}/{pg_prefix}_{s}" for s in SERVICES})
    with caplog.at_level(logging.WARNING, logger="shop.prepare"):
        prepare(settings)  # what `shop cluster up` and `shop prepare` run before any process starts
    warnings = [r.getMessage() for r in caplog.records if r.name == "shop.prepare"]
    assert len(warnings) == 1 and f"synchronous_commit is off (in {pg_prefix}_pay)" in warnings[0]
    assert (tmp_path / "token.secret").exists()  # a warning, not a refusal: the rest was prepared


async def _mysql_global(name: str, value: object | None = None) -> object:
    conn = await asyncmy.connect(host="127.0.0.1", port=3306, user="root", password="")
    try:
        async with conn.cursor() as cur:
            if value is not None:
                await cur.execute(f"SET GLOBAL {name} = %s", (value,))
            await cur.execute(f"SELECT @@GLOBAL.{name}")
            return (await cur.fetchone())[0]
    finally:
        conn.close()


async def test_the_local_mariadb_is_durable_as_it_comes(mysql_url: str) -> None:
    seen = {n: await _mysql_global(n) for n in ("innodb_flush_log_at_trx_commit", "log_bin", "sync_binlog")}
    warnings = await asyncio.to_thread(weak_durability, [mysql_url])
    # Seen here: innodb_flush_log_at_trx_commit 1, log_bin 0 (off), so sync_binlog 0 does not matter.
    if seen["log_bin"] in (1, "1", "ON") and seen["sync_binlog"] not in (1, "1"):
        assert [w.split(" is ")[0].rsplit(" ", 1)[1] for w in warnings] == ["sync_binlog"], (seen, warnings)
    else:
        assert warnings == [], seen


async def test_innodb_flush_log_at_trx_commit_2_is_named(mysql_url: str) -> None:
    before = await _mysql_global("innodb_flush_log_at_trx_commit")
    try:
        assert await _mysql_global("innodb_flush_log_at_trx_commit", 2) == 2
        warnings = await asyncio.to_thread(weak_durability, [mysql_url])
    finally:
        await _mysql_global("innodb_flush_log_at_trx_commit", before)
    assert any(w.startswith("mysql server 127.0.0.1:3306: innodb_flush_log_at_trx_commit is 2") for w in warnings), \
        warnings
