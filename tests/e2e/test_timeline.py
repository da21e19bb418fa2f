"""An order's timeline over HTTP, in every mode: every service reports its own facts about the
order (over gRPC in the distributed mode), merged in time order: a paid order's steps and messages,
a failed order's compensations, and a message parked dead."""
from __future__ import annotations

import os
from typing import Any

import pytest

from tests.conftest import ADMIN
from tests.support import Api, order_json, quiet_api, until


@pytest.fixture
def api(client) -> Api:
    return Api(client, ADMIN)


async def _scene(api: Api) -> tuple[str, dict[str, str], str, str]:
    name = f"timeline-{os.urandom(4).hex()}"
    uid = await api.create_user(name, "100.00")
    return uid, await api.login(name), await api.create_goods("5000.00", 10), await api.create_coupon(uid, "100.00")


async def _timeline(api: Api, order_id: str) -> list[dict[str, Any]]:
    data = await api.get(f"/admin/orders/{order_id}/timeline")
    assert data["orderId"] == order_id
    events = data["events"]
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)  # in time order
    return events


def _kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["kind"] for e in events]


async def test_a_paid_orders_timeline_has_every_step_from_every_service(api: Api) -> None:
    uid, auth, gid, cid = await _scene(api)
    order = (await api.confirm(auth, order_json(uid, gid, "5000.00", coupon_id=cid, money_paid="100.00"))).json()
    order = order["data"]
    r = await api.c.post("/pay/createPayment", json={"orderId": order["orderId"], "payAmount": "4800.00"},
                         headers=auth)
    assert r.status_code == 200, r.text
    assert (await api.c.post(f"/sandbox/pay/{r.json()['data']['payId']}")).status_code == 200

    async def complete() -> list[dict[str, Any]] | None:
        events = await _timeline(api, order["orderId"])
        return events if {"log.recorded", "user.points_added"} <= set(_kinds(events)) else None

    events = await until(complete, 20.0)
    assert events, "the payment's effects never reached the timeline"
    kinds = _kinds(events)
    for kind in ("order.saved", "goods.stock_reduced", "coupon.used", "user.money_paid", "order.confirmed",
                 "pay.created", "pay.notified", "message.sent", "message.handled", "order.paid",
                 "user.points_added", "log.recorded"):
        assert kind in kinds, (kind, kinds)
    # The saga's order: saved, then each step, then confirmed; the payment after (times are kept to
    # the millisecond, so steps within one millisecond tie).
    at = {e["kind"]: e["at"] for e in events}
    saga = ["order.saved", "goods.stock_reduced", "coupon.used", "user.money_paid", "order.confirmed", "pay.created",
            "pay.notified", "order.paid"]
    assert [at[k] for k in saga] == sorted(at[k] for k in saga), at
    assert {e["service"] for e in events} == {"order", "goods", "coupon", "user", "pay", "log"}
    handled = {e["detail"]["group"] for e in events if e["kind"] == "message.handled"}
    assert {"order-pay-group", "user-order-group", "log-order-group"} <= handled
    points = next(e for e in events if e["kind"] == "user.points_added")
    assert points["detail"] == {"points": 4800}
    stock = next(e for e in events if e["kind"] == "goods.stock_reduced")
    assert stock["detail"]["goodsId"] == gid and stock["detail"]["amount"] == "1"
    assert "barrier" not in kinds and "order.cancelled" not in kinds


async def test_a_failed_orders_timeline_shows_its_compensations(api: Api) -> None:
    uid, auth, gid, cid = await _scene(api)
    r = await api.c.post("/admin/faults", json={"point": "order.after_use_coupon", "action": "error", "times": 1},
                         headers=api.admin)
    assert r.status_code == 200, r.text
    failed = await api.confirm(auth, order_json(uid, gid, "5000.00", coupon_id=cid, money_paid="100.00"))
    assert failed.status_code == 503, failed.text
    order_id = failed.json()["data"]["orderId"]
    await quiet_api(api)
    events = await _timeline(api, order_id)
    kinds = _kinds(events)
    for kind in ("order.saved", "goods.stock_reduced", "coupon.used", "order.cancelled", "goods.stock_restored",
                 "coupon.restored", "barrier", "message.sent"):
        assert kind in kinds, (kind, kinds)
    # The balance was never paid: its compensation found nothing, and left the barrier.
    barrier = next(e for e in events if e["kind"] == "barrier")
    assert barrier["service"] == "user" and barrier["detail"]["userId"] == uid
    assert "user.money_paid" not in kinds and "order.confirmed" not in kinds
    at = {e["kind"]: e["at"] for e in events}
    assert at["goods.stock_reduced"] <= at["order.cancelled"] <= at["goods.stock_restored"], at
    sent = [e for e in events if e["kind"] == "message.sent"]
    assert [e["detail"]["tag"] for e in sent] == ["cancel"]
    handled = {e["detail"]["group"] for e in events if e["kind"] == "message.handled"}
    assert {"goods-order-group", "coupon-order-group", "user-order-group", "order-order-group"} <= handled


async def test_a_message_parked_dead_is_on_the_timeline(api: Api) -> None:
    uid, auth, gid, _ = await _scene(api)
    for point, times in (("goods.on_order_cancel", None), ("order.after_reduce_stock", 1)):
        r = await api.c.post("/admin/faults", json={"point": point, "action": "error", "times": times},
                             headers=api.admin)
        assert r.status_code == 200, r.text
    try:
        failed = await api.confirm(auth, order_json(uid, gid, "5000.00"))
        assert failed.status_code == 503, failed.text
        order_id = failed.json()["data"]["orderId"]

        async def dead() -> list[dict[str, Any]] | None:
            events = await _timeline(api, order_id)
            return events if "message.dead" in _kinds(events) else None

        events = await until(dead, 30.0)
        assert events, "the parked message never showed on the timeline"
        parked = next(e for e in events if e["kind"] == "message.dead")
        assert parked["detail"]["group"] == "goods-order-group" and parked["detail"]["tag"] == "cancel"
        assert "goods.stock_restored" not in _kinds(events)
    finally:
        assert (await api.c.delete("/admin/faults", headers=api.admin)).status_code == 200
    assert (await api.c.post(f"/admin/messages/{parked['detail']['id']}/replay", headers=api.admin)).status_code == 200
    assert (await quiet_api(api))["consistent"]
    assert "goods.stock_restored" in _kinds(await _timeline(api, order_id))


async def test_bad_timeline_requests_are_4xx(api: Api) -> None:
    uid, auth, gid, _ = await _scene(api)
    order_id = (await api.confirm(auth, order_json(uid, gid, "5000.00"))).json()["data"]["orderId"]
    r = await api.c.get("/admin/orders/123456789/timeline", headers=api.admin)
    assert r.status_code == 404 and r.json()["code"] == "SHOP_ORDER_NO_EXIST", r.text
    r = await api.c.get("/admin/orders/abc/timeline", headers=api.admin)
    assert r.status_code == 422 and r.json()["code"] == "SHOP_REQUEST_PARAMETER_VALID", r.text
    r = await api.c.get(f"/admin/orders/{order_id}/timeline", headers=auth)  # a user's own order, a user's token
    assert r.status_code == 401 and r.json()["code"] == "SHOP_USER_NOT_AUTHORIZED", r.text
