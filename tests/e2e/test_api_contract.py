"""The public HTTP contract (API.md) of what is implemented so far: envelope, users, admin, orders.

Everything goes over HTTP, as a client would use it; the shop is only used to mint a token for a
user id that does not exist (a deleted user), which no HTTP call can produce.
Payments, the sandbox and order cancel/refund are not implemented yet and are not tested here.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ADMIN
from tests.support import Api, order_json, quiet_api

MONEY = re.compile(r"^\d+\.\d{2}$")
ID = re.compile(r"^[1-9]\d*$")
UNKNOWN_ID = "123456789"  # a valid id that no row has

USER_KEYS = {"userId", "userName", "userMobile", "userScore", "userMoney", "userRegTime"}
GOODS_KEYS = {"goodsId", "goodsName", "goodsNumber", "goodsPrice", "goodsDesc", "addTime"}
COUPON_KEYS = {"couponId", "couponPrice", "userId", "orderId", "isUsed", "usedTime"}
ORDER_KEYS = {
    "orderId", "userId", "orderStatus", "payStatus", "shippingStatus", "address", "consignee", "goodsId",
    "goodsNumber", "goodsPrice", "goodsAmount", "shippingFee", "orderAmount", "couponId", "couponPaid",
    "moneyPaid", "payAmount", "addTime", "confirmTime", "payTime", "items",
}


# -- helpers -----------------------------------------------------------------------------------


def envelope(r: httpx.Response) -> dict[str, Any]:
    """Every response body is {success, code, message, data}; success agrees with the status."""
    assert r.status_code != 500, r.text  # 503 (a dependency is unavailable) is in the contract; 500 is not
    assert r.headers["content-type"].startswith("application/json"), r.headers["content-type"]
    body = r.json()
    assert isinstance(body, dict) and set(body) == {"success", "code", "message", "data"}, body
    assert isinstance(body["success"], bool)
    assert isinstance(body["code"], str) and body["code"].startswith("SHOP_"), body
    assert isinstance(body["message"], str) and body["message"], body
    assert body["success"] == (r.status_code == 200), (r.status_code, body)
    assert (body["code"] == "SHOP_SUCCESS") == body["success"], body
    return body


def success(r: httpx.Response) -> Any:
    body = envelope(r)
    assert r.status_code == 200, r.text
    return body["data"]


def failure(r: httpx.Response, status: int | tuple[int, ...], code: str | None = None) -> dict[str, Any]:
    body = envelope(r)
    statuses = status if isinstance(status, tuple) else (status,)
    assert r.status_code in statuses, f"{r.status_code} not in {statuses}: {r.text}"
    assert body["success"] is False
    if code is not None:
        assert body["code"] == code, body
    return body


def utc_time(value: Any) -> datetime:
    """Times are ISO 8601 in UTC."""
    assert isinstance(value, str), value
    t = datetime.fromisoformat(value)
    assert t.utcoffset() == timedelta(0), value
    return t


def raw_json(obj: Any) -> bytes:
    """JSON as a sloppy client writes it: NaN and Infinity allowed (httpx refuses to send them)."""
    return json.dumps(obj, allow_nan=True).encode()


@dataclass
class Scene:
    """The original scenario's data: a user with 100.00, an iphone7 at 5000.00 x 10, a 100.00 coupon."""

    user_id: str
    auth: dict[str, str]
    goods_id: str
    coupon_id: str
    name: str

    def body(self, **overrides: Any) -> dict[str, Any]:
        """The original scenario's order: 1 unit, the coupon, 100.00 from the balance."""
        base = order_json(self.user_id, self.goods_id, "5000.00", coupon_id=self.coupon_id, money_paid="100.00")
        base.update(overrides)
        return base


_n = iter(range(10**9))


def fresh(prefix: str = "u") -> str:
    return f"{prefix}-{next(_n)}-{time.monotonic_ns()}"


async def new_user(api: Api, money: str = "100.00") -> tuple[str, dict[str, str], str]:
    name = fresh()
    user_id = await api.create_user(name, money)
    return user_id, await api.login(name), name


@pytest.fixture
def api(client: httpx.AsyncClient) -> Api:
    return Api(client, ADMIN)


@pytest.fixture
async def scene(api: Api) -> Scene:
    user_id, auth, name = await new_user(api)
    goods_id = await api.create_goods("5000.00", 10)
    coupon_id = await api.create_coupon(user_id, "100.00")
    return Scene(user_id, auth, goods_id, coupon_id, name)


async def snapshot(api: Api, s: Scene) -> tuple[Any, ...]:
    goods = await api.get(f"/admin/goods/{s.goods_id}")
    user = await api.get(f"/admin/users/{s.user_id}")
    coupon = await api.get(f"/admin/coupons/{s.coupon_id}")
    return goods["goodsNumber"], user["userMoney"], user["userScore"], coupon["isUsed"], coupon["orderId"]


# -- health, docs, envelope ----------------------------------------------------------------------


async def test_healthz(client):
    r = await client.get("/healthz")
    body = envelope(r)
    assert r.status_code == 200 and body["success"] is True and body["code"] == "SHOP_SUCCESS"


async def test_docs_and_openapi_are_served(client):
    r = await client.get("/docs")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    for p in ("/healthz", "/user/login", "/user/me", "/order/confirm", "/order/{order_id}", "/admin/users",
              "/admin/goods", "/admin/coupons", "/admin/audit"):
        assert p in paths, p


async def test_unknown_path_and_wrong_method_are_enveloped(client):
    failure(await client.get("/no/such/thing"), 404)
    failure(await client.put("/order/confirm", json={}), 405)
    failure(await client.delete("/healthz"), 405)
    # A literal path with the wrong method, though a templated route (GET /order/{orderId}) matches it.
    r = await client.get("/order/confirm")
    failure(r, 405)
    assert r.headers["allow"] == "POST"


# -- users -----------------------------------------------------------------------------------


async def test_login_and_me(api, client):
    name = fresh()
    user_id = await api.create_user(name, "12.50")
    data = success(await client.post("/user/login", json={"userName": name, "userPassword": "secret"}))
    assert set(data) >= {"userId", "token"} and data["userId"] == user_id and ID.match(user_id)
    assert isinstance(data["token"], str) and data["token"]

    me = success(await client.get("/user/me", headers={"Authorization": f"Bearer {data['token']}"}))
    assert set(me) == USER_KEYS  # no password, hashed or not
    assert me["userId"] == user_id and me["userName"] == name
    assert me["userMoney"] == "12.50" and me["userScore"] == 0 and me["userMobile"] is None
    utc_time(me["userRegTime"])


async def test_login_refusals(api, client):
    name = fresh()
    await api.create_user(name)
    for body in ({"userName": name, "userPassword": "wrong"}, {"userName": fresh("nobody"), "userPassword": "secret"}):
        b = failure(await client.post("/user/login", json=body), 401, "SHOP_USER_NOT_AUTHORIZED")
        assert b["data"] is None
    failure(await client.post("/user/login", json={"userName": name}), 422, "SHOP_REQUEST_PARAMETER_VALID")


async def test_me_needs_a_valid_token(api, client, shop):
    user_id, auth, _ = await new_user(api)
    assert success(await client.get("/user/me", headers=auth))["userId"] == user_id
    expired = jwt.encode({"sub": user_id, "iat": 1, "exp": 2}, shop.settings.token_secret, algorithm="HS256")
    forged = jwt.encode(
        {"sub": user_id, "exp": int(time.time()) + 600}, "not-the-secret-but-long-enough-for-hs256", algorithm="HS256"
    )
    for headers in (
        {}, {"Authorization": "Bearer"}, {"Authorization": "Bearer garbage.token.here"},
        {"Authorization": auth["Authorization"].replace("Bearer", "Basic")},
        {"Authorization": f"Bearer {expired}"}, {"Authorization": f"Bearer {forged}"},
        {"Authorization": f"Bearer {ADMIN}"},  # the admin token is not a user token
    ):
        failure(await client.get("/user/me", headers=headers), 401, "SHOP_USER_NOT_AUTHORIZED")


# -- administration ----------------------------------------------------------------------------


async def test_admin_endpoints_need_the_admin_token(api, client, scene):
    calls = [
        ("POST", "/admin/users", {"userName": fresh(), "userPassword": "secret", "userMoney": "1.00"}),
        ("POST", "/admin/goods", {"goodsName": "g", "goodsNumber": 1, "goodsPrice": "1.00"}),
        ("POST", "/admin/coupons", {"userId": scene.user_id, "couponPrice": "1.00"}),
        ("GET", f"/admin/users/{scene.user_id}", None),
        ("GET", f"/admin/goods/{scene.goods_id}", None),
        ("GET", f"/admin/coupons/{scene.coupon_id}", None),
        ("GET", "/admin/audit", None),
        ("GET", "/admin/messages?state=dead", None),
    ]
    for method, path, body in calls:
        for headers in ({}, {"Authorization": f"Bearer {ADMIN}x"}, {"Authorization": "Bearer"}, scene.auth,
                        {"Authorization": ADMIN}):
            r = await client.request(method, path, json=body, headers=headers)
            failure(r, 401, "SHOP_USER_NOT_AUTHORIZED")
        success(await client.request(method, path, json=body, headers=api.admin))
    failure(await client.post("/admin/faults", json={"point": "x", "action": "delay"}), 401)


async def test_admin_create_and_read_shapes(api, client):
    name = fresh()
    r = await client.post("/admin/users", headers=api.admin,
                          json={"userName": name, "userPassword": "pw", "userMobile": "13800000000", "userMoney": 250})
    user_id = success(r)["userId"]
    assert isinstance(user_id, str) and ID.match(user_id)
    user = await api.get(f"/admin/users/{user_id}")
    assert set(user) == USER_KEYS
    assert user == {**user, "userId": user_id, "userName": name, "userMobile": "13800000000", "userMoney": "250.00",
                    "userScore": 0}
    utc_time(user["userRegTime"])

    r = await client.post("/admin/goods", headers=api.admin,
                          json={"goodsName": "iphone7", "goodsNumber": 3, "goodsPrice": 4800.5, "goodsDesc": "phone"})
    goods_id = success(r)["goodsId"]
    assert isinstance(goods_id, str) and ID.match(goods_id)
    goods = await api.get(f"/admin/goods/{goods_id}")
    assert set(goods) == GOODS_KEYS
    assert goods == {**goods, "goodsId": goods_id, "goodsName": "iphone7", "goodsNumber": 3, "goodsPrice": "4800.50",
                     "goodsDesc": "phone"}
    utc_time(goods["addTime"])

    # ids in requests: a string or an integer
    for uid in (user_id, int(user_id)):
        coupon_id = success(await client.post("/admin/coupons", headers=api.admin,
                                              json={"userId": uid, "couponPrice": "100"}))["couponId"]
        assert isinstance(coupon_id, str) and ID.match(coupon_id)
        coupon = await api.get(f"/admin/coupons/{coupon_id}")
        assert coupon == {"couponId": coupon_id, "couponPrice": "100.00", "userId": user_id, "orderId": None,
                          "isUsed": 0, "usedTime": None}


async def test_admin_duplicate_user_name_is_a_conflict(api, client):
    name = fresh()
    user_id = await api.create_user(name, "5.00", password="first")
    r = await client.post("/admin/users", headers=api.admin,
                          json={"userName": name, "userPassword": "second", "userMoney": "9.00"})
    failure(r, 409)
    # The first user is untouched and still logs in with the first password.
    assert (await api.get(f"/admin/users/{user_id}"))["userMoney"] == "5.00"
    await api.login(name, "first")
    failure(await client.post("/user/login", json={"userName": name, "userPassword": "second"}), 401)


async def test_admin_coupon_for_unknown_user(api, client):
    r = await client.post("/admin/coupons", headers=api.admin, json={"userId": UNKNOWN_ID, "couponPrice": "1.00"})
    failure(r, 404, "SHOP_USER_NO_EXIST")


async def test_admin_unknown_ids(api, client):
    for path, code in (("users", "SHOP_USER_NO_EXIST"), ("goods", "SHOP_GOODS_NO_EXIST"),
                       ("coupons", "SHOP_COUPON_NO_EXIST"), ("orders", "SHOP_ORDER_NO_EXIST")):
        body = failure(await client.get(f"/admin/{path}/{UNKNOWN_ID}", headers=api.admin), 404, code)
        # A goods refusal names the goods (a cart's failing line); the others say nothing more.
        assert body["data"] == ({"goodsId": UNKNOWN_ID} if path == "goods" else None), body
        for bad in ("abc", "-1", "0", "1.5", str(1 << 64)):
            failure(await client.get(f"/admin/{path}/{bad}", headers=api.admin), 422, "SHOP_REQUEST_PARAMETER_VALID")


@pytest.mark.parametrize("body", [
    {"goodsName": "g", "goodsNumber": -1, "goodsPrice": "1.00"},
    {"goodsName": "g", "goodsNumber": 1.5, "goodsPrice": "1.00"},
    {"goodsName": "g", "goodsNumber": 1, "goodsPrice": "1.001"},
    {"goodsName": "g", "goodsNumber": 1, "goodsPrice": "-1.00"},
    {"goodsName": "g", "goodsNumber": 1, "goodsPrice": "NaN"},
    {"goodsName": "g", "goodsNumber": 1, "goodsPrice": "1e30"},
    {"goodsName": "", "goodsNumber": 1, "goodsPrice": "1.00"},
    {"goodsNumber": 1, "goodsPrice": "1.00"},
])
async def test_admin_goods_invalid(api, client, body):
    failure(await client.post("/admin/goods", headers=api.admin, json=body), 422, "SHOP_REQUEST_PARAMETER_VALID")


@pytest.mark.parametrize("money", ["-0.01", "0.001", "Infinity", "abc", None, True, "1e30"])
async def test_admin_user_invalid_money(api, client, money):
    r = await client.post("/admin/users", headers=api.admin,
                          json={"userName": fresh(), "userPassword": "pw", "userMoney": money})
    failure(r, 422, "SHOP_REQUEST_PARAMETER_VALID")


# -- placing an order ------------------------------------------------------------------------------


async def test_the_original_scenario(api, client, scene):
    r = await api.confirm(scene.auth, scene.body())
    order = success(r)
    assert set(order) == ORDER_KEYS
    assert isinstance(order["orderId"], str) and ID.match(order["orderId"])
    assert order == {
        **order, "userId": scene.user_id, "goodsId": scene.goods_id, "couponId": scene.coupon_id,
        "orderStatus": 1, "payStatus": 0, "shippingStatus": 0, "goodsNumber": 1, "goodsPrice": "5000.00",
        "goodsAmount": "5000.00", "shippingFee": "0.00", "orderAmount": "5000.00", "couponPaid": "100.00",
        "moneyPaid": "100.00", "payAmount": "4800.00", "address": "北京", "consignee": None, "payTime": None,
    }
    added, confirmed = utc_time(order["addTime"]), utc_time(order["confirmTime"])
    assert added <= confirmed

    # The effects are visible through the admin reads, and agree with the audit.
    coupon = await api.get(f"/admin/coupons/{scene.coupon_id}")
    assert coupon["isUsed"] == 1 and coupon["orderId"] == order["orderId"]
    utc_time(coupon["usedTime"])
    assert await snapshot(api, scene) == (9, "0.00", 0, 1, order["orderId"])
    assert await quiet_api(api) == {"consistent": True, "violations": [], "pending": 0}

    # The owner reads it; the admin reads the same row; anyone else is refused.
    mine = success(await client.get(f"/order/{order['orderId']}", headers=scene.auth))
    assert mine == order
    assert await api.get(f"/admin/orders/{order['orderId']}") == order
    _, other, _ = await new_user(api)
    failure(await client.get(f"/order/{order['orderId']}", headers=other), 403, "SHOP_USER_NOT_AUTHORIZED")
    failure(await client.get(f"/order/{order['orderId']}"), 401, "SHOP_USER_NOT_AUTHORIZED")
    failure(await client.get(f"/order/{UNKNOWN_ID}", headers=scene.auth), 404, "SHOP_ORDER_NO_EXIST")
    failure(await client.get("/order/abc", headers=scene.auth), 422, "SHOP_REQUEST_PARAMETER_VALID")


async def test_ids_as_integers_and_money_as_numbers(api, scene):
    body = scene.body(userId=int(scene.user_id), goodsId=int(scene.goods_id), couponId=int(scene.coupon_id),
                      goodsPrice=5000, shippingFee=0, orderAmount=5000.0, moneyPaid=99.5, consignee="张三")
    order = success(await api.confirm(scene.auth, body))
    assert (order["userId"], order["goodsId"], order["couponId"]) == (scene.user_id, scene.goods_id, scene.coupon_id)
    assert order["moneyPaid"] == "99.50" and order["payAmount"] == "4800.50" and order["consignee"] == "张三"
    for field in ("goodsPrice", "goodsAmount", "shippingFee", "orderAmount", "couponPaid", "moneyPaid", "payAmount"):
        assert MONEY.match(order[field]), (field, order[field])
    assert await snapshot(api, scene) == (9, "0.50", 0, 1, order["orderId"])


async def test_negative_zero_is_zero(api, client, scene):
    # -0 is not negative, so it passes; it must answer as the zero it is, not "-0.00". As a JSON
    # number (a string has one spelling, digits: "-0" is a 422), and as moneyPaid, whose sign is the
    # order rules' to judge.
    failure(await client.post("/admin/goods", headers=api.admin,
                              json={"goodsName": "g", "goodsNumber": 5, "goodsPrice": "-0"}), 422)
    goods_id = success(await client.post("/admin/goods", headers=api.admin,
                                         json={"goodsName": "g", "goodsNumber": 5, "goodsPrice": -0.0}))["goodsId"]
    assert (await api.get(f"/admin/goods/{goods_id}"))["goodsPrice"] == "0.00"
    body = order_json(scene.user_id, goods_id, "0", money_paid="-0.00", goodsPrice=-0.0)
    order = success(await api.confirm(scene.auth, body))
    assert (order["goodsPrice"], order["moneyPaid"], order["payAmount"]) == ("0.00", "0.00", "10.00")
    assert success(await client.get(f"/order/{order['orderId']}", headers=scene.auth)) == order


async def test_small_order_pays_shipping_and_no_coupon_no_balance(api, scene):
    goods_id = await api.create_goods("30.00", 5)
    body = order_json(scene.user_id, goods_id, "30.00", 2)
    del body["moneyPaid"]  # optional: 0
    order = success(await api.confirm(scene.auth, body))
    assert (order["goodsAmount"], order["shippingFee"], order["orderAmount"]) == ("60.00", "10.00", "70.00")
    assert (order["couponId"], order["couponPaid"], order["moneyPaid"], order["payAmount"]) == (None, "0.00", "0.00",
                                                                                               "70.00")
    assert (await api.get(f"/admin/goods/{goods_id}"))["goodsNumber"] == 3
    assert await quiet_api(api) == {"consistent": True, "violations": [], "pending": 0}


async def test_the_last_unit_can_be_taken(api, client, scene):
    goods_id = await api.create_goods("5000.00", 1)
    order = success(await api.confirm(scene.auth, order_json(scene.user_id, goods_id, "5000.00", 1)))
    assert order["orderStatus"] == 1
    assert (await api.get(f"/admin/goods/{goods_id}"))["goodsNumber"] == 0
    r = await api.confirm(scene.auth, order_json(scene.user_id, goods_id, "5000.00", 1))
    failure(r, 409, "SHOP_GOODS_NUM_NOT_ENOUGH")
    assert (await api.get(f"/admin/goods/{goods_id}"))["goodsNumber"] == 0
    assert await quiet_api(api) == {"consistent": True, "violations": [], "pending": 0}


# Each rejection: (id, how the body changes, status(es), code). Applied to the original scenario.
REJECTIONS: list[tuple[str, dict[str, Any], int | tuple[int, ...], str]] = [
    ("unknown goods", {"goodsId": UNKNOWN_ID}, 404, "SHOP_GOODS_NO_EXIST"),
    ("unknown coupon", {"couponId": UNKNOWN_ID}, 404, "SHOP_COUPON_NO_EXIST"),
    ("wrong price", {"goodsPrice": "4999.99"}, (400, 422), "SHOP_GOODS_PRICE_INVALID"),
    ("too many units", {"goodsNumber": 11, "orderAmount": "55000.00"}, 409, "SHOP_GOODS_NUM_NOT_ENOUGH"),
    ("wrong shipping fee", {"shippingFee": "10.00", "orderAmount": "5010.00"}, (400, 422),
     "SHOP_ORDER_SHIPPINGFEE_INVALID"),
    ("wrong order amount", {"orderAmount": "4900.00"}, (400, 422), "SHOP_ORDERAMOUNT_INVALID"),
    ("negative money paid", {"moneyPaid": "-1.00"}, 422, "SHOP_MONEY_PAID_LESS_ZERO"),
    ("negative money paid, a number", {"moneyPaid": -0.5}, 422, "SHOP_MONEY_PAID_LESS_ZERO"),
    ("money paid above balance", {"moneyPaid": "100.01"}, 409, "SHOP_MONEY_PAID_INVALID"),
    ("zero units", {"goodsNumber": 0}, 422, "SHOP_REQUEST_PARAMETER_VALID"),
    ("negative units", {"goodsNumber": -1}, 422, "SHOP_REQUEST_PARAMETER_VALID"),
    ("fractional units", {"goodsNumber": 1.5}, 422, "SHOP_REQUEST_PARAMETER_VALID"),
    ("units as text", {"goodsNumber": "1"}, 422, "SHOP_REQUEST_PARAMETER_VALID"),
    ("units as bool", {"goodsNumber": True}, 422, "SHOP_REQUEST_PARAMETER_VALID"),
    ("absurd units", {"goodsNumber": 10**30}, 422, "SHOP_REQUEST_PARAMETER_VALID"),
    ("3 places", {"moneyPaid": "99.999"}, 422, "SHOP_REQUEST_PARAMETER_VALID"),
    ("3 places, a number", {"goodsPrice": 5000.001}, 422, "SHOP_REQUEST_PARAMETER_VALID"),
    ("float noise", {"moneyPaid": 0.1 + 0.2}, 422, "SHOP_REQUEST_PARAMETER_VALID"),
    ("NaN text", {"moneyPaid": "NaN"}, 422, "SHOP_REQUEST_PARAMETER_VALID"),
    ("negative NaN text", {"moneyPaid": "-NaN"}, 422, "SHOP_REQUEST_PARAMETER_VALID"),
    ("sNaN text", {"orderAmount": "sNaN"}, 422, "SHOP_REQUEST_PARAMETER_VALID"),
    ("Infinity text", {"orderAmount": "Infinity"}, 422, "SHOP_REQUEST_PARAMETER_VALID"),
    ("-Infinity text", {"moneyPaid": "-Infinity"}, 422, "SHOP_REQUEST_PARAMETER_VALID"),
    ("abc as money", {"goodsPrice": "abc"}, 422, "SHOP_REQUEST_PARAMETER_VALID"),
    ("empty money", {"shippingFee": ""}, 422, "SHOP_REQUEST_PARAMETER_VALID"),
    ("money as bool", {"shippingFee": False}, 422, "SHOP_REQUEST_PARAMETER_VALID"),
    ("money as null", {"goodsPrice": None}, 422, "SHOP_REQUEST_PARAMETER_VALID"),
    ("money as list", {"moneyPaid": [1]}, 422, "SHOP_REQUEST_PARAMETER_VALID"),
    ("huge money", {"moneyPaid": "1e30"}, 422, "SHOP_REQUEST_PARAMETER_VALID"),
    ("huge money, a number", {"orderAmount": 1e300}, 422, "SHOP_REQUEST_PARAMETER_VALID"),
    ("huge exponent", {"goodsPrice": "1E+999999999"}, 422, "SHOP_REQUEST_PARAMETER_VALID"),
    ("goods id not digits", {"goodsId": "12a"}, 422, "SHOP_REQUEST_PARAMETER_VALID"),
    ("goods id negative", {"goodsId": -5}, 422, "SHOP_REQUEST_PARAMETER_VALID"),
    ("goods id a float", {"goodsId": 1.0}, 422, "SHOP_REQUEST_PARAMETER_VALID"),
    ("goods id too big", {"goodsId": str(1 << 64)}, 422, "SHOP_REQUEST_PARAMETER_VALID"),
    ("coupon id not digits", {"couponId": "x"}, 422, "SHOP_REQUEST_PARAMETER_VALID"),
    ("coupon id superscript", {"couponId": "²"}, 422, "SHOP_REQUEST_PARAMETER_VALID"),
    ("empty address", {"address": ""}, 422, "SHOP_REQUEST_PARAMETER_VALID"),
]
MISSING = ["userId", "goodsId", "goodsNumber", "goodsPrice", "shippingFee", "orderAmount", "address"]


async def reject(
    api: Api, scene: Scene, r: httpx.Response, status: Any, code: str | None, before: tuple[Any, ...]
) -> None:
    body = failure(r, status, code)
    # A failure names the order it saved; a goods refusal the goods, and its stock left when short.
    assert body["data"] is None or set(body["data"]) <= {"orderId", "goodsId", "goodsNumber"}, body
    assert await snapshot(api, scene) == before
    assert await quiet_api(api) == {"consistent": True, "violations": [], "pending": 0}


@pytest.mark.parametrize(("change", "status", "code"), [c[1:] for c in REJECTIONS], ids=[c[0] for c in REJECTIONS])
async def test_rejection_changes_nothing(api, scene, change, status, code):
    before = await snapshot(api, scene)
    body = scene.body(**change)
    r = await api.confirm(scene.auth, body)
    await reject(api, scene, r, status, code, before)
    if code.startswith("SHOP_GOODS_"):  # the goods named, and what is left when it is short
        left = {"goodsNumber": before[0]} if code == "SHOP_GOODS_NUM_NOT_ENOUGH" else {}
        # The goods service's step is the check (no goods is read before it): its refusal also
        # names the pre-order, which ended cancelled. A body wrong twice (a wrong price makes a
        # wrong amount) is refused before any is saved, for its goods, as the original checks.
        data = r.json()["data"]
        saved = data.pop("orderId", None)
        assert (saved is None or ID.match(saved)) and data == {"goodsId": body["goodsId"], **left}, r.text


@pytest.mark.parametrize("field", MISSING)
async def test_missing_field_is_rejected(api, scene, field):
    before = await snapshot(api, scene)
    body = scene.body()
    del body[field]
    await reject(api, scene, await api.confirm(scene.auth, body), 422, "SHOP_REQUEST_PARAMETER_VALID", before)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
async def test_bare_nan_and_infinity_are_rejected(api, client, scene, value):
    # Python's JSON reader takes the non-standard NaN / Infinity tokens; the money rules must refuse them.
    before = await snapshot(api, scene)
    for field in ("goodsPrice", "moneyPaid"):
        r = await client.post("/order/confirm", content=raw_json(scene.body(**{field: value})),
                              headers={**scene.auth, "Content-Type": "application/json"})
        await reject(api, scene, r, 422, "SHOP_REQUEST_PARAMETER_VALID", before)


async def test_unknown_user(api, shop, scene):
    # The token must be that of the body's user: a token for a user that does not exist (deleted).
    before = await snapshot(api, scene)
    ghost = {"Authorization": f"Bearer {shop.tokens.issue(int(UNKNOWN_ID))}"}
    r = await api.confirm(ghost, scene.body(userId=UNKNOWN_ID))
    await reject(api, scene, r, 404, "SHOP_USER_NO_EXIST", before)


async def test_coupon_used_already(api, scene):
    first = success(await api.confirm(scene.auth, scene.body(moneyPaid="0")))
    before = await snapshot(api, scene)
    assert before == (9, "100.00", 0, 1, first["orderId"])
    await reject(api, scene, await api.confirm(scene.auth, scene.body(moneyPaid="0")), 409, "SHOP_COUPON_INVALID",
                 before)


async def test_someone_elses_coupon(api, scene):
    other_id, _, _ = await new_user(api)
    theirs = await api.create_coupon(other_id, "100.00")
    before = await snapshot(api, scene)
    await reject(api, scene, await api.confirm(scene.auth, scene.body(couponId=theirs)), 409, "SHOP_COUPON_INVALID",
                 before)
    assert (await api.get(f"/admin/coupons/{theirs}"))["isUsed"] == 0


async def test_coupon_and_balance_above_the_order_amount(api, scene):
    goods_id = await api.create_goods("50.00", 5)  # 50 + 10 shipping = 60 < 100 coupon
    before = await snapshot(api, scene)
    body = order_json(scene.user_id, goods_id, "50.00", coupon_id=scene.coupon_id)
    await reject(api, scene, await api.confirm(scene.auth, body), 422, "SHOP_PAY_AMOUNT_INVALID", before)
    body = order_json(scene.user_id, goods_id, "50.00", money_paid="60.01")
    await reject(api, scene, await api.confirm(scene.auth, body), 422, "SHOP_PAY_AMOUNT_INVALID", before)
    assert (await api.get(f"/admin/goods/{goods_id}"))["goodsNumber"] == 5
    # Exactly the order amount is fine: nothing left to pay.
    order = success(await api.confirm(scene.auth, order_json(scene.user_id, goods_id, "50.00", money_paid="60.00")))
    assert order["payAmount"] == "0.00"


async def test_malformed_json_is_a_400(api, client, scene):
    before = await snapshot(api, scene)
    for content in (b'{"userId": ', b"not json", b'{"userId": "1",}'):
        r = await client.post("/order/confirm", content=content,
                              headers={**scene.auth, "Content-Type": "application/json"})
        await reject(api, scene, r, 400, "SHOP_REQUEST_PARAMETER_VALID", before)
    for content in (b"[]", b"null", b'"x"', b"{}"):
        r = await client.post("/order/confirm", content=content,
                              headers={**scene.auth, "Content-Type": "application/json"})
        await reject(api, scene, r, 422, "SHOP_REQUEST_PARAMETER_VALID", before)


async def test_token_of_another_user_is_a_403(api, client, scene):
    before = await snapshot(api, scene)
    _, other, _ = await new_user(api)
    await reject(api, scene, await api.confirm(other, scene.body()), 403, "SHOP_USER_NOT_AUTHORIZED", before)
    # A token for someone else and an id that is not an id: still refused, never a 500.
    await reject(api, scene, await api.confirm(other, scene.body(userId="abc")), (403, 422), None, before)


async def test_no_or_bad_token_is_a_401(api, client, scene):
    before = await snapshot(api, scene)
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Bearer {ADMIN}"}):
        r = await client.post("/order/confirm", json=scene.body(), headers=headers)
        await reject(api, scene, r, 401, "SHOP_USER_NOT_AUTHORIZED", before)


async def test_a_failure_after_the_pre_order_leaves_no_trace(api, client, scene):
    # The contract's "a failure leaves no trace": an order that was saved ends cancelled (2) and
    # the failure's data carries its orderId.
    before = await snapshot(api, scene)
    armed = await client.post("/admin/faults", headers=api.admin,
                              json={"point": "order.after_reduce_money", "action": "error", "times": 1})
    success(armed)
    body = failure(await api.confirm(scene.auth, scene.body()), 503, "SHOP_SERVICE_UNAVAILABLE")
    order_id = body["data"]["orderId"]
    assert isinstance(order_id, str) and ID.match(order_id)
    assert await snapshot(api, scene) == before
    order = await api.get(f"/admin/orders/{order_id}")
    assert order["orderStatus"] == 2 and order["confirmTime"] is None
    assert await quiet_api(api) == {"consistent": True, "violations": [], "pending": 0}
    # The fault was armed once: the same order now goes through.
    assert success(await api.confirm(scene.auth, scene.body()))["payAmount"] == "4800.00"


# -- property: garbage money never breaks anything ---------------------------------------------------

MONEY_FIELDS = ("goodsPrice", "shippingFee", "orderAmount", "moneyPaid")
garbage_money = st.one_of(
    st.text(max_size=30),
    st.from_regex(r"\s?-{0,2}[0-9]{0,40}(\.[0-9]{0,6})?([eE][+-]?[0-9]{1,12})?\s?", fullmatch=True),
    st.sampled_from(["NaN", "-nan", "sNaN", "Infinity", "-inf", "1_000", "0x10", "5000", "5e3", "-0", "٥٠٠٠"]),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.none(), st.booleans(), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.none(),
                                                                                  max_size=1),
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(MONEY_FIELDS), value=garbage_money)
async def test_garbage_money_never_500s_and_changes_nothing_when_refused(api, client, scene, field, value):
    before = await snapshot(api, scene)
    body = scene.body(moneyPaid="0.00")
    del body["couponId"]
    body[field] = value
    r = await client.post("/order/confirm", content=raw_json(body),
                          headers={**scene.auth, "Content-Type": "application/json"})
    data = envelope(r)["data"]
    after = await snapshot(api, scene)
    if r.status_code == 200:
        # Only a spelling of a right amount may pass, and then it takes exactly one unit and what it paid.
        assert MONEY.match(data[field]), data
        if field != "moneyPaid":
            assert Decimal(data[field]) == Decimal(scene.body()[field]), (field, value, data)
        paid = Decimal(data["moneyPaid"])
        assert Decimal(data["payAmount"]) == Decimal("5000.00") - paid
        assert after[0] == before[0] - 1 and Decimal(after[1]) == Decimal(before[1]) - paid
        assert after[2:] == before[2:]
        assert success(await client.get(f"/order/{data['orderId']}", headers=scene.auth)) == data
    else:
        assert 400 <= r.status_code < 500
        assert after == before
