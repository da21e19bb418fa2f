"""Login throttling (API.md "Limits and formats"): after 5 failed logins for one user name within
the window, further attempts for that name answer 429 with Retry-After, whatever the password,
until the window passes. The count lives in the user service's database, so every front door and
every user service process shares it: here on SQLite, PostgreSQL and MariaDB."""
from __future__ import annotations

import asyncio
import logging
import time
from decimal import Decimal

import httpx
import pytest
from argon2 import PasswordHasher

from shop.common.codes import ShopCode
from shop.common.errors import ShopError
from shop.common.ids import IdWorker
from shop.infra.db import open_database
from shop.services.user.contracts import CreateUser
from shop.services.user.domain import LoginLimits
from shop.services.user.handlers import UserHandlers
from tests.conftest import ADMIN

pytestmark = pytest.mark.all_backends
WINDOW_S = 3.0
RIGHT, WRONG = "the-right-password", "a-wrong-password"


async def login(client: httpx.AsyncClient, name: str, password: str) -> httpx.Response:
    return await client.post("/user/login", json={"userName": name, "userPassword": password})


@pytest.mark.shop_settings(login_window_s=WINDOW_S)
async def test_five_failures_throttle_the_name_until_the_window_passes(client, caplog):
    admin = {"Authorization": f"Bearer {ADMIN}"}
    for name in ("mallory-target", "bystander"):
        r = await client.post("/admin/users", headers=admin,
                              json={"userName": name, "userPassword": RIGHT, "userMoney": "0"})
        assert r.status_code == 200, r.text
    caplog.set_level(logging.WARNING, logger="shop.user")
    started = time.monotonic()
    for _ in range(5):
        r = await login(client, "mallory-target", WRONG)
        assert r.status_code == 401 and r.json()["code"] == "SHOP_USER_NOT_AUTHORIZED"
        assert r.headers["www-authenticate"] == 'Bearer realm="shop"'
    r = await login(client, "mallory-target", RIGHT)  # the right password, too late
    assert time.monotonic() - started < WINDOW_S, "the attempts took longer than the window: raise WINDOW_S"
    assert r.status_code == 429 and r.json()["code"] == "SHOP_USER_LOGIN_THROTTLED", r.text
    retry_after = int(r.headers["retry-after"])
    assert 1 <= retry_after <= WINDOW_S and r.json()["data"] == {"retryAfter": retry_after}
    assert "token" not in r.text
    # Another name is not held up, and its token is not kept by any cache.
    r = await login(client, "bystander", RIGHT)
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    assert r.headers["x-content-type-options"] == "nosniff"
    # Every failure is logged, with the name and never the password.
    failed = [rec.getMessage() for rec in caplog.records if "failed login" in rec.getMessage()]
    assert len(failed) == 5 and all("mallory-target" in m for m in failed)
    assert not any(RIGHT in rec.getMessage() or WRONG in rec.getMessage() for rec in caplog.records)

    await asyncio.sleep(retry_after + 0.1)
    r = await login(client, "mallory-target", RIGHT)
    assert r.status_code == 200 and r.json()["data"]["token"], r.text
    # A success forgets the failures: a fresh count of five.
    for _ in range(5):
        assert (await login(client, "mallory-target", WRONG)).status_code == 401
    assert (await login(client, "mallory-target", WRONG)).status_code == 429


@pytest.mark.shop_settings(login_window_s=60.0)
async def test_the_count_is_shared_by_every_user_service_process(shop, settings):
    """Two user service processes on one database (two handlers, two connections), ten wrong
    attempts at once: five are checked, the others throttled, however they interleave."""
    await shop.users.create_user(CreateUser("eve-target", RIGHT, Decimal("0")))
    hasher = PasswordHasher(time_cost=1, memory_cost=1024)
    dbs = [open_database(settings.db_url("user")) for _ in range(2)]
    for db in dbs:
        await db.connect()
    try:
        limits = LoginLimits(5, 60_000)
        doors = [UserHandlers(db, IdWorker(i + 1, 1), hasher, limits) for i, db in enumerate(dbs)]
        outcomes = await asyncio.gather(*(doors[i % 2].login("eve-target", WRONG) for i in range(10)),
                                        return_exceptions=True)
        others = [repr(e) for e in outcomes if not isinstance(e, ShopError)]
        assert not others, others  # a deadlock (MariaDB's, on a new name's row) would show here
        codes = sorted(e.code.name for e in outcomes if isinstance(e, ShopError))
        assert codes == ["SHOP_USER_LOGIN_THROTTLED"] * 5 + ["SHOP_USER_NOT_AUTHORIZED"] * 5, outcomes
        with pytest.raises(ShopError) as e:
            await shop.users.login("eve-target", RIGHT)  # the shop's own user service sees them too
        assert e.value.code is ShopCode.SHOP_USER_LOGIN_THROTTLED and e.value.http_status == 429
    finally:
        for db in dbs:
            await db.close()
