"""Shared fixtures: a wired shop on a fresh data dir, on SQLite or a real PostgreSQL / MariaDB.

PostgreSQL and MariaDB tests need those servers. Under CI (CI=true) a missing server fails the
test; elsewhere the test is skipped with the reason.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from shop.app import create_app
from shop.bootstrap import bootstrap
from shop.infra.config import SERVICES, Settings
from shop.infra.db import drop_databases, ensure_databases
from shop.infra.tls import Tls, ensure_material, issue
from shop.infra.tls import load as load_tls
from shop.runtime import Shop
from shop.sandbox.notify import http_sender
from shop.services.catalog import PARTS
from shop.services.catalog import migrate_service as upgrade

ADMIN = "test-admin-token"
PG_URL = os.environ.get("SHOP_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432")
MYSQL_URL = os.environ.get("SHOP_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    base: dict[str, object] = dict(
        data_dir=data_dir, admin_token=ADMIN, token_secret="test-token-secret-of-at-least-32-bytes", faults=True,
        order_cancel_after_s=2.0, message_backoff_ms=50, sandbox_notify_schedule_s="0.1,0.2,0.4,0.8",
        message_backoff_cap_ms=400, message_max_attempts=4,
        password_time_cost=1, password_memory_kib=1024,
        sandbox=True,  # the payment tests pay at the sandbox (off by default: API.md)
        # No admission control: the race tests must race, and their orders get 200 or 409, never a
        # 503 for being many at once; tests/e2e/test_admission.py sets its own.
        admission_active=0,
    )
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


def _unavailable(what: str, exc: BaseException | str) -> None:
    msg = f"{what} is not reachable ({exc!r})"
    if IN_CI:
        pytest.fail(f"{msg}; CI must have it", pytrace=False)
    pytest.skip(msg)


_SERVER_URLS: dict[str, dict[str, str]] = {}

TlsFor = Callable[[str], Tls]  # a role's material: "order", "web", ..., or "test-server"


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFor:
    """The shop's CA and every role's certificate, as `shop prepare` makes them, read by the loader a
    process uses; and "test-server", one server certificate for all six services, for the tests
    that serve several in one gRPC server."""
    directory = tmp_path_factory.mktemp("tls")
    ensure_material(directory)
    issue(directory, "test-server", SERVICES)
    settings = Settings(data_dir=directory, tls_dir=directory, rpc_tls="on")

    def of(role: str) -> Tls:
        material = load_tls(settings, role)
        assert material is not None
        return material

    return of


def server_urls(backend: str) -> dict[str, str]:
    """Create the databases and migrate them once per test run and worker."""
    if backend not in _SERVER_URLS:
        prefix = f"shop_test_{os.getpid()}"
        server = PG_URL if backend == "postgresql" else MYSQL_URL
        try:
            ensure_databases(server, [f"{prefix}_{s}" for s in SERVICES], fresh=True)
        except Exception as exc:  # noqa: BLE001
            _unavailable(backend, exc)
        urls = {s: f"{server}/{prefix}_{s}" for s in SERVICES}
        for s in SERVICES:
            upgrade(s, urls[s])
        _SERVER_URLS[backend] = urls
    return _SERVER_URLS[backend]


async def truncate(shop: Shop) -> None:
    for s in SERVICES:
        async with shop.runtime.dbs[s].unit_of_work() as uow:
            from shop.infra.db import Query

            for table in reversed(PARTS[s].metadata.sorted_tables):
                await uow.execute(Query(table.delete()))
            await uow.commit()


@pytest.fixture(scope="session")
def synced_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The power-cut shim (tests/synced_only.c), built and checked: needs gcc."""
    from tests.synced_only import build

    gcc = shutil.which("gcc")
    if gcc is None:
        _unavailable("gcc (it builds the power-cut shim, tests/synced_only.c)", "not on PATH")
    return build(str(gcc), tmp_path_factory.mktemp("shim") / "synced_only.so")


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    return getattr(request, "param", "sqlite")


@pytest.fixture
def settings(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Settings:
    marker = request.node.get_closest_marker("shop_settings")
    overrides = dict(marker.kwargs) if marker else {}
    if backend == "sqlite":
        return make_settings(tmp_path, **overrides)
    urls = server_urls(backend)
    return make_settings(tmp_path, **{f"{s}_db_url": urls[s] for s in SERVICES}, **overrides)


@asynccontextmanager
async def embedded_shop(settings: Settings, backend: str) -> AsyncIterator[Shop]:
    s = bootstrap(settings, run_migrations=backend == "sqlite")
    await s.start()
    if backend != "sqlite":
        await truncate(s)
    try:
        yield s
    finally:
        await s.stop()


@asynccontextmanager
async def asgi_client(shop: Shop) -> AsyncIterator[httpx.AsyncClient]:
    """HTTP straight into the app (no socket); the shop has been started already."""
    app = create_app(shop)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shop") as c:
        # The sandbox's notifications reach this app the same way, through this client.
        if shop.sandbox is not None:
            shop.sandbox.use_sender(http_sender(c))
        yield c


@pytest.fixture
async def shop(settings: Settings, backend: str) -> AsyncIterator[Shop]:
    async with embedded_shop(settings, backend) as s:
        yield s


@pytest.fixture
async def client(shop: Shop) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(shop) as c:
        yield c


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Drop the databases this run created (a shared server would otherwise collect them)."""
    for backend, urls in _SERVER_URLS.items():
        server = PG_URL if backend == "postgresql" else MYSQL_URL
        try:
            drop_databases(server, [u.rsplit("/", 1)[1] for u in urls.values()])
        except Exception as exc:  # noqa: BLE001 - the run's verdict stands; say what was left
            print(f"\ncould not drop the {backend} test databases: {exc!r}")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked `all_backends` run on SQLite, PostgreSQL and MariaDB."""
    if "backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker("all_backends"):
        metafunc.parametrize("backend", ["sqlite", "postgresql", "mysql"], indirect=True)
