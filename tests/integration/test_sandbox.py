"""The payment platform stand-in: signed notifications, the retry schedule, restarts, its REST face."""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import httpx
import orjson
import pytest
from fastapi import FastAPI

from shop.common.codes import ShopCode
from shop.common.errors import ShopError
from shop.common.ids import IdWorker
from shop.infra.db import SqliteDatabase
from shop.infra.signing import Verifier, load_or_create_key_pair
from shop.infra.web import install_error_handlers
from shop.sandbox.api import router
from shop.sandbox.notify import http_sender
from shop.sandbox.platform import Sandbox

D = Decimal
URL = "http://shop.test/pay/callbackPayment"
MERCHANT = "merchant-key-of-the-test-shop"
SCHEDULE = [0.05, 0.1, 0.1]


@dataclass
class Call:
    at: float
    url: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict:
        return orjson.loads(self.body)


@dataclass
class FakeShop:
    """The `send` a test hands the sandbox: records every notification and answers from a script
    (True, False, or an exception to raise); past the script it answers success."""

    script: list[object] = field(default_factory=list)
    delay_s: dict[str, float] = field(default_factory=dict)  # payId -> how long to take answering
    calls: list[Call] = field(default_factory=list)

    async def __call__(self, url: str, headers: dict[str, str], body: bytes) -> bool:
        call = Call(time.monotonic(), url, dict(headers), body)
        self.calls.append(call)
        delay = self.delay_s.get(call.json["payId"])
        if delay:
            await asyncio.sleep(delay)
        outcome = self.script.pop(0) if self.script else True
        if isinstance(outcome, BaseException):
            raise outcome
        return bool(outcome)

    def for_pay(self, pay_id: int) -> list[Call]:
        return [c for c in self.calls if c.json["payId"] == str(pay_id)]

    async def wait(self, n: int, pay_id: int | None = None, timeout_s: float = 2.0) -> list[Call]:
        async with asyncio.timeout(timeout_s):
            while True:
                calls = self.calls if pay_id is None else self.for_pay(pay_id)
                if len(calls) >= n:
                    return calls
                await asyncio.sleep(0.005)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    return load_or_create_key_pair(tmp_path_factory.mktemp("keys"))


@contextlib.asynccontextmanager
async def running(path: Path, keys: tuple[bytes, bytes], send: FakeShop, schedule=SCHEDULE,
                  start: bool = True) -> AsyncIterator[Sandbox]:
    db = SqliteDatabase(str(path))
    sandbox = Sandbox(db, keys[0], keys[1], send, schedule, IdWorker(1, 1), notify_url=URL, merchant_key=MERCHANT)
    task = asyncio.create_task(sandbox.run()) if start else None
    try:
        yield sandbox
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await db.close()


@pytest.fixture
def shop() -> FakeShop:
    return FakeShop()


@pytest.fixture
async def sandbox(tmp_path: Path, keys, shop: FakeShop) -> AsyncIterator[Sandbox]:
    async with running(tmp_path / "sandbox.db", keys, shop) as s:
        yield s


async def paid(sandbox: Sandbox, pay_id: int, amount: str = "4800.00") -> str:
    await sandbox.precreate(pay_id, D(amount), URL)
    return await sandbox.pay(pay_id)


async def test_the_notification_is_signed_over_the_exact_body(sandbox, shop, keys):
    trade_no = await paid(sandbox, 101)
    [call] = await shop.wait(1)
    h = call.headers
    assert call.url == URL and h["Content-Type"] == "application/json"
    assert Verifier(keys[1]).verify(h["X-Pay-Timestamp"], h["X-Pay-Nonce"], call.body, h["X-Pay-Signature"])
    assert abs(int(h["X-Pay-Timestamp"]) - time.time()) < 5
    body = call.json
    assert body == {"payId": "101", "isPaid": 2, "payAmount": "4800.00", "tradeNo": trade_no,
                    "notifyId": body["notifyId"]}
    # Any change to the bytes breaks it: the shop must verify the raw body, not a re-encoding.
    reencoded = orjson.dumps(body, option=orjson.OPT_INDENT_2)
    assert not Verifier(keys[1]).verify(h["X-Pay-Timestamp"], h["X-Pay-Nonce"], reencoded, h["X-Pay-Signature"])
    await sandbox.drain()
    row = await sandbox.row(101)
    assert (row["notified"], row["next_notify_at"], row["last_notify_id"]) == (1, None, body["notifyId"])
    assert sandbox.public_key_pem == keys[1]


async def test_retries_follow_the_schedule_and_stop_at_success(sandbox, shop):
    shop.script = [False, RuntimeError("connection refused")]
    await paid(sandbox, 102)
    calls = await shop.wait(3)
    gaps = [b.at - a.at for a, b in zip(calls, calls[1:], strict=False)]
    assert SCHEDULE[0] <= gaps[0] + 0.005 < SCHEDULE[0] + 0.1, gaps
    assert SCHEDULE[1] <= gaps[1] + 0.005 < SCHEDULE[1] + 0.1, gaps
    # Quiet: no send in flight and none due (next_notify_at NULL); then nothing else was sent.
    await sandbox.drain()
    row = await sandbox.row(102)
    assert (row["notified"], row["notify_attempts"], row["next_notify_at"]) == (1, 2, None)
    assert len(shop.calls) == 3
    # Each retry is its own notification, signed afresh.
    assert len({c.json["notifyId"] for c in calls}) == 3
    assert len({c.headers["X-Pay-Nonce"] for c in calls}) == 3


async def test_retries_stop_when_the_schedule_is_used_up(sandbox, shop):
    shop.script = [False] * 10
    await paid(sandbox, 103)
    await shop.wait(1 + len(SCHEDULE))
    await sandbox.drain()
    row = await sandbox.row(103)
    assert (row["notified"], row["notify_attempts"], row["next_notify_at"]) == (0, 1 + len(SCHEDULE), None)
    assert len(shop.calls) == 1 + len(SCHEDULE)


async def test_resend_sends_the_notification_again_signed_afresh(sandbox, shop, keys):
    trade_no = await paid(sandbox, 104)
    [first] = await shop.wait(1)
    await sandbox.drain()
    await sandbox.resend(104)
    first, again = await shop.wait(2)
    assert again.json["tradeNo"] == trade_no and again.json["payId"] == "104"
    assert again.json["notifyId"] != first.json["notifyId"]
    assert again.headers["X-Pay-Nonce"] != first.headers["X-Pay-Nonce"]
    h = again.headers
    assert Verifier(keys[1]).verify(h["X-Pay-Timestamp"], h["X-Pay-Nonce"], again.body, h["X-Pay-Signature"])
    await sandbox.drain()
    assert (await sandbox.row(104))["notified"] == 1


async def test_a_resend_while_a_send_is_in_flight_is_not_lost(sandbox, shop):
    shop.delay_s["105"] = 0.2
    await paid(sandbox, 105)
    await shop.wait(1)
    await sandbox.resend(105)  # the first send has not answered yet
    await shop.wait(2, timeout_s=3)
    await sandbox.drain()
    assert (await sandbox.row(105))["notified"] == 1


async def test_resend_after_the_schedule_was_used_up(sandbox, shop):
    shop.script = [False] * (1 + len(SCHEDULE))
    await paid(sandbox, 106)
    await shop.wait(1 + len(SCHEDULE))
    await sandbox.drain()
    assert (await sandbox.row(106))["next_notify_at"] is None
    await sandbox.resend(106)
    await shop.wait(2 + len(SCHEDULE))
    await sandbox.drain()
    row = await sandbox.row(106)
    assert (row["notified"], row["next_notify_at"]) == (1, None)


async def test_pay_is_idempotent(sandbox, shop):
    await sandbox.precreate(107, D("10.50"), URL)
    await sandbox.precreate(107, D("10.5"), URL)  # the same amount: nothing changes
    with pytest.raises(ValueError) as e:
        await sandbox.precreate(107, D("10.51"), URL)
    assert e.value.code == ShopCode.SHOP_PAYMENT_AMOUNT_INVALID  # also a ShopError: crosses RPC as its code
    with pytest.raises(ValueError):
        await sandbox.precreate(1107, D("10.001"), URL)
    trade_no = await sandbox.pay(107)
    await shop.wait(1)
    await sandbox.drain()
    assert await sandbox.pay(107) == trade_no
    await sandbox.drain()
    assert (await sandbox.row(107))["next_notify_at"] is None  # nothing due
    assert len(shop.calls) == 1  # paying again sends nothing new
    assert await sandbox.trade(trade_no) == {"tradeNo": trade_no, "payId": "107", "amount": "10.50", "state": "PAID"}
    assert await sandbox.trade_by_pay_id(107) == await sandbox.trade(trade_no)
    with pytest.raises(KeyError) as e:
        await sandbox.pay(999)
    assert e.value.code == ShopCode.SHOP_PAYMENT_NOT_FOUND
    with pytest.raises(KeyError):
        await sandbox.trade("no-such-trade")


async def test_refund_is_idempotent(sandbox, shop):
    await sandbox.precreate(108, D("20.00"), URL)
    with pytest.raises(ValueError) as e:
        await sandbox.refund(108)  # not paid yet
    assert (e.value.code, e.value.http_status) == (ShopCode.SHOP_FAIL, 409)
    with pytest.raises(ValueError):
        await sandbox.resend(108)
    trade_no = await sandbox.pay(108)
    first = await sandbox.refund(108)
    assert first == {"tradeNo": trade_no, "payId": "108", "amount": "20.00", "state": "REFUNDED"}
    assert await sandbox.refund(108) == first
    assert (await sandbox.row(108))["refund_time"] is not None
    with pytest.raises(ValueError):
        await sandbox.pay(108)
    with pytest.raises(ValueError):
        await sandbox.resend(108)
    with pytest.raises(KeyError):
        await sandbox.refund(999)
    with pytest.raises(KeyError):
        await sandbox.resend(999)


async def test_a_due_notification_is_sent_after_a_restart(tmp_path, keys):
    path = tmp_path / "sandbox.db"
    before = FakeShop()
    async with running(path, keys, before, start=False) as s:  # "crashes" before its loop sends
        trade_no = await paid(s, 109)
    after = FakeShop()
    async with running(path, keys, after) as s:
        [call] = await after.wait(1)
        assert call.json["tradeNo"] == trade_no
        await s.drain()
        assert (await s.row(109))["notified"] == 1
    assert before.calls == []


async def test_a_pending_retry_survives_a_restart(tmp_path, keys):
    path = tmp_path / "sandbox.db"
    before = FakeShop(script=[False])
    async with running(path, keys, before) as s:
        await paid(s, 110)
        await before.wait(1)
        await s.drain()
    after = FakeShop()
    async with running(path, keys, after) as s:
        await after.wait(1)
        await s.drain()
        row = await s.row(110)
        assert (row["notified"], row["notify_attempts"]) == (1, 1)


async def test_a_slow_shop_answer_does_not_hold_up_other_notifications(sandbox, shop):
    shop.delay_s["111"] = 1.0
    await paid(sandbox, 111)
    await shop.wait(1, pay_id=111)
    started = time.monotonic()
    await paid(sandbox, 112)
    await shop.wait(1, pay_id=112, timeout_s=0.5)
    assert time.monotonic() - started < 0.5


async def test_a_sender_that_hangs_is_cut_off_and_retried(tmp_path, keys):
    shop = FakeShop(delay_s={"113": 10.0})
    db = SqliteDatabase(str(tmp_path / "sandbox.db"))
    sandbox = Sandbox(db, keys[0], keys[1], shop, SCHEDULE, IdWorker(1, 1), notify_url=URL, merchant_key=MERCHANT,
                      send_timeout_s=0.1)
    task = asyncio.create_task(sandbox.run())
    try:
        await paid(sandbox, 113)
        await shop.wait(2)
        assert (await sandbox.row(113))["notify_attempts"] >= 1
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await db.close()


async def test_http_sender_counts_only_200_with_success_true():
    answers = iter([
        httpx.Response(200, json={"success": True}),
        httpx.Response(200, json={"success": False}),
        httpx.Response(500, json={"success": True}),
        httpx.Response(200, content=b"OK"),
    ])
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return next(answers)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        send = http_sender(client)
        outcomes = [await send(URL, {"X-Pay-Nonce": "n"}, b'{"payId":"1"}') for _ in range(4)]
    assert outcomes == [True, False, False, False]
    assert seen[0].content == b'{"payId":"1"}' and seen[0].headers["X-Pay-Nonce"] == "n"


AS_MERCHANT = {"Authorization": f"Bearer {MERCHANT}"}


async def test_a_notify_url_off_the_shops_host_is_refused(sandbox, shop):
    """No SSRF: the sandbox POSTs signed notifications only to the configured notify host."""
    for url in ("http://169.254.169.254/latest/meta-data", "http://shop.test:8080/pay/callbackPayment",
                "https://shop.test/pay/callbackPayment", "http://evil.test/pay/callbackPayment",
                "http://shop.test@evil.test/pay/callbackPayment", "not a url", "http://[::1"):
        with pytest.raises(ShopError) as e:
            await sandbox.precreate(120, D("1.00"), url)
        assert e.value.code is ShopCode.SHOP_REQUEST_PARAMETER_VALID and e.value.http_status == 422, url
    assert await sandbox.row(120) is None  # nothing recorded
    await sandbox.precreate(120, D("1.00"), "http://SHOP.test:80/pay/callbackPayment")  # the same host
    await sandbox.pay(120)
    [call] = await shop.wait(1)
    assert call.url == "http://SHOP.test:80/pay/callbackPayment"
    await sandbox.drain()


async def test_registering_a_payment_takes_the_merchant_key(sandbox, shop):
    app = FastAPI()
    app.state.sandbox = sandbox
    install_error_handlers(app)
    app.include_router(router)
    body = {"payId": "121", "amount": "5.00", "notifyUrl": URL}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://platform") as c:
        for headers in ({}, {"Authorization": "Bearer nope"}):
            r = await c.post("/sandbox/trades", json=body, headers=headers)
            assert r.status_code == 401 and r.json()["code"] == "SHOP_USER_NOT_AUTHORIZED"
        r = await c.post("/sandbox/trades", json={**body, "notifyUrl": "http://127.0.0.1:6379/"}, headers=AS_MERCHANT)
        assert r.status_code == 422 and r.json()["code"] == "SHOP_REQUEST_PARAMETER_VALID"
        assert await sandbox.row(121) is None
        r = await c.post("/sandbox/trades", json=body, headers=AS_MERCHANT)
        assert r.status_code == 200 and r.json()["data"]["state"] == "CREATED"


async def test_the_router(sandbox, shop):
    app = FastAPI()
    app.state.sandbox = sandbox
    install_error_handlers(app)
    app.include_router(router)
    await sandbox.precreate(114, D("4800.00"), URL)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://platform") as c:
        r = await c.post("/sandbox/pay/999")
        assert r.status_code == 404 and r.json()["code"] == "SHOP_PAYMENT_NOT_FOUND"
        r = await c.post("/sandbox/notify/114/resend")
        assert r.status_code == 409 and r.json()["code"] == "SHOP_FAIL"
        r = await c.post("/sandbox/pay/114")
        assert r.status_code == 200 and r.json()["success"]
        trade_no = r.json()["data"]["tradeNo"]
        assert (await c.post("/sandbox/pay/114")).json()["data"] == {"tradeNo": trade_no}
        await shop.wait(1)
        r = await c.post("/sandbox/notify/114/resend")
        assert r.status_code == 200
        await shop.wait(2)
        r = await c.get(f"/sandbox/trades/{trade_no}")
        assert r.json()["data"] == {"tradeNo": trade_no, "payId": "114", "amount": "4800.00", "state": "PAID"}
        # Only the shop refunds: without its merchant key, or with another, nothing changes.
        for headers in ({}, {"Authorization": "Bearer not-the-merchant-key"}):
            r = await c.post("/sandbox/refund/114", headers=headers)
            assert r.status_code == 401 and r.json()["code"] == "SHOP_USER_NOT_AUTHORIZED"
            assert r.headers["www-authenticate"].startswith("Bearer")
        assert (await c.get(f"/sandbox/trades/{trade_no}")).json()["data"]["state"] == "PAID"
        r = await c.post("/sandbox/refund/114", headers=AS_MERCHANT)
        assert r.status_code == 200 and r.json()["data"]["state"] == "REFUNDED"
        assert (await c.get(f"/sandbox/trades/{trade_no}")).json()["data"]["state"] == "REFUNDED"
        assert (await c.get("/sandbox/trades/nope")).status_code == 404
        assert (await c.post("/sandbox/pay/abc")).status_code == 422
    await sandbox.drain()
