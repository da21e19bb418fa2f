"""The flash sale's sold-out gate (services/order/sold_out.py), in every mode: once a goods is sold
out its orders are refused by the front door without a call, a database or a pre-order; and stock
that comes back (a compensation, the owner's cancel) is sold again within 1 s."""
from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import httpx
import pytest

from shop.infra.config import Settings
from tests.cluster import Cluster
from tests.conftest import ADMIN
from tests.e2e.test_metrics import scrape, value
from tests.support import Api, order_json, until

TTL_S = Settings().sold_out_ttl_s  # the default: neither the tests' settings nor their clusters set it
PRICE = "10.00"


@pytest.fixture
def api(client: httpx.AsyncClient) -> Api:
    return Api(client, ADMIN)


async def buyer(api: Api, tag: str, money: str = "1000.00") -> tuple[str, dict[str, str]]:
    name = f"{tag}-{os.urandom(4).hex()}"
    uid = await api.create_user(name, money)
    return uid, await api.login(name)


def sold_out(r: httpx.Response, gid: str) -> bool:
    """A 409 that says the goods has nothing left."""
    data = r.json()["data"] or {}
    # The order service's refusal also names the pre-order it cancelled (the step is the check);
    # the gate's saved none.
    return (r.status_code == 409 and r.json()["code"] == "SHOP_GOODS_NUM_NOT_ENOUGH"
            and {k: v for k, v in data.items() if k != "orderId"} == {"goodsId": gid, "goodsNumber": 0})


async def stock(api: Api, gid: str) -> int:
    return int((await api.get(f"/admin/goods/{gid}"))["goodsNumber"])


async def sold_within(api: Api, who: tuple[str, dict[str, str]], gid: str, limit_s: float) -> float:
    """How long until `who` is sold the goods, trying every 20 ms (fails past limit_s)."""
    start = time.monotonic()
    while True:
        r = await api.confirm(who[1], order_json(who[0], gid, PRICE))
        took = time.monotonic() - start
        if r.status_code == 200:
            return took
        assert sold_out(r, gid), r.text
        assert took < limit_s, f"still refused {took:.2f} s after the stock came back"
        await asyncio.sleep(0.02)


async def test_sold_out_is_answered_without_a_call_a_database_or_a_pre_order(
    api: Api, client: httpx.AsyncClient, mode: Cluster | None,
) -> None:
    gid = await api.create_goods(PRICE, 1)
    first = await buyer(api, "first")
    assert (await api.confirm(first[1], order_json(first[0], gid, PRICE))).status_code == 200
    late_id, late = await buyer(api, "late")
    body = order_json(late_id, gid, PRICE)
    for _ in range(3):  # the gate's answers must all fall within one TTL: a loaded machine may retry
        before = await scrape(client, mode)
        start = time.monotonic()
        refused = await api.confirm(late, body)  # the normal path: the order service finds 0 left
        gated = await asyncio.gather(*(api.confirm(late, body) for _ in range(5)))
        elapsed = time.monotonic() - start
        after = await scrape(client, mode)
        if elapsed < TTL_S:
            break
        await asyncio.sleep(TTL_S)  # let the memory lapse: the next try's first order is its probe
    else:
        pytest.fail(f"six orders took over {TTL_S} s three times")

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert sold_out(refused, gid), refused.text
    assert all(sold_out(r, gid) for r in gated), [r.text for r in gated]
    # Only the first reached the order service (and it the goods service); the five never left the front door.
    assert grew("shop_rpc_seconds_count", method="order.confirm_order") == 1
    assert grew("shop_rpc_seconds_count", method="goods.reduce_stock") == 1
    assert grew("shop_sold_out_answers_total") == 5
    assert grew("shop_orders_total", outcome="rejected") == 6
    # The first one's pre-order, cancelled (its step was refused); none for the five; nothing taken.
    orders = (await api.get(f"/admin/orders?userId={late_id}"))["items"]
    assert [(o["orderId"], o["orderStatus"]) for o in orders] == [(refused.json()["data"]["orderId"], 2)]
    assert all("orderId" not in r.json()["data"] for r in gated)
    assert await stock(api, gid) == 0


async def _arm(api: Api, point: str, action: str, **more: Any) -> None:
    r = await api.c.post("/admin/faults", json={"point": point, "action": action, **more}, headers=api.admin)
    assert r.status_code == 200, r.text


async def test_stock_a_compensation_gives_back_is_sold_again_within_a_second(
    api: Api, client: httpx.AsyncClient, mode: Cluster | None,
) -> None:
    gid = await api.create_goods(PRICE, 1)
    doomed, last = await buyer(api, "doomed"), await buyer(api, "last")
    # One who can never buy it (no balance for their moneyPaid): refused for the stock while it is
    # out, for the balance once it is back, so it never takes the unit from `last`.
    other = await buyer(api, "other", "0.00")
    other_body = order_json(other[0], gid, PRICE, money_paid="1.00")
    before = await scrape(client, mode)
    try:
        # The doomed order takes the last unit, stalls, then fails: the compensation gives it back.
        await _arm(api, "order.after_reduce_stock", "delay", delayMs=1500, times=1)
        await _arm(api, "order.after_use_coupon", "error", times=1)
        failing = asyncio.create_task(api.confirm(doomed[1], order_json(doomed[0], gid, PRICE)))
        assert await until(lambda: _is(stock(api, gid), 0), 10.0), "the doomed order never took the unit"
        # Meanwhile another buyer is refused: the first time by the order service, then by the gate,
        # which stays armed (each TTL one probe finds 0 again) for as long as the unit is held.
        refusals = 0
        while not failing.done():
            r = await api.confirm(other[1], other_body)
            refusals += sold_out(r, gid)
            assert sold_out(r, gid) or r.json()["code"] == "SHOP_MONEY_PAID_INVALID", r.text
            await asyncio.sleep(0.02)
        assert refusals >= 3, refusals
        r = await failing
        assert r.status_code == 503 and "orderId" in r.json()["data"], r.text
    finally:
        assert (await api.c.delete("/admin/faults", headers=api.admin)).status_code == 200
    meanwhile = await scrape(client, mode)
    assert value(meanwhile, "shop_sold_out_answers_total") > value(before, "shop_sold_out_answers_total")
    assert await until(lambda: _is(stock(api, gid), 1), 10.0), "the compensation never gave the unit back"
    took = await sold_within(api, last, gid, 1.0)
    assert await stock(api, gid) == 0, f"sold after {took:.3f} s"


async def gate_armed(api: Api, client: httpx.AsyncClient, mode: Cluster | None, who: tuple[str, dict[str, str]],
                     gid: str) -> None:
    """`who` is refused the sold-out goods: by the order service, then by the front door's gate."""
    before = await scrape(client, mode)
    for _ in range(3):
        r = await api.confirm(who[1], order_json(who[0], gid, PRICE))
        assert sold_out(r, gid), r.text
    after = await scrape(client, mode)
    assert value(after, "shop_sold_out_answers_total") > value(before, "shop_sold_out_answers_total")


async def test_stock_the_owner_cancels_is_sold_again_within_a_second(
    api: Api, client: httpx.AsyncClient, mode: Cluster | None,
) -> None:
    gid = await api.create_goods(PRICE, 1)
    owner, other, last = await buyer(api, "owner"), await buyer(api, "other"), await buyer(api, "last")
    r = await api.confirm(owner[1], order_json(owner[0], gid, PRICE))
    assert r.status_code == 200, r.text
    order_id = r.json()["data"]["orderId"]
    await gate_armed(api, client, mode, other, gid)
    r = await api.confirm(other[1], order_json(other[0], gid, PRICE))  # armed right up to the cancel
    assert sold_out(r, gid), r.text
    r = await api.c.post(f"/order/{order_id}/cancel", headers=owner[1])
    assert r.status_code == 200 and r.json()["data"]["orderStatus"] == 2, r.text
    assert await until(lambda: _is(stock(api, gid), 1), 10.0), "the cancel never gave the unit back"
    await sold_within(api, last, gid, 1.0)
    assert await stock(api, gid) == 0


async def test_a_restock_is_sold_again_within_a_second(api: Api, client: httpx.AsyncClient,
                                                        mode: Cluster | None) -> None:
    gid = await api.create_goods(PRICE, 1)
    first, other, last = await buyer(api, "first"), await buyer(api, "other"), await buyer(api, "last")
    r = await api.confirm(first[1], order_json(first[0], gid, PRICE))
    assert r.status_code == 200, r.text
    await gate_armed(api, client, mode, other, gid)
    r = await api.c.post(f"/admin/goods/{gid}/stock", json={"delta": 2}, headers=api.admin)
    assert r.status_code == 200 and r.json()["data"] == {"goodsId": gid, "goodsNumber": 2}, r.text
    await sold_within(api, last, gid, 1.0)
    assert await stock(api, gid) == 1


async def _is(read: Any, want: int) -> bool:
    return await read == want


async def test_a_sold_out_goods_is_refused_only_after_the_routes_own_checks(api: Api,
                                                                             client: httpx.AsyncClient) -> None:
    """The front door answers sold out before FastAPI parses the request (order/api.py
    SoldOutShortcut), so it must make the route's checks first: a request they refuse gets their
    answer, not the 409, while the gate is armed."""
    gid = await api.create_goods(PRICE, 0)
    (uid, auth), (other_id, _) = await buyer(api, "buyer"), await buyer(api, "other")
    body = order_json(uid, gid, PRICE)
    r = await api.confirm(auth, body)
    assert sold_out(r, gid), r.text  # armed
    cases = [
        ({}, body, 401, "SHOP_USER_NOT_AUTHORIZED"),
        ({"Authorization": "Bearer nonsense"}, body, 401, "SHOP_USER_NOT_AUTHORIZED"),
        (auth, {**body, "userId": other_id}, 403, "SHOP_USER_NOT_AUTHORIZED"),
        (auth, {**body, "goodsNumber": 0}, 422, "SHOP_REQUEST_PARAMETER_VALID"),
        (auth, {**body, "goodsPrice": "1.001"}, 422, "SHOP_REQUEST_PARAMETER_VALID"),
        (auth, {k: v for k, v in body.items() if k != "address"}, 422, "SHOP_REQUEST_PARAMETER_VALID"),
    ]
    for headers, b, status, code in cases:
        r = await client.post("/order/confirm", json=b, headers=headers)
        assert (r.status_code, r.json()["code"]) == (status, code), (b, r.text)
    r = await client.post("/order/confirm", content=b"{not json", headers={**auth, "Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    r = await client.post("/order/confirm", content=json.dumps(body), headers={**auth, "Content-Type": "text/plain"})
    assert r.status_code == 422, r.text
    # Every check passed: the gate's refusal, the same answer the order service gave.
    r = await api.confirm(auth, body)
    assert sold_out(r, gid) and r.headers["x-content-type-options"] == "nosniff", r.text
