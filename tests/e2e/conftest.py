"""The end-to-end suites run against each way the shop is deployed: in one process (embedded, as
`shop run` serves it, through ASGI) and as the distributed shop of `shop cluster up` on PostgreSQL
and on MariaDB, over real HTTP. A test asks for `client` (and `shop` for the few things no HTTP
call can do: mint a token, read the platform's signing key) and runs once per mode.

Each cluster starts once per test run and serves every test of its mode (pytest groups the tests
by mode), then stops: the tests make their own users, goods and coupons, so they do not meet.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shop.infra.config import Settings
from tests.cluster import Cluster
from tests.conftest import TROUBLES, _unavailable, asgi_client, embedded_shop

MODES = ["embedded", "cluster-postgresql", "cluster-mysql"]


@pytest.fixture(scope="session", params=MODES)
def mode(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster | None]:
    if request.param == "embedded":
        yield None
        return
    db = request.param.removeprefix("cluster-")
    cluster = Cluster(db, tmp_path_factory.mktemp(request.param))
    missing = cluster.missing()
    if missing:
        _unavailable("the distributed shop's servers", ", ".join(missing))
    try:
        cluster.start()
    except RuntimeError as exc:
        cluster.clean_up()
        pytest.fail(str(exc), pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()
        cluster.clean_up()
        TROUBLES[f"what went wrong in the {request.param} cluster's processes (from its log)"] = cluster.troubles()


@pytest.fixture
async def shop(mode: Cluster | None, settings: Settings, backend: str, first_start: Path) -> AsyncIterator[Any]:
    if mode is not None:
        yield mode
        return
    async with embedded_shop(settings, backend, first_start) as s:
        yield s


@pytest.fixture
async def client(mode: Cluster | None, shop: Any) -> AsyncIterator[httpx.AsyncClient]:
    if mode is not None:
        async with httpx.AsyncClient(base_url=mode.url, timeout=30.0) as c:
            yield c
        return
    async with asgi_client(shop) as c:
        yield c
