"""The order lists over HTTP, in every mode: the caller's own orders (GET /order) and the
operator's (GET /admin/orders), newest first, filtered, a page at a time; bad input is a 4xx."""
from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import ADMIN
from tests.support import Api, order_json, quiet_api


@pytest.fixture
def api(client) -> Api:
    return Api(client, ADMIN)


async def _buyer(api: Api, money: str = "1000.00") -> tuple[str, dict[str, str]]:
    name = f"lists-{os.urandom(4).hex()}"
    uid = await api.create_user(name, money)
    return uid, await api.login(name)


async def _pages(api: Api, path: str, headers: dict[str, str]) -> list[list[dict[str, Any]]]:
    """Every page of a list, following nextCursor."""
    pages, cursor = [], None
    while True:
        sep = "&" if "?" in path else "?"
        r = await api.c.get(path + (f"{sep}cursor={cursor}" if cursor else ""), headers=headers)
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        pages.append(data["items"])
        cursor = data["nextCursor"]
        if cursor is None:
            return pages
        assert isinstance(cursor, str)


async def test_my_orders_come_newest_first_a_page_at_a_time_and_only_mine(api: Api) -> None:
    uid, auth = await _buyer(api)
    other, other_auth = await _buyer(api)
    gid = await api.create_goods("10.00", 100)
    placed = []
    for _ in range(5):
        r = await api.confirm(auth, order_json(uid, gid, "10.00"))
        assert r.status_code == 200, r.text
        placed.append(r.json()["data"]["orderId"])
    assert (await api.confirm(other_auth, order_json(other, gid, "10.00"))).status_code == 200

    pages = await _pages(api, "/order?limit=2", auth)
    assert [len(p) for p in pages] == [2, 2, 1]
    listed = [o["orderId"] for p in pages for o in p]
    assert listed == placed[::-1]  # newest first, none twice, none missing
    assert all(o["userId"] == uid for p in pages for o in p)
    whole = (await api.c.get("/order", headers=auth)).json()["data"]
    assert [o["orderId"] for o in whole["items"]] == listed and whole["nextCursor"] is None
    first = whole["items"][0]
    assert first == (await api.c.get(f"/order/{first['orderId']}", headers=auth)).json()["data"]


async def test_my_orders_by_status(api: Api) -> None:
    uid, auth = await _buyer(api)
    gid = await api.create_goods("10.00", 100)
    kept = (await api.confirm(auth, order_json(uid, gid, "10.00"))).json()["data"]["orderId"]
    gone = (await api.confirm(auth, order_json(uid, gid, "10.00"))).json()["data"]["orderId"]
    assert (await api.c.post(f"/order/{gone}/cancel", headers=auth)).status_code == 200
    confirmed = (await api.c.get("/order?status=1", headers=auth)).json()["data"]["items"]
    cancelled = (await api.c.get("/order?status=2", headers=auth)).json()["data"]["items"]
    assert [o["orderId"] for o in confirmed] == [kept]
    assert [o["orderId"] for o in cancelled] == [gone]


async def test_the_operator_filters_by_user_status_pay_status_and_time(api: Api) -> None:
    uid, auth = await _buyer(api)
    gid = await api.create_goods("10.00", 100)
    before = datetime.now(UTC) - timedelta(seconds=2)
    ids = [(await api.confirm(auth, order_json(uid, gid, "10.00"))).json()["data"]["orderId"] for _ in range(3)]
    # One paid in full by the balance at confirmation (pay status 2), one cancelled.
    paid = (await api.confirm(auth, order_json(uid, gid, "10.00", moneyPaid="20.00"))).json()["data"]
    assert paid["payStatus"] == 2
    assert (await api.c.post(f"/order/{ids[0]}/cancel", headers=auth)).status_code == 200
    await quiet_api(api)

    mine = f"/admin/orders?userId={uid}"
    listed = [o["orderId"] for p in await _pages(api, mine + "&limit=3", api.admin) for o in p]
    assert listed == [paid["orderId"], *ids[::-1]]
    assert [o["orderId"] for o in (await api.get(mine + "&status=2"))["items"]] == [ids[0]]
    assert [o["orderId"] for o in (await api.get(mine + "&payStatus=2"))["items"]] == [paid["orderId"]]
    assert [o["orderId"] for o in (await api.get(mine + "&status=1&payStatus=0"))["items"]] == ids[:0:-1]
    later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    assert (await api.get(mine + f"&from={later}"))["items"] == []
    since = before.isoformat().replace("+00:00", "Z")
    assert len((await api.get(mine + f"&from={since}&to={later}"))["items"]) == 4
    assert (await api.get(mine + f"&to={since}"))["items"] == []
    # Without the filter, everyone's: these are the newest (the tests run one after another).
    everyone = await api.get("/admin/orders?limit=4")
    assert [o["orderId"] for o in everyone["items"]] == [paid["orderId"], *ids[::-1]]


@pytest.mark.parametrize("query", [
    "cursor=abc", "cursor=-1", "cursor=0", "cursor=99999999999999999999", "status=9", "status=x", "limit=0",
    "limit=10000", "limit=-5", "payStatus=1", "from=yesterday", "to=2026-13-45",
])
async def test_bad_list_input_is_a_4xx_with_a_code(api: Api, query: str) -> None:
    uid, auth = await _buyer(api)
    for path, headers in ((f"/order?{query}", auth), (f"/admin/orders?{query}", api.admin)):
        r = await api.c.get(path, headers=headers)
        if "from=" in query or "to=" in query or "payStatus" in query:
            if path.startswith("/order?"):
                assert r.status_code == 200, r.text  # not a parameter of the customer's list: ignored
                continue
        assert r.status_code == 422, (path, r.text)
        assert r.json()["code"] == "SHOP_REQUEST_PARAMETER_VALID", r.text


async def test_the_lists_need_their_tokens(api: Api) -> None:
    uid, auth = await _buyer(api)
    assert (await api.c.get("/order")).status_code == 401
    assert (await api.c.get("/admin/orders")).status_code == 401
    r = await api.c.get("/admin/orders", headers=auth)  # a user's token is not the operator's
    assert r.status_code == 401 and r.json()["code"] == "SHOP_USER_NOT_AUTHORIZED"
