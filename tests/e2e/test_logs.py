"""SHOP_LOG_FORMAT=json: `shop run` writes one JSON object a line, with the process's `service` and,
on the lines about an order, its `orderId`; a failed login and a failing delivery are logged, and
the access log is there when asked for (SHOP_ACCESS_LOG=1)."""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_crash import ADMIN, ShopProcess


@pytest.fixture
def json_shop(tmp_path: Path) -> Iterator[ShopProcess]:
    sp = ShopProcess(tmp_path / "data")
    sp.env.update(SHOP_LOG_FORMAT="json", SHOP_ACCESS_LOG="1")
    sp.start()
    try:
        yield sp
    finally:
        sp.stop()


def _lines(sp: ShopProcess) -> list[dict[str, Any]]:
    text = sp.log.read_text(errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # every line is one JSON object


def test_json_lines_carry_the_service_and_the_order(json_shop: ShopProcess) -> None:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    with json_shop.client() as c:
        uid = c.post("/admin/users", json={"userName": "logs", "userPassword": "secret", "userMoney": "100.00"},
                     headers=admin).json()["data"]["userId"]
        gid = c.post("/admin/goods", json={"goodsName": "g", "goodsNumber": 5, "goodsPrice": "10.00"},
                     headers=admin).json()["data"]["goodsId"]
        assert c.post("/user/login", json={"userName": "logs", "userPassword": "wrong-password"}).status_code == 401
        token = c.post("/user/login", json={"userName": "logs", "userPassword": "secret"}).json()["data"]["token"]
        for point in ("order.after_reduce_stock", "goods.on_order_cancel"):
            assert c.post("/admin/faults", json={"point": point, "action": "error", "times": 1},
                          headers=admin).status_code == 200
        body = {"userId": uid, "goodsId": gid, "goodsNumber": 1, "goodsPrice": "10.00", "shippingFee": "10.00",
                "orderAmount": "20.00", "address": "x"}
        r = c.post("/order/confirm", json=body, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 503, r.text
        order_id = r.json()["data"]["orderId"]
    end = time.monotonic() + 10
    while True:
        lines = _lines(json_shop)
        about = [line for line in lines if line.get("orderId") == order_id]
        if about or time.monotonic() > end:
            break
        time.sleep(0.2)
    assert lines and all(line["service"] == "shop" and line["level"] and line["message"] for line in lines)
    failed_login = [line for line in lines if "failed login" in line["message"]]
    assert failed_login and failed_login[0]["level"] == "WARNING" and "wrong-password" not in json.dumps(lines)
    assert about, "no line carries the failed order's id"
    assert any("goods-order-group failed" in line["message"] for line in about)
    assert any(line["logger"] == "uvicorn.access" and "/order/confirm" in line["message"] for line in lines)
