"""The HTTP front door in one process (infra/web.py): a bug anywhere behind it is a 500 "internal
error" in the envelope, logged once with its traceback; a dependency that is down is a 503; on
every backend, a database that drops the shop's connections is never a 500."""
from __future__ import annotations

import logging
from typing import Any

import asyncpg
import pytest

from shop.admin.operator import Operator
from shop.infra.web import FrontDoor
from shop.services.user.handlers import UserHandlers
from tests.conftest import ADMIN, MYSQL_URL
from tests.support import tracebacks

ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN}"}


def _tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return tracebacks(caplog.records)


@pytest.mark.parametrize(("raised", "status", "code", "message"), [
    (KeyError("user_money"), 500, "SHOP_FAIL", "internal error"),
    (ConnectionRefusedError(111, "Connection refused"), 503, "SHOP_SERVICE_UNAVAILABLE",
     "user.find_user is unavailable"),
    (TimeoutError(), 503, "SHOP_SERVICE_UNAVAILABLE", "user.find_user timed out"),
], ids=["bug", "refused", "timeout"])
async def test_behind_a_service_call(shop, client, monkeypatch, caplog, raised, status, code, message):
    async def broken(self: Any, user_id: int) -> Any:
        raise raised

    monkeypatch.setattr(UserHandlers, "find_user", broken)
    with caplog.at_level(logging.INFO, logger="shop"):
        r = await client.get("/admin/users/123456789", headers=ADMIN_AUTH)
    assert r.status_code == status, r.text
    assert r.json() == {"success": False, "code": code, "message": message, "data": None}
    assert len(_tracebacks(caplog)) == (1 if status == 500 else 0)


@pytest.mark.parametrize(("raised", "status", "code"), [
    (ZeroDivisionError(), 500, "SHOP_FAIL"),
    (ConnectionResetError(), 503, "SHOP_SERVICE_UNAVAILABLE"),
], ids=["bug", "reset"])
async def test_behind_no_service_call(shop, client, monkeypatch, caplog, raised, status, code):
    """A route that calls no service (the operator reads the broker itself): the front door is the
    boundary, and answers in the envelope rather than Starlette's plain text."""
    async def broken(self: Any) -> Any:
        raise raised

    monkeypatch.setattr(Operator, "dead", broken)
    with caplog.at_level(logging.INFO, logger="shop"):
        r = await client.get("/admin/messages?state=dead", headers=ADMIN_AUTH)
    assert r.status_code == status, r.text
    assert r.json()["code"] == code and r.json()["success"] is False
    assert len(_tracebacks(caplog)) == (1 if status == 500 else 0)


async def _drop_connections(shop: Any, backend: str) -> None:
    """The database server ends every connection of the shop's user database (a restart, a failover)."""
    url = shop.settings.user_db_url
    name = url.rsplit("/", 1)[1]
    if backend == "postgresql":
        conn = await asyncpg.connect(url.replace("postgresql://", "postgresql://", 1).rsplit("/", 1)[0] + "/postgres")
        try:
            await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE datname = $1 AND pid <> pg_backend_pid()", name)
        finally:
            await conn.close()
    else:
        import asyncmy
        from sqlalchemy.engine import make_url

        u = make_url(MYSQL_URL)
        conn = await asyncmy.connect(host=u.host, port=u.port or 3306, user=u.username, password=u.password or "")
        try:
            async with conn.cursor() as cur:
                await cur.execute("SELECT id FROM information_schema.processlist WHERE db = %s AND id <> "
                                  "CONNECTION_ID()", (name,))
                for (pid,) in await cur.fetchall():
                    await cur.execute(f"KILL {int(pid)}")
        finally:
            conn.close()


@pytest.mark.all_backends
async def test_a_database_that_drops_the_connections_is_never_a_500(shop, client, backend):
    r = await client.post("/admin/users", headers=ADMIN_AUTH,
                          json={"userName": "dropped", "userPassword": "secret", "userMoney": "1.00"})
    user_id = r.json()["data"]["userId"]
    if backend != "sqlite":
        await _drop_connections(shop, backend)
    statuses = []
    for _ in range(3):
        r = await client.get(f"/admin/users/{user_id}", headers=ADMIN_AUTH)
        statuses.append(r.status_code)
        assert r.status_code in (200, 503), r.text  # the pool may reconnect at once, or say it is unavailable
    assert statuses[-1] == 200, statuses  # and the shop serves again once it has


async def _asgi(front: FrontDoor, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> tuple[int, bytes]:
    """One request straight through FrontDoor: the status and body it answers."""
    sent: list[dict[str, Any]] = []
    chunks = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/echo", "headers": headers, "query_string": b""}
    await front(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


@pytest.mark.parametrize(("length", "status"), [
    (b"abc", 400), (b"-1", 400), (b"1e3", 400), (b"\xef\xbc\x91", 400),  # not a length
    (b"9" * 5000, 413), (b"65537", 413),  # too large, refused before anything is read
])
async def test_a_content_length_is_read_before_the_body(length, status):
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the app must not be called")

    assert (await _asgi(FrontDoor(app, routes=[]), [(b"content-length", length)]))[0] == status


async def test_a_body_without_a_length_is_counted():
    async def echo(scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": message["body"]})

    front = FrontDoor(echo, routes=[], max_body=10)
    assert await _asgi(front, [], b"x" * 10) == (200, b"x" * 10)
    status, body = await _asgi(front, [], b"x" * 11)
    assert status == 413 and b"SHOP_REQUEST_TOO_LARGE" in body
