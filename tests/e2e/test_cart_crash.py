"""A cart's order killed mid-saga (a real `shop run`, "crash" fault), restarted on the same data dir:
the armed cancel gives back every line's stock, the coupon and the balance (tests/e2e/test_crash.py
for the single-goods order and the machinery)."""
from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.e2e.test_crash import (  # noqa: F401 - shop_proc: test_crash's fixture, the same real process
    ACTED_WITHIN_S,
    CANCEL_AFTER_S,
    CRASH_EXIT,
    SLACK_S,
    Api,
    ShopProcess,
    _read_one,
    armed_cancels,
    read_orders,
    shop_proc,
    wait_for,
)
from tests.support import cart_json

PRICES = ("1000.00", "250.50", "30.00")
UNITS = (2, 3, 1)
STOCK = 10
# What the participants hold when the process dies at each point: (every line taken, balance in
# cents, coupon is_used). The goods step is one transaction: every line or none.
POINTS = {
    "order.after_pre_order": (False, 10000, 0),
    "order.after_reduce_stock": (True, 10000, 0),
    "order.after_use_coupon": (True, 10000, 1),
    "order.after_reduce_money": (True, 0, 1),
    "order.before_confirm": (True, 0, 1),
}


class CartWorld:
    """A user with 100.00 and a 100.00 coupon, three goods with 10 each, and a cart of all three."""

    def __init__(self, api: Api) -> None:
        self.user_id = api.post_admin(
            "/admin/users", {"userName": "cart-crash-user", "userPassword": "secret", "userMoney": "100.00"}
        )["userId"]
        self.goods = [api.post_admin("/admin/goods", {"goodsName": f"goods-{i}", "goodsNumber": STOCK,
                                                      "goodsPrice": p})["goodsId"] for i, p in enumerate(PRICES)]
        self.coupon_id = api.post_admin("/admin/coupons", {"userId": self.user_id, "couponPrice": "100.00"})["couponId"]
        with api.sp.client() as c:
            token = api._ok(c.post("/user/login", json={"userName": "cart-crash-user", "userPassword": "secret"}))
        self.auth = {"Authorization": f"Bearer {token['token']}"}

    def order(self) -> dict[str, Any]:
        lines = [(g, p, n) for g, p, n in zip(self.goods, PRICES, UNITS, strict=True)]
        return cart_json(self.user_id, lines, coupon_id=self.coupon_id, money_paid="100.00")

    def state(self, api: Api) -> tuple[list[int], str, int]:
        """(each goods' stock, balance, coupon isUsed), as the operator sees them."""
        return ([api.get_admin(f"/admin/goods/{g}")["goodsNumber"] for g in self.goods],
                api.get_admin(f"/admin/users/{self.user_id}")["userMoney"],
                api.get_admin(f"/admin/coupons/{self.coupon_id}")["isUsed"])

    def on_disk(self, data_dir: Any) -> tuple[list[int], int, int]:
        """The same, from each service's own file, while the process is down (balance in cents)."""
        return ([_read_one(data_dir / "goods.db", "SELECT goods_number FROM trade_goods WHERE goods_id = ?", int(g))
                 for g in self.goods],
                _read_one(data_dir / "user.db", "SELECT user_money FROM trade_user WHERE user_id = ?",
                          int(self.user_id)),
                _read_one(data_dir / "coupon.db", "SELECT is_used FROM trade_coupon WHERE coupon_id = ?",
                          int(self.coupon_id)))


RESTORED = ([STOCK] * 3, "100.00", 0)


@pytest.mark.parametrize("point", list(POINTS))
def test_a_cart_crashed_mid_order_is_cancelled_after_restart_with_every_line_back(
    shop_proc: ShopProcess, point: str,  # noqa: F811 - the fixture imported above
) -> None:
    api = Api(shop_proc)
    w = CartWorld(api)
    assert w.state(api) == RESTORED
    api.arm(point, "crash")

    sent = time.monotonic()
    with shop_proc.client() as c, pytest.raises(httpx.TransportError):
        r = c.post("/order/confirm", json=w.order(), headers=w.auth)
        pytest.fail(f"the cart was answered although the process should have died: {r.status_code} {r.text}")
    assert shop_proc.wait_exit() == CRASH_EXIT, f"the process did not die of the injected crash\n{shop_proc.logs()}"

    orders = read_orders(shop_proc.data_dir)
    assert len(orders) == 1 and orders[0]["order_status"] == 0, orders
    order_id = orders[0]["order_id"]
    assert [(m["msg_tag"], m["msg_key"]) for m in armed_cancels(shop_proc.data_dir)] == [("cancel", str(order_id))]
    taken, cents, used = POINTS[point]
    # It died where it was told to, with every line taken or none.
    held = [STOCK - n for n in UNITS] if taken else [STOCK] * 3
    assert w.on_disk(shop_proc.data_dir) == (held, cents, used)

    shop_proc.start()  # no fault armed in this run
    deadline = max(sent + CANCEL_AFTER_S, shop_proc.ready_at) + ACTED_WITHIN_S + SLACK_S

    def settled() -> dict[str, Any] | None:
        if api.get_admin(f"/admin/orders/{order_id}")["orderStatus"] != 2 or w.state(api) != RESTORED:
            return None
        a = api.audit()
        return a if a["pending"] == 0 else None

    report = wait_for(f"cart {order_id} cancelled and every line given back", settled, deadline, shop_proc)
    assert report == {"consistent": True, "violations": [], "pending": 0}
    assert api.get_admin("/admin/messages?state=dead") == []
    assert armed_cancels(shop_proc.data_dir) == []
    order = api.get_admin(f"/admin/orders/{order_id}")
    assert [(i["goodsId"], i["goodsNumber"]) for i in order["items"]] == list(zip(w.goods, UNITS, strict=True))
    events = api.get_admin(f"/admin/orders/{order_id}/timeline")["events"]
    restored = {e["detail"]["goodsId"]: e["detail"]["amount"] for e in events if e["kind"] == "goods.stock_restored"}
    assert restored == ({g: str(n) for g, n in zip(w.goods, UNITS, strict=True)} if taken else {})
