"""Shared fixtures: a wired shop on a fresh data dir, on SQLite or a real PostgreSQL / MariaDB.

PostgreSQL and MariaDB tests need those servers. Under CI (CI=true) a missing server fails the
test; elsewhere the test is skipped with the reason.
"""
from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from shop.app import create_app
from shop.bootstrap import MODELS, Shop, bootstrap
from shop.infra.config import SERVICES, Settings
from shop.infra.migrate import upgrade
from shop.sandbox.notify import http_sender

ADMIN = "test-admin-token"
PG_URL = os.environ.get("SHOP_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432")
MYSQL_URL = os.environ.get("SHOP_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    base: dict[str, object] = dict(
        data_dir=data_dir, admin_token=ADMIN, token_secret="test-token-secret-of-at-least-32-bytes", faults=True,
        order_cancel_after_s=2.0, message_backoff_ms=50, sandbox_notify_schedule_s="0.1,0.2,0.4,0.8", message_backoff_cap_ms=400, message_max_attempts=4,
        password_time_cost=1, password_memory_kib=1024,
    )
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


def _unavailable(what: str, exc: BaseException) -> None:
    msg = f"{what} is not reachable ({exc!r})"
    if IN_CI:
        pytest.fail(f"{msg}; CI must have it", pytrace=False)
    pytest.skip(msg)


async def _create_pg_databases(prefix: str) -> dict[str, str]:
    import asyncpg

    conn = await asyncpg.connect(f"{PG_URL}/postgres")
    try:
        for s in SERVICES:
            await conn.execute(f'DROP DATABASE IF EXISTS "{prefix}_{s}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{prefix}_{s}"')
    finally:
        await conn.close()
    return {s: f"{PG_URL}/{prefix}_{s}" for s in SERVICES}


async def _create_mysql_databases(prefix: str) -> dict[str, str]:
    import asyncmy
    from sqlalchemy.engine import make_url

    u = make_url(MYSQL_URL)
    conn = await asyncmy.connect(host=u.host, port=u.port or 3306, user=u.username or "root", password=u.password or "")
    try:
        async with conn.cursor() as cur:
            for s in SERVICES:
                await cur.execute(f"DROP DATABASE IF EXISTS `{prefix}_{s}`")
                await cur.execute(f"CREATE DATABASE `{prefix}_{s}` CHARACTER SET utf8mb4")
    finally:
        conn.close()
    return {s: f"{MYSQL_URL}/{prefix}_{s}" for s in SERVICES}


_SERVER_URLS: dict[str, dict[str, str]] = {}


def server_urls(backend: str) -> dict[str, str]:
    """Create the databases and migrate them once per test run and worker."""
    if backend not in _SERVER_URLS:
        prefix = f"shop_test_{os.getpid()}"
        create = _create_pg_databases if backend == "postgresql" else _create_mysql_databases
        try:
            urls = asyncio.run(create(prefix))
        except Exception as exc:  # noqa: BLE001
            _unavailable(backend, exc)
        for s in SERVICES:
            upgrade(s, urls[s])
        _SERVER_URLS[backend] = urls
    return _SERVER_URLS[backend]


async def truncate(shop: Shop) -> None:
    for s in SERVICES:
        async with shop.dbs[s].unit_of_work() as uow:
            from shop.infra.db import Query

            for table in reversed(MODELS[s].metadata.sorted_tables):
                await uow.execute(Query(table.delete()))
            await uow.commit()


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    return getattr(request, "param", "sqlite")


@pytest.fixture
def settings(tmp_path: Path, backend: str) -> Settings:
    if backend == "sqlite":
        return make_settings(tmp_path)
    urls = server_urls(backend)
    return make_settings(tmp_path, **{f"{s}_db_url": urls[s] for s in SERVICES})


@pytest.fixture
async def shop(settings: Settings, backend: str) -> AsyncIterator[Shop]:
    s = bootstrap(settings, run_migrations=backend == "sqlite")
    await s.start()
    if backend != "sqlite":
        await truncate(s)
    try:
        yield s
    finally:
        await s.stop()


@pytest.fixture
async def client(shop: Shop) -> AsyncIterator[httpx.AsyncClient]:
    """HTTP straight into the app (no socket); the shop fixture has started it already."""
    app = create_app(shop)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shop") as c:
        # The sandbox's notifications reach this app the same way, through this client.
        shop.sandbox.use_sender(http_sender(c))
        yield c


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked `all_backends` run on SQLite, PostgreSQL and MariaDB."""
    if "backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker("all_backends"):
        metafunc.parametrize("backend", ["sqlite", "postgresql", "mysql"], indirect=True)
