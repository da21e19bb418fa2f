"""Dead messages over HTTP, in every mode: a consumer that keeps failing parks the message dead
(listed by /admin/messages, reported by the audit); once it is fixed, a replay settles it."""
from __future__ import annotations

import os
from typing import Any

import pytest

from tests.conftest import ADMIN
from tests.support import Api, order_json, quiet_api, until


@pytest.fixture
def api(client) -> Api:
    return Api(client, ADMIN)


async def _arm(api: Api, point: str, times: int | None = None) -> None:
    r = await api.c.post("/admin/faults", json={"point": point, "action": "error", "times": times}, headers=api.admin)
    assert r.status_code == 200, r.text


async def test_a_failing_consumer_parks_the_message_dead_and_a_replay_settles_it(api: Api) -> None:
    name = f"dead-{os.urandom(4).hex()}"
    uid = await api.create_user(name, "100.00")
    auth = await api.login(name)
    gid = await api.create_goods("10.00", 5)
    try:
        await _arm(api, "goods.on_order_cancel")  # the goods service cannot undo anything
        await _arm(api, "order.after_reduce_stock", times=1)  # and this order fails after taking stock
        r = await api.confirm(auth, order_json(uid, gid, "10.00"))
        assert r.status_code == 503, r.text
        order_id = r.json()["data"]["orderId"]

        async def parked() -> dict[str, Any] | None:
            dead = await api.get("/admin/messages?state=dead")
            return next((d for d in dead if d["key"] == order_id), None)

        message = await until(parked, 20.0)
        assert message is not None, "the cancel was never parked dead"
        assert message["tag"] == "cancel" and message["group"] == "goods-order-group", message
        assert message["attempts"] == 4 and "injected fault" in (message["lastError"] or ""), message
        assert (await api.get(f"/admin/goods/{gid}"))["goodsNumber"] == 4  # not given back
        audit = await api.get("/admin/audit")
        assert not audit["consistent"] and any(order_id in v and "dead" in v for v in audit["violations"]), audit
    finally:
        r = await api.c.delete("/admin/faults", headers=api.admin)
        assert r.status_code == 200, r.text

    r = await api.c.post(f"/admin/messages/{message['id']}/replay", headers=api.admin)
    assert r.status_code == 200 and r.json()["data"] == {"id": message["id"], "state": "ready"}, r.text

    async def given_back() -> bool:
        return (await api.get(f"/admin/goods/{gid}"))["goodsNumber"] == 5 and await parked() is None

    assert await until(given_back, 20.0), (
        await api.get(f"/admin/goods/{gid}"), await api.get("/admin/messages?state=dead")
    )

    assert await quiet_api(api, 20.0) == {"consistent": True, "violations": [], "pending": 0}
    # Replayed once: it is no longer there to replay.
    r = await api.c.post(f"/admin/messages/{message['id']}/replay", headers=api.admin)
    assert r.status_code == 404 and r.json()["code"] == "SHOP_MESSAGE_NO_EXIST", r.text


# Ids no broker of ours lists: each is a 404, on the embedded broker and on RabbitMQ alike (where an
# id names a consumer group; one that is no group of ours once got a 500).
@pytest.mark.parametrize("bad", ["1", "no-group:1", "goods-order-group:nope", "%F1%B8%A9%B4%C3%99%18P%3D", "x" * 201])
async def test_replaying_an_unknown_message_is_a_404(api: Api, bad: str) -> None:
    r = await api.c.post(f"/admin/messages/{bad}/replay", headers=api.admin)
    assert r.status_code == 404 and r.json()["code"] == "SHOP_MESSAGE_NO_EXIST", r.text


async def test_the_message_lists_answer_by_state(api: Api) -> None:
    for state in ("dead", "retrying"):
        r = await api.c.get(f"/admin/messages?state={state}", headers=api.admin)
        assert r.status_code == 200 and isinstance(r.json()["data"], list), r.text
        assert all(m["state"] == state for m in r.json()["data"])
    r = await api.c.get("/admin/messages?state=bogus", headers=api.admin)
    assert r.status_code == 422 and r.json()["code"] == "SHOP_REQUEST_PARAMETER_VALID", r.text
    r = await api.c.post("/admin/messages/424242/replay", headers=api.admin)
    assert r.status_code == 404 and r.json()["code"] == "SHOP_MESSAGE_NO_EXIST", r.text
