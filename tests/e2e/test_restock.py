"""POST /admin/goods/{goodsId}/stock over HTTP, in every mode: its answers, an order for the restocked
units, and the audit (the quick one and a recount, which sums the goods' ledger) still consistent."""
from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN
from tests.support import Api, order_json, quiet_api, until

MAX_STOCK = 2_000_000_000


@pytest.fixture
def api(client: httpx.AsyncClient) -> Api:
    return Api(client, ADMIN)


async def restock(api: Api, goods_id: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return await api.c.post(f"/admin/goods/{goods_id}/stock", json=body,
                            headers=api.admin if headers is None else headers)


def refused(r: httpx.Response, status: int, code: str) -> None:
    body = r.json()
    assert (r.status_code, body["success"], body["code"]) == (status, False, code), r.text


async def number(api: Api, goods_id: str) -> int:
    return int((await api.get(f"/admin/goods/{goods_id}"))["goodsNumber"])


async def test_a_restock_answers_as_the_contract_says_and_its_units_sell(api: Api) -> None:
    name = f"restock-{time.monotonic_ns()}"
    user_id = await api.create_user(name, "1000.00")
    auth = await api.login(name)
    goods_id = await api.create_goods("30.00", 1)

    r = await restock(api, goods_id, {"delta": 3})
    assert r.status_code == 200, r.text
    assert r.json()["data"] == {"goodsId": goods_id, "goodsNumber": 4}
    assert (await restock(api, goods_id, {"delta": -2})).json()["data"] == {"goodsId": goods_id, "goodsNumber": 2}

    for headers in ({}, {"Authorization": "Bearer not-the-admin-token"}):
        refused(await restock(api, goods_id, {"delta": 1}, headers), 401, "SHOP_USER_NOT_AUTHORIZED")
    refused(await restock(api, "123456789", {"delta": 1}), 404, "SHOP_GOODS_NO_EXIST")
    refused(await restock(api, goods_id, {"delta": -3}), 409, "SHOP_GOODS_NUM_NOT_ENOUGH")
    for body in ({"delta": 0}, {"delta": 1.0}, {"delta": "1"}, {"delta": True}, {}, {"delta": None},
                 {"delta": MAX_STOCK + 1}, {"delta": -MAX_STOCK - 1},
                 {"delta": MAX_STOCK - 1}):  # the last is within the bound, but 2 + it is past it
        refused(await restock(api, goods_id, body), 422, "SHOP_REQUEST_PARAMETER_VALID")
    assert await number(api, goods_id) == 2  # nothing refused changed it

    # The restocked units sell: all of them, paid from the balance (no payment timeout meanwhile).
    body = order_json(user_id, goods_id, "30.00", 2)
    body["moneyPaid"] = body["orderAmount"]
    r = await api.confirm(auth, body)
    assert r.status_code == 200 and r.json()["data"]["orderStatus"] == 1, r.text
    assert await number(api, goods_id) == 0
    refused(await api.confirm(auth, order_json(user_id, goods_id, "30.00", 1)), 409, "SHOP_GOODS_NUM_NOT_ENOUGH")
    refused(await restock(api, goods_id, {"delta": -1}), 409, "SHOP_GOODS_NUM_NOT_ENOUGH")
    assert (await restock(api, goods_id, {"delta": 5})).json()["data"]["goodsNumber"] == 5

    assert await quiet_api(api) == {"consistent": True, "violations": [], "pending": 0}
    # A recount compares every goods' stock with its ledger's sum: this one's restocks must be in it.
    # One begun before these restocks may still be running: wait for one begun after them.
    since = (await api.get(f"/admin/goods/{await api.create_goods('30.00', 1)}"))["addTime"]

    async def recounted() -> dict[str, Any] | None:
        current = await api.get("/admin/audit/recount")
        if current is not None and current["startedAt"] >= since:
            return current if current["state"] != "running" else None
        if current is None or current["state"] != "running":
            r = await api.c.post("/admin/audit/recount", headers=api.admin)
            assert r.status_code == 200, r.text
        return None

    recount = await until(recounted, 60.0, every_s=0.2)
    assert recount is not None, "no recount finished"
    assert recount["state"] == "done" and [v for v in recount["violations"] if goods_id in v] == [], recount


async def test_an_idempotency_key_makes_a_restock_once(api: Api) -> None:
    goods_id = await api.create_goods("30.00", 1)
    keyed = {**api.admin, "Idempotency-Key": str(uuid.uuid4())}
    for _ in range(2):  # the second: a retry whose answer was lost
        r = await restock(api, goods_id, {"delta": 3}, keyed)
        assert (r.status_code, r.json()["data"]) == (200, {"goodsId": goods_id, "goodsNumber": 4}), r.text
    assert await number(api, goods_id) == 4
    refused(await restock(api, goods_id, {"delta": 2}, keyed), 422, "SHOP_REQUEST_PARAMETER_VALID")
    for bad in (b"", b"a b", b"\xc3\xa9", b"x" * 256):  # 1-255 visible ASCII characters
        r = await restock(api, goods_id, {"delta": 1}, {**api.admin, "Idempotency-Key": bad})  # type: ignore[dict-item]
        refused(r, 422, "SHOP_REQUEST_PARAMETER_VALID")
        assert "Idempotency-Key" in r.json()["message"], r.text
    assert await number(api, goods_id) == 4  # nothing refused changed it
    other = await api.create_goods("30.00", 1)  # a key names a change of one goods
    assert (await restock(api, other, {"delta": 3}, keyed)).json()["data"] == {"goodsId": other, "goodsNumber": 4}
    assert await quiet_api(api) == {"consistent": True, "violations": [], "pending": 0}


async def test_the_document_names_the_idempotency_key_header(api: Api) -> None:
    op = (await api.c.get("/openapi.json")).json()["paths"]["/admin/goods/{goods_id}/stock"]["post"]
    (header,) = [p for p in op["parameters"] if p["in"] == "header"]
    assert (header["name"], header.get("required", False)) == ("Idempotency-Key", False)
    schema = next(s for s in header["schema"]["anyOf"] if s.get("type") == "string")
    assert (schema["minLength"], schema["maxLength"], schema["pattern"]) == (1, 255, r"^[\x21-\x7e]+$")
