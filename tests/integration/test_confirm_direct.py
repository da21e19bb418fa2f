"""POST /order/confirm placed by the front door itself (ConfirmDirect, infra/web.py Direct) answers
exactly as the FastAPI route does: the same requests, sent to an app with the direct path and to one
without it on the same shop, get the same status, code, message and data (but for what differs
between two orders: ids and times), and the direct path does answer the ones it should."""
from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from shop.app import create_app
from shop.common.errors import ShopError
from tests.support import cart_json, order_json, world

KEY = ("POST", "/order/confirm")
VARYING = {"orderId", "addTime", "confirmTime", "payTime"}


def _same(r: httpx.Response) -> tuple[Any, ...]:
    body = r.json()
    data = body["data"]
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k not in VARYING}
    return r.status_code, body["success"], body["code"], body["message"], data, r.headers.get("retry-after")


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
    route_app.state.direct.clear()
    async with (httpx.AsyncClient(transport=httpx.ASGITransport(app=direct_app), base_url="http://shop") as d,
                httpx.AsyncClient(transport=httpx.ASGITransport(app=route_app), base_url="http://shop") as r):
        yield d, r, counted


async def test_the_direct_path_answers_as_the_route(shop, two) -> None:
    direct, route, counted = two
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
