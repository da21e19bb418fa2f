"""API.md, "Limits and formats", over HTTP in every mode (embedded on SQLite, the distributed shop on
PostgreSQL and on MariaDB): text with control characters, money and ids in any spelling but the
one, out-of-range fault counts and a signed notification for an id no database can hold are each a
clear 4xx that changes nothing, never a 500 or a 503; a body over 64 KiB is a 413 however it is sent,
and a known path with the wrong method a 405 (infra/web.py, FrontDoor)."""
from __future__ import annotations

import json
import os
import time
from typing import Any

import httpx
import pytest

from shop.infra.signing import Signer
from tests.conftest import ADMIN
from tests.e2e.test_api_contract import Scene, envelope, failure, fresh, new_user, snapshot, success
from tests.support import Api, quiet_api

INVALID = "SHOP_REQUEST_PARAMETER_VALID"
TOO_BIG_ID = str(1 << 63)  # one past the largest BIGINT
LARGEST_ID = str((1 << 63) - 1)


@pytest.fixture
def api(client: httpx.AsyncClient) -> Api:
    return Api(client, ADMIN)


@pytest.fixture
async def scene(api: Api) -> Scene:
    user_id, auth, name = await new_user(api)
    goods_id = await api.create_goods("5000.00", 10)
    coupon_id = await api.create_coupon(user_id, "100.00")
    return Scene(user_id, auth, goods_id, coupon_id, name)


def ascii_json(obj: Any) -> bytes:
    """JSON with every non-ASCII character escaped: how a lone surrogate (\\ud800) travels, which
    httpx's own JSON (UTF-8) cannot encode."""
    return json.dumps(obj).encode()


async def post_raw(client: httpx.AsyncClient, path: str, obj: Any, headers: dict[str, str]) -> httpx.Response:
    return await client.post(path, content=ascii_json(obj), headers={**headers, "Content-Type": "application/json"})


# -- text ------------------------------------------------------------------------------------------

# NUL (PostgreSQL cannot store it: it was a 503 CharacterNotInRepertoireError there), the other C0
# controls, DEL, a C1 control, a lone surrogate (no database can encode it).
CONTROL = ["a\u0000b", "a\tb", "a\nb", "\r", "\u001b[31mred", "a\u007f", "a\u0085b", "a\ud800b"]


@pytest.mark.parametrize("bad", CONTROL, ids=repr)
async def test_control_characters_in_text_fields_are_refused(api, client, scene, bad):
    failure(await post_raw(client, "/user/login", {"userName": bad, "userPassword": "x"}, {}), 422, INVALID)
    failure(await post_raw(client, "/user/login", {"userName": scene.name, "userPassword": "secret" + bad}, {}),
            422, INVALID)
    name = fresh()
    for field in ("userName", "userPassword", "userMobile"):
        body = {"userName": name, "userPassword": "secret", "userMobile": "13800000000", "userMoney": "1.00",
                field: bad if field != "userName" else name + bad}
        failure(await post_raw(client, "/admin/users", body, api.admin), 422, INVALID)
    # None of them made the user: the name is still free.
    await api.create_user(name, "1.00")
    for field in ("goodsName", "goodsDesc"):
        body = {"goodsName": "g", "goodsNumber": 1, "goodsPrice": "1.00", "goodsDesc": "d", field: bad}
        failure(await post_raw(client, "/admin/goods", body, api.admin), 422, INVALID)
    before = await snapshot(api, scene)
    for field in ("address", "consignee"):
        r = await post_raw(client, "/order/confirm", scene.body(**{field: "北京" + bad}), scene.auth)
        failure(r, 422, INVALID)
    assert await snapshot(api, scene) == before
    failure(await post_raw(client, "/admin/faults", {"point": "order.before_confirm" + bad, "action": "error"},
                           api.admin), 422, INVALID)


async def test_printable_text_of_any_script_is_kept_as_sent(api, client, scene):
    name = fresh("名前 O'Brien & Söhne ·")
    user_id = await api.create_user(name, "1.00", password="pässwörd 密码 ★")
    await api.login(name, "pässwörd 密码 ★")
    assert (await api.get(f"/admin/users/{user_id}"))["userName"] == name
    order = success(await api.confirm(scene.auth, scene.body(address="北京市 朝阳区 «1» — №2", consignee="张三")))
    assert (order["address"], order["consignee"]) == ("北京市 朝阳区 «1» — №2", "张三")


# -- money -----------------------------------------------------------------------------------------

# Each a second spelling of a number that Decimal() would take: only ASCII digits with at most two
# decimals are an amount in a string.
MONEY_SPELLINGS = ["1_000", "１２", "٥٠", "1e2", "1E2", " 50 ", "50 ", "\t50", "+50", ".5", "50.", "0x10",
                   "12345678901", "1,000", "50.000"]


@pytest.mark.parametrize("spelling", MONEY_SPELLINGS)
async def test_money_has_one_spelling_in_a_string(api, client, scene, spelling):
    before = await snapshot(api, scene)
    for field in ("goodsPrice", "shippingFee", "orderAmount", "moneyPaid"):
        failure(await api.confirm(scene.auth, scene.body(**{field: spelling})), 422, INVALID)
    failure(await client.post("/admin/goods", headers=api.admin,
                              json={"goodsName": "g", "goodsNumber": 1, "goodsPrice": spelling}), 422, INVALID)
    failure(await client.post("/admin/coupons", headers=api.admin,
                              json={"userId": scene.user_id, "couponPrice": spelling}), 422, INVALID)
    assert await snapshot(api, scene) == before


async def test_money_as_json_numbers_and_plain_strings(api, client, scene):
    goods_id = success(await client.post("/admin/goods", headers=api.admin,
                                         json={"goodsName": "g", "goodsNumber": 5, "goodsPrice": 1e2}))["goodsId"]
    assert (await api.get(f"/admin/goods/{goods_id}"))["goodsPrice"] == "100.00"  # a JSON number may be 1e2
    for price in ("0000000012", "12.5", "12.50", 12, 12.5):
        assert success(await client.post("/admin/goods", headers=api.admin,
                                          json={"goodsName": "g", "goodsNumber": 1, "goodsPrice": price}))


@pytest.mark.parametrize("money_paid", [None, "absent"])
async def test_money_paid_null_or_absent_is_zero(api, scene, money_paid):
    body = scene.body(moneyPaid=money_paid)
    if money_paid == "absent":
        del body["moneyPaid"]
    order = success(await api.confirm(scene.auth, body))
    assert (order["moneyPaid"], order["payAmount"]) == ("0.00", "4900.00")
    assert await snapshot(api, scene) == (9, "100.00", 0, 1, order["orderId"])


@pytest.mark.parametrize("money_paid", ["-1.00", "-1", -1, -0.5])
async def test_a_negative_money_paid_still_reaches_the_order_rules(api, scene, money_paid):
    before = await snapshot(api, scene)
    failure(await api.confirm(scene.auth, scene.body(moneyPaid=money_paid)), 422, "SHOP_MONEY_PAID_LESS_ZERO")
    assert await snapshot(api, scene) == before


@pytest.mark.parametrize("money_paid", ["-1e2", "- 1", "--1", "-１", "-", "-0x1"])
async def test_a_negative_money_paid_in_another_spelling_is_malformed(api, scene, money_paid):
    before = await snapshot(api, scene)
    failure(await api.confirm(scene.auth, scene.body(moneyPaid=money_paid)), 422, INVALID)
    assert await snapshot(api, scene) == before


# -- ids -------------------------------------------------------------------------------------------

# Each refused as an id: a sign, spaces, other scripts' digits, an exponent, 2^63 and beyond.
ID_SPELLINGS = ["+5", " 5", "5 ", "１２", "٥", "²", "1e3", "0", "-0", TOO_BIG_ID, str(1 << 64), "9" * 400]


@pytest.mark.parametrize("spelling", ID_SPELLINGS)
async def test_ids_in_bodies_have_one_spelling(api, client, scene, spelling):
    before = await snapshot(api, scene)
    for field in ("userId", "goodsId", "couponId"):
        r = await api.confirm(scene.auth, scene.body(**{field: spelling}))
        failure(r, (403, 422) if field == "userId" else 422)  # the token's user is checked against userId too
    failure(await client.post("/admin/coupons", headers=api.admin, json={"userId": spelling, "couponPrice": "1"}),
            422, INVALID)
    failure(await client.post("/pay/createPayment", headers=scene.auth, json={"orderId": spelling, "payAmount": "1"}),
            422, INVALID)
    assert await snapshot(api, scene) == before


async def test_ids_as_json_numbers_out_of_range_are_refused(api, client, scene):
    before = await snapshot(api, scene)
    for n in (1 << 63, 1 << 64, 10**30, 0, -1):
        failure(await api.confirm(scene.auth, scene.body(goodsId=n)), 422, INVALID)
    assert await snapshot(api, scene) == before


@pytest.mark.parametrize("spelling", ["+5", "%205", "5%20", "%EF%BC%91%EF%BC%92", "%C2%B2", "1e3", TOO_BIG_ID,
                                      str(1 << 64)])
async def test_ids_in_paths_and_queries_have_one_spelling(api, client, scene, spelling):
    for path in (f"/admin/users/{spelling}", f"/admin/goods/{spelling}", f"/goods/{spelling}",
                 f"/admin/coupons/{spelling}", f"/admin/orders/{spelling}", f"/admin/payments/{spelling}",
                 f"/admin/orders/{spelling}/timeline", f"/admin/paylog?orderId={spelling}",
                 f"/admin/orders?userId={spelling}", f"/admin/orders?cursor={spelling}"):
        failure(await client.get(path, headers=api.admin), 422, INVALID)
    for path in (f"/order/{spelling}", f"/pay/{spelling}", f"/order?cursor={spelling}"):
        failure(await client.get(path, headers=scene.auth), 422, INVALID)
    for path in (f"/order/{spelling}/cancel", f"/order/{spelling}/refund"):
        failure(await client.post(path, headers=scene.auth), 422, INVALID)


async def test_the_largest_id_is_an_id_no_row_has(api, client, scene):
    # 2^63 - 1 fits every database's BIGINT: a plain "no such row", on every backend.
    for path, code in (("users", "SHOP_USER_NO_EXIST"), ("goods", "SHOP_GOODS_NO_EXIST"),
                       ("coupons", "SHOP_COUPON_NO_EXIST"), ("orders", "SHOP_ORDER_NO_EXIST"),
                       ("payments", "SHOP_PAYMENT_NOT_FOUND")):
        failure(await client.get(f"/admin/{path}/{LARGEST_ID}", headers=api.admin), 404, code)
    failure(await client.get(f"/order/{LARGEST_ID}", headers=scene.auth), 404, "SHOP_ORDER_NO_EXIST")
    failure(await api.confirm(scene.auth, scene.body(goodsId=LARGEST_ID)), 404, "SHOP_GOODS_NO_EXIST")
    assert success(await client.get(f"/admin/orders?userId={LARGEST_ID}&cursor={LARGEST_ID}", headers=api.admin)) \
        == {"items": [], "nextCursor": None}


async def test_a_message_id_out_of_range_is_refused_and_an_unknown_one_is_not_found(api, client):
    for spelling in (TOO_BIG_ID, str(1 << 64), "0"):
        failure(await client.post(f"/admin/messages/{spelling}/replay", headers=api.admin), 422, INVALID)
    for unknown in (LARGEST_ID, "12345", "%EF%BC%91", "no-such-group:abc"):
        failure(await client.post(f"/admin/messages/{unknown}/replay", headers=api.admin), 404,
                "SHOP_MESSAGE_NO_EXIST")


# -- faults ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("change", [{"times": 1 << 64}, {"times": 1_000_001}, {"times": 0}, {"times": -1},
                                   {"delayMs": 60_001}, {"delayMs": 1 << 64}, {"delayMs": -1}, {"times": 1.5}])
async def test_a_fault_out_of_bounds_is_refused_and_nothing_is_armed(api, client, change):
    point = fresh("no.such_point")  # a point nothing hits: another test's faults stay out of the way
    body = {"point": point, "action": "delay", "times": 1, "delayMs": 10, **change}
    failure(await client.post("/admin/faults", headers=api.admin, json=body), 422, INVALID)
    assert point not in {f["point"] for f in (await api.get("/admin/faults"))["armed"]}


async def test_a_fault_at_the_bounds_is_armed(api, client):
    point = fresh("no.such_point")
    body = {"point": point, "action": "delay", "times": 1_000_000, "delayMs": 60_000}
    assert success(await client.post("/admin/faults", headers=api.admin, json=body))["times"] == 1_000_000
    armed = [f for f in (await api.get("/admin/faults"))["armed"] if f["point"] == point]
    assert armed == [{"point": point, "action": "delay", "times": 1_000_000, "delayMs": 60_000}]


# -- the payment notification -----------------------------------------------------------------------


def _signed(shop: Any, body: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()  # not orjson: it refuses integers above 64 bits, and those are the point
    signer = Signer((shop.settings.data_dir / "sandbox_private.pem").read_bytes())
    timestamp, nonce = str(int(time.time())), os.urandom(8).hex()
    return raw, {"X-Pay-Timestamp": timestamp, "X-Pay-Nonce": nonce,
                 "X-Pay-Signature": signer.sign(timestamp, nonce, raw), "Content-Type": "application/json"}


async def test_a_signed_notification_for_an_impossible_pay_id_is_refused_and_changes_nothing(api, client, shop,
                                                                                             scene):
    order = success(await api.confirm(scene.auth, scene.body()))
    r = await client.post("/pay/createPayment", headers=scene.auth,
                          json={"orderId": order["orderId"], "payAmount": order["payAmount"]})
    payment = success(r)
    for pay_id in (TOO_BIG_ID, 1 << 63, str(1 << 64), 1 << 64, "+1", "１", 0, -1, None, True, 1.5):
        note = {"payId": pay_id, "isPaid": 2, "payAmount": payment["payAmount"], "tradeNo": "T-" + fresh(),
                "notifyId": os.urandom(4).hex()}
        raw, headers = _signed(shop, note)
        body = failure(await client.post("/pay/callbackPayment", content=raw, headers=headers), 422, INVALID)
        assert "payId" in body["message"] or "malformed" in body["message"], body
    # Control characters in the platform's trade number, a malformed amount: refused the same way.
    for change in ({"tradeNo": "T-\u0000"}, {"tradeNo": "x" * 65}, {"payAmount": "4800.001"}, {"payAmount": "1e3"}):
        raw, headers = _signed(shop, {"payId": payment["payId"], "isPaid": 2, "payAmount": payment["payAmount"],
                                      "tradeNo": "T-" + fresh(), "notifyId": "n", **change})
        failure(await client.post("/pay/callbackPayment", content=raw, headers=headers), 422, INVALID)
    assert (await api.get(f"/admin/payments/{payment['payId']}"))["isPaid"] == 1
    assert (await api.get(f"/admin/orders/{order['orderId']}"))["payStatus"] == 0
    assert await quiet_api(api) == {"consistent": True, "violations": [], "pending": 0}


# -- the body's size ---------------------------------------------------------------------------------

LIMIT = 64 * 1024


def padded_login(size: int) -> bytes:
    """A login body of exactly `size` bytes (JSON allows the spaces)."""
    body = json.dumps({"userName": "nobody-" + fresh(), "userPassword": "x"}).encode()
    return body[:-1] + b" " * (size - len(body)) + b"}"


async def chunks(total: int, size: int = 16 * 1024) -> Any:
    """A body with no Content-Length (chunked), `total` bytes long: it must be counted as it comes."""
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        sent += n
        yield b" " * n


def too_large(r: httpx.Response) -> None:
    body = envelope(r)
    assert r.status_code == 413, r.text
    assert body["code"] == "SHOP_REQUEST_TOO_LARGE" and body["data"] is None


async def test_a_body_at_the_limit_is_read_and_one_byte_more_is_a_413(client):
    json_headers = {"Content-Type": "application/json"}
    r = await client.post("/user/login", content=padded_login(LIMIT), headers=json_headers)
    failure(r, 401, "SHOP_USER_NOT_AUTHORIZED")  # read, parsed and judged
    too_large(await client.post("/user/login", content=padded_login(LIMIT + 1), headers=json_headers))
    # Everywhere, before anything else is checked: the route, the method, the credentials.
    too_large(await client.post("/pay/callbackPayment", content=b" " * (LIMIT + 1), headers=json_headers))
    too_large(await client.post("/order/confirm", content=b"{" * (LIMIT + 1), headers=json_headers))


async def test_a_chunked_body_is_counted_as_it_streams(client):
    json_headers = {"Content-Type": "application/json"}
    small = padded_login(1000)
    r = await client.post("/user/login", content=_once(small), headers=json_headers)
    failure(r, 401, "SHOP_USER_NOT_AUTHORIZED")
    too_large(await client.post("/user/login", content=chunks(LIMIT + 1), headers=json_headers))
    too_large(await client.post("/pay/callbackPayment", content=chunks(LIMIT * 4), headers=json_headers))


async def _once(data: bytes) -> Any:
    yield data


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_fifty_megabytes_are_refused_fast(client, chunked):
    size = 50 * 1024 * 1024
    started = time.monotonic()
    content = chunks(size, 1024 * 1024) if chunked else b" " * size
    too_large(await client.post("/user/login", content=content, headers={"Content-Type": "application/json"}))
    assert time.monotonic() - started < 10.0
    assert (await client.get("/healthz")).status_code == 200  # and the shop is still serving


# -- methods -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("GET", "/order/confirm", "POST"),  # was GET /order/{orderId} with the id "confirm": a 422
    ("GET", "/pay/createPayment", "POST"),
    ("GET", "/pay/callbackPayment", "POST"),
    ("DELETE", "/order/confirm", "POST"),
    ("POST", "/admin/audit", "GET"),
    ("PUT", "/admin/faults", "DELETE, GET, POST"),
    ("DELETE", "/healthz", "GET"),
])
async def test_a_known_path_with_the_wrong_method_is_a_405(client, method, path, allow):
    r = await client.request(method, path, headers={"Authorization": f"Bearer {ADMIN}"})
    failure(r, 405)
    assert r.headers["allow"] == allow


async def test_a_templated_path_still_takes_what_is_not_a_literal_path(client, api, scene):
    failure(await client.get("/order/123456789", headers=scene.auth), 404, "SHOP_ORDER_NO_EXIST")
    failure(await client.get("/order/confirmed", headers=scene.auth), 422, INVALID)  # not a path of its own
