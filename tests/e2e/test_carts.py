"""Carts over HTTP in every mode (API.md "Carts"): a cart's lines, its arithmetic over their sum,
its refusals (each naming the first line that failed, and changing nothing), a stock refusal found
at the goods step, cancel and refund giving every line back, and a failure at every point of the
saga undoing every line."""
from __future__ import annotations

import asyncio
import os
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from tests.e2e.test_api_contract import ID, MONEY, UNKNOWN_ID, failure, success
from tests.support import Api, cart_json, order_json, quiet_api, until

CLEAN = {"consistent": True, "violations": [], "pending": 0}
PRICES = ("1000.00", "250.50", "30.00")
STOCK = 10
# The saga's fault points, in its order (shop.services.order.handlers).
FAULT_POINTS = ["order.after_pre_order", "order.after_reduce_stock", "order.after_use_coupon",
                "order.after_reduce_money", "order.before_confirm"]


@pytest.fixture
def api(client) -> Api:
    from tests.conftest import ADMIN

    return Api(client, ADMIN)


@dataclass
class Buyer:
    """A user with 100.00 and a 100.00 coupon, and three goods (ids ascending) with 10 each."""

    user_id: str
    auth: dict[str, str]
    coupon_id: str
    goods: list[str]

    def lines(self, *numbers: int) -> list[tuple[str, str, int]]:
        """Lines (goods, price, units) of the first len(numbers) goods, with these units."""
        return [(g, p, n) for g, p, n in zip(self.goods, PRICES, numbers, strict=False)]


async def buyer(api: Api, stock: tuple[int, ...] = (STOCK,) * 3) -> Buyer:
    name = f"cart-{os.urandom(5).hex()}"
    uid = await api.create_user(name, "100.00")
    auth = await api.login(name)
    goods = [await api.create_goods(p, n, name=f"goods-{i}")
             for i, (p, n) in enumerate(zip(PRICES, stock, strict=True))]
    assert [int(g) for g in goods] == sorted(int(g) for g in goods)  # the lock order is the lines' order
    return Buyer(uid, auth, await api.create_coupon(uid, "100.00"), goods)


async def stocks(api: Api, goods: list[str]) -> list[int]:
    return [(await api.get(f"/admin/goods/{g}"))["goodsNumber"] for g in goods]


async def my_orders(api: Api, b: Buyer) -> list[dict[str, Any]]:
    return success(await api.c.get("/order?limit=100", headers=b.auth))["items"]


async def snapshot(api: Api, b: Buyer) -> tuple[Any, ...]:
    """Everything a cart may change: each goods' stock, the balance, the points, the coupon, the orders."""
    user = await api.get(f"/admin/users/{b.user_id}")
    coupon = await api.get(f"/admin/coupons/{b.coupon_id}")
    orders = [(o["orderId"], o["orderStatus"]) for o in await my_orders(api, b)]
    return (await stocks(api, b.goods), user["userMoney"], user["userScore"], coupon["isUsed"], coupon["orderId"],
            orders)


async def timeline(api: Api, order_id: str) -> list[dict[str, Any]]:
    return (await api.get(f"/admin/orders/{order_id}/timeline"))["events"]


def per_goods(events: list[dict[str, Any]], kind: str) -> dict[str, str]:
    """goodsId -> units, of the events of this kind; each goods at most once."""
    found = [(e["detail"]["goodsId"], e["detail"]["amount"]) for e in events if e["kind"] == kind]
    assert len({g for g, _ in found}) == len(found), found
    return dict(found)


def expected_items(lines: list[tuple[str, str, int]]) -> list[dict[str, Any]]:
    return [{"goodsId": g, "goodsNumber": n, "goodsPrice": p, "goodsAmount": f"{Decimal(p) * n:.2f}"}
            for g, p, n in lines]


# -- a cart confirmed ------------------------------------------------------------------------------


async def test_a_three_line_cart_is_confirmed_with_its_lines(api):
    b = await buyer(api)
    # The client's order is not the goods-id order: the answer keeps the client's.
    lines = b.lines(2, 3, 1)[::-1]
    order = success(await api.confirm(b.auth, cart_json(b.user_id, lines, coupon_id=b.coupon_id,
                                                        money_paid="100.00")))
    assert order["items"] == expected_items(lines)
    # 30.00 + 751.50 + 2000.00, above the free-shipping line
    assert (order["goodsAmount"], order["shippingFee"], order["orderAmount"]) == ("2781.50", "0.00", "2781.50")
    assert (order["couponPaid"], order["moneyPaid"], order["payAmount"]) == ("100.00", "100.00", "2581.50")
    assert order["orderStatus"] == 1 and ID.match(order["orderId"])
    # The original's columns hold the first line.
    assert (order["goodsId"], order["goodsNumber"], order["goodsPrice"]) == (b.goods[2], 1, "30.00")
    assert await stocks(api, b.goods) == [STOCK - 2, STOCK - 3, STOCK - 1]
    assert success(await api.c.get(f"/order/{order['orderId']}", headers=b.auth)) == order
    assert await api.get(f"/admin/orders/{order['orderId']}") == order
    assert await my_orders(api, b) == [order]
    assert await quiet_api(api) == CLEAN
    taken = per_goods(await timeline(api, order["orderId"]), "goods.stock_reduced")
    assert taken == {b.goods[0]: "2", b.goods[1]: "3", b.goods[2]: "1"}


async def test_a_small_cart_pays_shipping_on_the_sum_of_its_lines(api):
    b = await buyer(api)
    cheap = [await api.create_goods(p, 5) for p in ("20.00", "30.00", "45.50")]
    lines = [(cheap[0], "20.00", 1), (cheap[1], "30.00", 1), (cheap[2], "45.50", 1)]
    body = cart_json(b.user_id, lines)
    del body["moneyPaid"]
    order = success(await api.confirm(b.auth, body))
    # 95.50 is at or below the free-shipping line although no line is near it
    assert (order["goodsAmount"], order["shippingFee"], order["orderAmount"], order["payAmount"]) == (
        "95.50", "10.00", "105.50", "105.50")
    for item in order["items"]:
        assert MONEY.match(item["goodsPrice"]) and MONEY.match(item["goodsAmount"])
    # The shipping fee of one line's amount is refused: it is the sum's.
    wrong = cart_json(b.user_id, lines, shippingFee="0.00", orderAmount="95.50")
    failure(await api.confirm(b.auth, wrong), (400, 422), "SHOP_ORDER_SHIPPINGFEE_INVALID")
    assert await stocks(api, cheap) == [4, 4, 4]


async def test_the_single_goods_form_answers_exactly_one_line(api):
    b = await buyer(api)
    order = success(await api.confirm(b.auth, order_json(b.user_id, b.goods[1], "250.50", 3)))
    assert order["items"] == expected_items([(b.goods[1], "250.50", 3)])
    assert (order["goodsId"], order["goodsNumber"], order["goodsAmount"]) == (b.goods[1], 3, "751.50")
    assert success(await api.c.get(f"/order/{order['orderId']}", headers=b.auth))["items"] == order["items"]
    assert (await my_orders(api, b))[0]["items"] == order["items"]
    assert await stocks(api, b.goods) == [STOCK, STOCK - 3, STOCK]


# -- refusals ------------------------------------------------------------------------------------


def _twenty_one(b: Buyer) -> dict[str, Any]:
    return cart_json(b.user_id, [(str(int(UNKNOWN_ID) + i), "1.00", 1) for i in range(21)])


def _both(b: Buyer) -> dict[str, Any]:
    return {**cart_json(b.user_id, b.lines(1, 1, 1)), "goodsId": b.goods[0], "goodsNumber": 1,
            "goodsPrice": PRICES[0]}


def _neither(b: Buyer) -> dict[str, Any]:
    body = cart_json(b.user_id, b.lines(1, 1, 1))
    del body["items"]
    return body


def _line2(b: Buyer, **change: Any) -> dict[str, Any]:
    body = cart_json(b.user_id, b.lines(1, 1, 1), coupon_id=b.coupon_id, money_paid="50.00")
    body["items"][1].update(change)
    return body


# (id, the body, status(es), code, the line's goods named in data.goodsId: an index into b.goods,
# "unknown", or None for a refusal of the request's shape, which names its field in the message)
CASES: list[tuple[str, Any, Any, str, Any]] = [
    ("no lines", lambda b: cart_json(b.user_id, []), 422, "SHOP_REQUEST_PARAMETER_VALID", None),
    ("21 lines", _twenty_one, 422, "SHOP_REQUEST_PARAMETER_VALID", None),
    ("the same goods twice", lambda b: cart_json(b.user_id, [*b.lines(1, 1), b.lines(2)[0]]), 422,
     "SHOP_REQUEST_PARAMETER_VALID", 0),  # line 3 repeats line 1's goods
    ("zero units on line 2", lambda b: _line2(b, goodsNumber=0), 422, "SHOP_REQUEST_PARAMETER_VALID", "items.1"),
    ("negative units on line 2", lambda b: _line2(b, goodsNumber=-2), 422, "SHOP_REQUEST_PARAMETER_VALID",
     "items.1"),
    ("both forms", _both, 422, "SHOP_REQUEST_PARAMETER_VALID", None),
    ("neither form", _neither, 422, "SHOP_REQUEST_PARAMETER_VALID", None),
    ("a line without a price", lambda b: _line2(b, goodsPrice=None), 422, "SHOP_REQUEST_PARAMETER_VALID",
     "items.1"),
    ("wrong price on line 2", lambda b: cart_json(b.user_id, [*b.lines(1), (b.goods[1], "250.49", 1),
                                                              (b.goods[2], PRICES[2], 1)]),
     (400, 422), "SHOP_GOODS_PRICE_INVALID", 1),
    ("unknown goods on line 3", lambda b: cart_json(b.user_id, [*b.lines(1, 1), (UNKNOWN_ID, "1.00", 1)]),
     404, "SHOP_GOODS_NO_EXIST", "unknown"),
    ("wrong price on 2 and unknown goods on 3: line 2 is named",
     lambda b: cart_json(b.user_id, [*b.lines(1), (b.goods[1], "1.00", 1), (UNKNOWN_ID, "1.00", 1)]),
     (400, 422), "SHOP_GOODS_PRICE_INVALID", 1),
    ("more units than in stock on line 2", lambda b: cart_json(b.user_id, b.lines(1, STOCK + 1, 1)), 409,
     "SHOP_GOODS_NUM_NOT_ENOUGH", 1),
    ("an order amount that is not the sum's", lambda b: cart_json(b.user_id, b.lines(1, 1, 1),
                                                                   orderAmount="1280.49"),
     (400, 422), "SHOP_ORDERAMOUNT_INVALID", None),
    ("a balance payment above the balance", lambda b: cart_json(b.user_id, b.lines(1, 1, 1), money_paid="100.01"),
     409, "SHOP_MONEY_PAID_INVALID", None),
]


STEP_REFUSALS = {"SHOP_GOODS_NO_EXIST", "SHOP_GOODS_PRICE_INVALID", "SHOP_GOODS_NUM_NOT_ENOUGH",
                 "SHOP_MONEY_PAID_INVALID"}


@pytest.mark.parametrize(("make", "status", "code", "names"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_a_bad_cart_is_refused_and_changes_nothing(api, make, status, code, names):
    b = await buyer(api)
    before = await snapshot(api, b)
    assert before == ([STOCK] * 3, "100.00", 0, 0, None, [])
    body = failure(await api.confirm(b.auth, make(b)), status, code)
    data = body["data"] or {}
    # The goods and the balance are the steps' to check (no read before them): such a refusal
    # comes after the pre-order, which ends cancelled; any other is refused before anything is saved.
    saved = data.get("orderId")
    assert (saved is not None) == (code in STEP_REFUSALS), body
    if isinstance(names, int):
        assert data["goodsId"] == b.goods[names], body
    elif names == "unknown":
        assert data["goodsId"] == UNKNOWN_ID, body
    else:
        assert "goodsId" not in data, body
        if names is not None:  # a field of the request's shape: the message names the line
            assert names in body["message"], body
    if code == "SHOP_GOODS_NUM_NOT_ENOUGH":
        assert data["goodsNumber"] == STOCK, body  # the units left
    after = await snapshot(api, b)
    assert after[:-1] == before[:-1] and after[-1] == ([(saved, 2)] if saved else [])
    assert await quiet_api(api) == CLEAN


async def test_a_stock_refusal_at_the_goods_step_names_its_line_and_takes_no_other(api):
    """Line 2's stock goes between the cart's validation and its goods step (the cart is held after
    its pre-order): the goods step takes line 1 (first in goods-id order), is refused at line 2, and
    its transaction takes back line 1; line 3 is never reached. The cart's refusal names line 2."""
    b = await buyer(api, stock=(STOCK, 2, STOCK))
    rival = await buyer(api)
    armed = await api.c.post("/admin/faults", headers=api.admin,
                             json={"point": "order.after_pre_order", "action": "delay", "delayMs": 1000, "times": 1})
    success(armed)
    held = asyncio.create_task(api.confirm(b.auth, cart_json(b.user_id, b.lines(1, 2, 1))))

    async def saved() -> list[dict[str, Any]]:
        return await my_orders(api, b)
    pre = await until(saved, 10.0)
    assert [o["orderStatus"] for o in pre] == [0], pre  # saved, not yet confirmed: held at the fault
    # Another buyer takes one of line 2's two units meanwhile.
    success(await api.confirm(rival.auth, order_json(rival.user_id, b.goods[1], PRICES[1], 1)))
    assert not held.done()  # the race happened: line 2 changed after the cart's validation
    body = failure(await held, 409, "SHOP_GOODS_NUM_NOT_ENOUGH")
    assert body["data"]["goodsId"] == b.goods[1] and body["data"]["orderId"] == pre[0]["orderId"], body
    assert await quiet_api(api) == CLEAN
    assert await stocks(api, b.goods) == [STOCK, 1, STOCK]
    assert (await api.get(f"/admin/orders/{pre[0]['orderId']}"))["orderStatus"] == 2
    # The goods' ledger never recorded a unit taken for this order, of any line.
    assert per_goods(await timeline(api, pre[0]["orderId"]), "goods.stock_reduced") == {}


# -- undoing a cart --------------------------------------------------------------------------------


async def _placed(api: Api, b: Buyer) -> dict[str, Any]:
    order = success(await api.confirm(b.auth, cart_json(b.user_id, b.lines(2, 3, 1), coupon_id=b.coupon_id,
                                                        money_paid="100.00")))
    assert await stocks(api, b.goods) == [STOCK - 2, STOCK - 3, STOCK - 1]
    return order


async def _every_line_back(api: Api, b: Buyer, order: dict[str, Any]) -> None:
    assert await quiet_api(api) == CLEAN
    assert await stocks(api, b.goods) == [STOCK] * 3
    user = await api.get(f"/admin/users/{b.user_id}")
    assert (user["userMoney"], user["userScore"]) == ("100.00", 0)
    assert (await api.get(f"/admin/coupons/{b.coupon_id}"))["isUsed"] == 0
    events = await timeline(api, order["orderId"])
    lines = {b.goods[0]: "2", b.goods[1]: "3", b.goods[2]: "1"}
    assert per_goods(events, "goods.stock_reduced") == lines
    assert per_goods(events, "goods.stock_restored") == lines


async def test_the_owner_cancels_a_cart_and_every_line_comes_back(api):
    b = await buyer(api)
    order = await _placed(api, b)
    r = await api.c.post(f"/order/{order['orderId']}/cancel", headers=b.auth)
    assert success(r)["orderStatus"] == 2 and success(r)["items"] == order["items"]
    await _every_line_back(api, b, order)


async def test_a_paid_cart_is_refunded_and_every_line_comes_back(api):
    b = await buyer(api)
    order = await _placed(api, b)
    r = await api.c.post("/pay/createPayment", json={"orderId": order["orderId"], "payAmount": order["payAmount"]},
                         headers=b.auth)
    payment = success(r)
    assert (await api.c.post(f"/sandbox/pay/{payment['payId']}")).status_code == 200

    async def paid() -> bool:
        return (await api.get(f"/admin/orders/{order['orderId']}"))["payStatus"] == 2
    assert await until(paid, 15.0)
    assert await quiet_api(api) == CLEAN
    assert (await api.get(f"/admin/users/{b.user_id}"))["userScore"] == 2581
    r = await api.c.post(f"/order/{order['orderId']}/refund", headers=b.auth)
    assert success(r)["orderStatus"] == 4
    await _every_line_back(api, b, order)
    assert (await api.get(f"/admin/payments/{payment['payId']}"))["isRefunded"] == 1


@pytest.mark.parametrize("point", FAULT_POINTS)
async def test_a_cart_failing_at_each_point_of_the_saga_is_undone(api, point):
    b = await buyer(api)
    before = await snapshot(api, b)
    success(await api.c.post("/admin/faults", headers=api.admin, json={"point": point, "action": "error", "times": 1}))
    body = failure(await api.confirm(b.auth, cart_json(b.user_id, b.lines(2, 3, 1), coupon_id=b.coupon_id,
                                                       money_paid="100.00")), 503, "SHOP_SERVICE_UNAVAILABLE")
    order_id = body["data"]["orderId"]
    assert await quiet_api(api) == CLEAN
    order = await api.get(f"/admin/orders/{order_id}")
    assert order["orderStatus"] == 2 and order["confirmTime"] is None
    assert order["items"] == expected_items(b.lines(2, 3, 1))
    assert await snapshot(api, b) == ([STOCK] * 3, *before[1:5], [(order_id, 2)])
    events = await timeline(api, order_id)
    taken = per_goods(events, "goods.stock_reduced")
    # Every line was taken in one step, or none was; whatever was taken came back.
    assert taken == ({} if point == "order.after_pre_order" else {b.goods[0]: "2", b.goods[1]: "3", b.goods[2]: "1"})
    assert per_goods(events, "goods.stock_restored") == taken
    assert Counter(e["kind"] for e in events)["order.cancelled"] == 1
