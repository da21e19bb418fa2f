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
from typing import Any

import httpx
import pytest
from _pytest.nodeid import NodeId

from shop.app import create_app
from shop.bootstrap import bootstrap, migrate
from shop.infra.config import SERVICES, Settings
from shop.infra.db import drop_databases, ensure_databases
from shop.infra.files import private_dir
from shop.infra.signing import load_or_create_key_pair
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


# What a first start makes in a data dir that costs a test most: the six SQLite databases migrated
# (Alembic, ~0.5 s) and the sandbox's RSA key pair (~0.2 s).
_FIRST_START_FILES = [f"{s}.db" for s in SERVICES] + ["sandbox_private.pem", "sandbox_public.pem"]


@pytest.fixture(scope="session")
def first_start(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir as an embedded shop's first start leaves it, made once per run (and xdist worker):
    each test's embedded shop starts on a copy. Starting from nothing is still what
    tests/unit/test_migrations.py, tests/integration/test_front_door.py and every `shop run` of the e2e
    tests do."""
    directory = tmp_path_factory.mktemp("first-start")
    migrate(make_settings(directory))
    load_or_create_key_pair(private_dir(directory))  # where bootstrap's sandbox_platform keeps it
    return directory


def _copy_first_start(settings: Settings, first_start: Path) -> bool:
    """The first start's files copied into settings' data dir (their modes kept: the key is 0600);
    False, and nothing copied, when the data dir has any of them already or a database is elsewhere."""
    data_dir = settings.data_dir
    if any(settings.db_url(s) != f"sqlite:///{(data_dir / f'{s}.db').resolve()}" for s in SERVICES) or any(
        (data_dir / name).exists() for name in _FIRST_START_FILES
    ):
        return False
    data_dir.mkdir(parents=True, exist_ok=True)
    for name in _FIRST_START_FILES:
        shutil.copy2(first_start / name, data_dir / name)
    return True


@asynccontextmanager
async def embedded_shop(settings: Settings, backend: str, first_start: Path | None = None) -> AsyncIterator[Shop]:
    """The shop on `settings`, started. On SQLite, from a copy of `first_start` (the fixture) when given
    and the data dir is new, else migrated here."""
    copied = backend == "sqlite" and first_start is not None and _copy_first_start(settings, first_start)
    s = bootstrap(settings, run_migrations=backend == "sqlite" and not copied)
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
async def shop(settings: Settings, backend: str, first_start: Path) -> AsyncIterator[Shop]:
    async with embedded_shop(settings, backend, first_start) as s:
        yield s


@pytest.fixture
async def client(shop: Shop) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(shop) as c:
        yield c


# What went wrong around the tests, under a section title each: what each shared cluster's processes
# logged as going wrong (tests/e2e/conftest.mode), databases not dropped. Printed at the end of the
# run: a CI run shows only pytest's output, and a test's failure says what it saw, not why a process
# died. Under pytest-xdist a worker's findings reach the controller, which prints them all.
TROUBLES: dict[str, list[str]] = {}


@pytest.hookimpl(trylast=True)  # after the session's fixtures are torn down (the clusters' logs are final)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Drop the databases this run (or this xdist worker) created: a shared server would otherwise
    collect them."""
    for backend, urls in _SERVER_URLS.items():
        server = PG_URL if backend == "postgresql" else MYSQL_URL
        try:
            drop_databases(server, [u.rsplit("/", 1)[1] for u in urls.values()])
        except Exception as exc:  # noqa: BLE001 - the run's verdict stands; say what was left
            left = TROUBLES.setdefault("test databases left on the servers", [])
            left.append(f"could not drop the {backend} test databases: {exc!r}")
    output = getattr(session.config, "workeroutput", None)  # set in an xdist worker only
    if output is not None:
        output["troubles"] = TROUBLES


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's: a worker has finished (in the controller)
def pytest_testnodedown(node: Any, error: object) -> None:
    for what, lines in getattr(node, "workeroutput", {}).get("troubles", {}).items():
        TROUBLES.setdefault(what, []).extend(lines)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for what, lines in TROUBLES.items():
        if lines:
            terminalreporter.section(what)
            for line in lines:
                terminalreporter.write_line(line)


def _group(item: pytest.Item) -> str:
    """Which tests share a pytest-xdist worker (`make test` runs `--dist loadgroup`): every test of
    one shared cluster (tests/e2e/conftest.mode), whatever its file, so that each cluster starts once
    in the run; otherwise a file's tests, so that a module's servers and clusters start once, and of
    a file with a module's cluster on each database (a `cluster` parameter), those on one database."""
    params = item.callspec.params if isinstance(item, pytest.Function) and hasattr(item, "callspec") else {}
    mode = params.get("mode", "embedded")
    group = item.nodeid.split("::", 1)[0] if mode == "embedded" else f"{mode} cluster"
    return f"{group} on {params['cluster']}" if "cluster" in params else group


@pytest.hookimpl(trylast=True)  # after pytest has ordered the tests by their fixtures' parameters
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In an xdist worker, each test's group (see _group), and the order in which the groups are handed
    out (`--no-loadscope-reorder`): the shared clusters' first, then the end-to-end files that start
    their own processes, the other end-to-end, the integration and the unit tests, so that the run
    does not end on one worker starting a cluster while the others wait."""
    if not hasattr(config, "workerinput"):
        return
    if config.getvalue("loadgroup"):
        # Each test's group as the suffix of its node id, which the controller schedules by. Not with
        # xdist's own `xdist_group` mark: pytest-xdist 3.8 adds the suffix to `item._nodeid`, which pytest
        # 9.2's node ids (a NodeId in `_id`) no longer read, so every worker would start every cluster.
        for item in items:
            item._id = NodeId.parse(f"{item.nodeid}@{_group(item)}")

    def rank(item: pytest.Item) -> int:
        group = _group(item)
        if group.startswith("cluster-"):
            return 0
        if group.startswith("tests/e2e/"):
            return 2 if "mode" in getattr(item, "fixturenames", ()) else 1
        return 3 if group.startswith("tests/integration/") else 4

    items.sort(key=rank)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked `all_backends` run on SQLite, PostgreSQL and MariaDB."""
    if "backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker("all_backends"):
        metafunc.parametrize("backend", ["sqlite", "postgresql", "mysql"], indirect=True)
