"""Admission control at the front door (infra/admission.py, infra/web.py FrontDoor), over real HTTP
against `shop run`: orders beyond the slots and the queue are refused at once, those that cannot
start within the wait are refused when it ends, each with a 503, Retry-After and the envelope, and
having changed nothing; the admitted orders are whole; a cancel and /healthz are not held back."""
from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_metrics import scrape, value
from tests.support import Api, order_json, quiet_api, served_shop

ADMIN = "admission-test-admin-token"
ENV = {
    "SHOP_ADMIN_TOKEN": ADMIN, "SHOP_FAULTS": "1", "SHOP_PASSWORD_TIME_COST": "1", "SHOP_PASSWORD_MEMORY_KIB": "1024",
    # 2 orders in progress, 2 waiting, none waiting over 0.2 s; each order held 1.5 s (a delay fault):
    # of 10 sent at once, 2 run, 6 find the queue full and 2 wait out their 0.2 s.
    "SHOP_ADMISSION_ACTIVE": "2", "SHOP_ADMISSION_QUEUE": "2", "SHOP_ADMISSION_WAIT_S": "0.2",
}
HOLD_MS = 1500  # far over the wait: on a busy machine the burst may take a while to arrive
PRICE = "10.00"
BURST = 10


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with served_shop(Path(tmp_path_factory.mktemp("admission")), ENV) as u:
        yield u


async def buyers(api: Api, n: int) -> list[tuple[str, dict[str, str]]]:
    async def one(i: int) -> tuple[str, dict[str, str]]:
        name = f"adm-{os.urandom(3).hex()}-{i}"
        uid = await api.create_user(name, "100.00")
        return uid, await api.login(name)

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def test_orders_over_the_limit_are_refused_having_changed_nothing(url: str) -> None:
    limits = httpx.Limits(max_connections=BURST + 4)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as c:
        api = Api(c, ADMIN)
        gid = await api.create_goods(price=PRICE, number=100)
        users = await buyers(api, BURST + 1)
        (owner_id, owner), burst = users[0], users[1:]
        r = await api.confirm(owner, order_json(owner_id, gid, PRICE))
        assert r.status_code == 200, r.text
        to_cancel = r.json()["data"]["orderId"]
        refused_before = value(await scrape(c, None), "shop_admission_refused_total")

        r = await c.post("/admin/faults", headers=api.admin, json={
            "point": "order.after_pre_order", "action": "delay", "delayMs": HOLD_MS, "times": BURST})
        assert r.status_code == 200, r.text
        orders = [asyncio.create_task(api.confirm(auth, order_json(uid, gid, PRICE, money_paid="1.00")))
                  for uid, auth in burst]
        await asyncio.sleep(0.05)  # the burst is in: 2 running, 2 waiting
        # Neither a cancel (it gives back what an order took) nor /healthz waits behind the orders.
        cancel = await c.post(f"/order/{to_cancel}/cancel", headers=owner)
        health = await c.get("/healthz")
        assert not all(t.done() for t in orders)
        answers = await asyncio.gather(*orders)
        await c.delete("/admin/faults", headers=api.admin)

        assert cancel.status_code == 200 and cancel.json()["data"]["orderStatus"] == 2, cancel.text
        assert health.status_code == 200
        statuses = sorted(r.status_code for r in answers)
        assert statuses == [200] * 2 + [503] * (BURST - 2), [r.text for r in answers]
        for r in answers:
            if r.status_code == 503:
                assert r.headers["retry-after"] == "1"
                body = r.json()
                assert body["success"] is False and body["code"] == "SHOP_SERVICE_UNAVAILABLE"
                assert body["data"] == {"retryAfter": 1}

        # The refused changed nothing: their users' money and orders as they were; the admitted whole.
        for (uid, auth), r in zip(burst, answers, strict=True):
            user = await api.get(f"/admin/users/{uid}")
            mine = await c.get("/order", headers=auth)
            assert mine.status_code == 200, mine.text
            items = mine.json()["data"]["items"]
            if r.status_code == 200:
                assert user["userMoney"] == "99.00" and [o["orderId"] for o in items] == [r.json()["data"]["orderId"]]
                assert items[0]["orderStatus"] == 1
            else:
                assert user["userMoney"] == "100.00" and items == []
        assert (await api.get(f"/admin/goods/{gid}"))["goodsNumber"] == 100 - 2  # the cancelled one's unit back
        report = await quiet_api(api)
        assert report["consistent"] and report["pending"] == 0, report
        refused = value(await scrape(c, None), "shop_admission_refused_total", path="/order/confirm")
        assert refused - refused_before == BURST - 2

        # Every slot and place was given back: the next order goes straight through.
        uid, auth = burst[-1]
        r = await api.confirm(auth, order_json(uid, gid, PRICE))
        assert r.status_code == 200, r.text
