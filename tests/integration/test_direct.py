"""The routes the front door answers itself (infra/web.py Direct: POST /order/confirm's ConfirmDirect,
POST /pay/callbackPayment's NotifyDirect) answer exactly as their FastAPI routes do: the same
requests, sent to an app with the direct paths and to one without them on the same shop, get the
same status, code, message, data (but for what differs between two orders: ids and times) and
headers that matter, and the direct path does answer the ones it should."""
from __future__ import annotations

import os
import time
from typing import Any

import httpx
import orjson
import pytest

from shop.app import create_app
from shop.common.errors import ShopError
from shop.infra.signing import Signer
from tests.support import cart_json, order_json, place, world

KEY = ("POST", "/order/confirm")
NOTIFY = ("POST", "/pay/callbackPayment")
VARYING = {"orderId", "addTime", "confirmTime", "payTime"}


def _same(r: httpx.Response) -> tuple[Any, ...]:
    body = r.json()
    data = body["data"]
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k not in VARYING}
    return (r.status_code, body["success"], body["code"], body["message"], data, r.headers.get("retry-after"),
            r.headers.get("www-authenticate"))


class Counted:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.answered = 0

    async def answer(self, scope: Any, body: bytes) -> Any:
        try:
            response = await self.inner.answer(scope, body)
        except ShopError:  # a refusal, answered by the front door as the app's handler would
            self.answered += 1
            raise
        self.answered += response is not None
        return response


@pytest.fixture
async def two(shop):
    direct_app, route_app = create_app(shop), create_app(shop)
    counted = direct_app.state.direct[KEY] = Counted(direct_app.state.direct[KEY])
    notified = direct_app.state.direct[NOTIFY] = Counted(direct_app.state.direct[NOTIFY])
    route_app.state.direct.clear()
    async with (httpx.AsyncClient(transport=httpx.ASGITransport(app=direct_app), base_url="http://shop") as d,
                httpx.AsyncClient(transport=httpx.ASGITransport(app=route_app), base_url="http://shop") as r):
        yield d, r, counted, notified


async def test_the_direct_path_answers_as_the_route(shop, two) -> None:
    direct, route, counted, _ = two
    w = await world(shop, money="100000.00", stock=1000, price="10.00", coupon="5.00")
    other = await world(shop, money="10.00", price="10.00", coupon=None)
    auth = {"Authorization": f"Bearer {shop.tokens.issue(w.user_id)}"}
    good = order_json(w.user_id, w.goods_id, "10.00")
    cases: list[tuple[str, dict[str, str], Any, bool]] = [  # what, headers, body (dict: JSON), answered directly
        ("an order", auth, good, True),
        ("a cart of two lines", auth, cart_json(w.user_id, [(w.goods_id, "10.00", 2), (other.goods_id, "10.00", 1)]),
         True),
        ("a wrong price", auth, order_json(w.user_id, w.goods_id, "9.00"), True),
        ("too many units", auth, order_json(w.user_id, w.goods_id, "10.00", 5000), True),
        ("no such goods", auth, order_json(w.user_id, 1, "10.00"), True),
        ("a wrong shipping fee", auth, {**good, "shippingFee": "0.00", "orderAmount": "10.00"}, True),
        ("a coupon not the caller's", auth, order_json(w.user_id, w.goods_id, "10.00", coupon_id=other.user_id),
         True),
        ("more money than the balance", {"Authorization": f"Bearer {shop.tokens.issue(other.user_id)}"},
         order_json(other.user_id, other.goods_id, "10.00", money_paid="15.00"), True),
        ("another user's order", auth, order_json(other.user_id, other.goods_id, "10.00"), False),
        ("no token", {}, good, False),
        ("a bad token", {"Authorization": "Bearer nonsense"}, good, False),
        ("a negative amount", auth, {**good, "moneyPaid": "-1.00"}, True),  # the domain refuses it (its code)
        ("no address", auth, {k: v for k, v in good.items() if k != "address"}, False),
        ("three decimal places", auth, {**good, "moneyPaid": "1.001"}, False),
        ("NaN, which Python's json reads", {**auth, "Content-Type": "application/json"},
         orjson.dumps(good).replace(b'"0.00"', b"NaN"), False),
        ("malformed JSON", {**auth, "Content-Type": "application/json"}, b"{\"userId\": ", False),
        ("not JSON", {**auth, "Content-Type": "text/plain"}, b"hello", False),
    ]
    for what, headers, body, directly in cases:
        before = counted.answered
        kw: dict[str, Any] = {"json": body} if isinstance(body, dict) else {"content": body}
        a = await direct.post("/order/confirm", headers=headers, **kw)
        b = await route.post("/order/confirm", headers=headers, **kw)
        assert _same(a) == _same(b), what
        assert counted.answered - before == directly, what
    assert counted.answered == sum(directly for *_, directly in cases)


def _signed(shop, body: dict[str, Any], *, ts: int | None = None) -> tuple[bytes, dict[str, str]]:
    raw = orjson.dumps(body)
    signer = Signer((shop.settings.data_dir / "sandbox_private.pem").read_bytes())
    timestamp, nonce = str(ts if ts is not None else int(time.time())), os.urandom(8).hex()
    return raw, {"X-Pay-Timestamp": timestamp, "X-Pay-Nonce": nonce,
                 "X-Pay-Signature": signer.sign(timestamp, nonce, raw), "Content-Type": "application/json"}


async def test_the_notification_answers_as_the_route(shop, two) -> None:
    direct, route, _, notified = two
    w = await world(shop, money="0.00", price="10.00", coupon=None)
    payments = []
    for _ in range(2):  # one for each app: the first notification of each marks its payment paid
        order = await shop.orders.confirm_order(place(w.user_id, w.goods_id, w.price))
        payments.append(await shop.pay.create_payment(order.order_id, w.user_id, order.pay_amount))

    def note(p, **over: Any) -> dict[str, Any]:
        return {"payId": str(p.pay_id), "isPaid": 2, "payAmount": str(p.pay_amount), "tradeNo": "T-1",
                "notifyId": "n-1", **over}

    def cases(p) -> list[tuple[str, dict[str, str], bytes]]:
        raw, headers = _signed(shop, note(p))
        stale_raw, stale = _signed(shop, note(p), ts=int(time.time()) - 3600)
        return [
            ("paid", headers, raw),
            ("paid again (the platform's retry)", headers, raw),
            ("unsigned", {"Content-Type": "application/json"}, raw),
            ("a bad signature", {**headers, "X-Pay-Signature": headers["X-Pay-Signature"][:-8] + "AAAAAAA="}, raw),
            ("stale", stale, stale_raw),
            ("credentials beside it", {**headers, "Authorization": "Bearer x", "X-Pay-Nonce": "other"}, raw),
            ("the wrong amount", *reversed(_signed(shop, note(p, payAmount="9.99")))),
            ("no such payment", *reversed(_signed(shop, note(p, payId="123456789")))),
            ("not paid at the platform", *reversed(_signed(shop, note(p, isPaid=1)))),
            ("junk", *reversed(_signed(shop, {"hello": "world"}))),
        ]

    for (what, h1, b1), (_, h2, b2) in zip(cases(payments[0]), cases(payments[1]), strict=True):
        before = notified.answered
        a = await direct.post("/pay/callbackPayment", headers=h1, content=b1)
        b = await route.post("/pay/callbackPayment", headers=h2, content=b2)
        assert _same(a) == _same(b), what
        assert notified.answered - before == 1, what  # every one, refusals too
    for p in payments:
        assert (await shop.pay.find_payment(p.pay_id)).is_paid == 2
