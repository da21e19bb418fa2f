"""The console's overview over HTTP, in every mode: the order service counts its own orders of the
last minutes by outcome (over gRPC in the distributed mode), the broker its queues."""
from __future__ import annotations

import os
import re
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.conftest import ADMIN
from tests.support import Api, order_json, quiet_api


@pytest.fixture
def api(client) -> Api:
    return Api(client, ADMIN)


async def _overview(api: Api, minutes: int = 60) -> dict[str, Any]:
    data = await api.get(f"/admin/overview?minutes={minutes}")
    per_minute = data["perMinute"]
    assert len(per_minute) == minutes
    starts = [datetime.fromisoformat(m["at"].removesuffix("Z")) for m in per_minute]
    assert all(b - a == timedelta(minutes=1) for a, b in zip(starts, starts[1:], strict=False))  # oldest first
    assert starts[-1] <= datetime.utcnow() < starts[-1] + timedelta(minutes=1, seconds=5)  # ends now
    assert data["confirmed"] == sum(m["confirmed"] for m in per_minute)
    assert data["failed"] == sum(m["failed"] for m in per_minute)
    return data


async def test_the_overview_counts_orders_by_outcome_and_their_compensations(api: Api) -> None:
    await quiet_api(api)
    before = await _overview(api)
    name = f"overview-{os.urandom(4).hex()}"
    uid = await api.create_user(name, "100.00")
    auth, gid = await api.login(name), await api.create_goods("5000.00", 10)
    placed = await api.confirm(auth, order_json(uid, gid, "5000.00"))
    assert placed.status_code == 200, placed.text
    r = await api.c.post("/admin/faults", json={"point": "order.after_reduce_stock", "action": "error", "times": 1},
                         headers=api.admin)
    assert r.status_code == 200, r.text
    failed = await api.confirm(auth, order_json(uid, gid, "5000.00"))
    assert failed.status_code == 503, failed.text
    await quiet_api(api)
    after = await _overview(api)
    assert after["confirmed"] - before["confirmed"] == 1
    assert after["failed"] - before["failed"] == 1
    assert after["compensations"] - before["compensations"] == 1  # the failed order, undone
    assert after["pending"] == 0 and after["unconfirmed"] == 0 and after["dead"] == 0


async def test_bad_overview_requests_are_4xx(api: Api) -> None:
    for minutes in ("0", "181", "x", "1.5"):
        r = await api.c.get(f"/admin/overview?minutes={minutes}", headers=api.admin)
        assert r.status_code == 422 and r.json()["code"] == "SHOP_REQUEST_PARAMETER_VALID", r.text
    r = await api.c.get("/admin/overview", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401, r.text
    assert len((await api.get("/admin/overview"))["perMinute"]) == 60  # the default window


async def test_the_console_and_its_assets_are_served_by_the_front_door(api: Api) -> None:
    page = await api.c.get("/console")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in re.findall(r'(?:href|src)="(/console/[^"]+)"', page.text) + ["/console/static/timeline.js",
                                                                               "/console/vendor/uplot/uPlot.esm.js"]:
        r = await api.c.get(asset)
        assert r.status_code == 200, asset
