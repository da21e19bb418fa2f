"""The order placement saga on every backend: the original's scenario, rejections, concurrency."""
import asyncio

import pytest

from shop.common.codes import ShopCode
from shop.common.errors import ShopError
from shop.services.order.contracts import Order
from shop.services.order.domain import OrderStatus
from tests.support import D, place, quiet, state, until, world

pytestmark = pytest.mark.all_backends

# How long an order is held after its validation and pre-order (the `order.after_pre_order` delay
# fault). RACE_MS: longer than it takes every racer to get there on any backend. HOLD_MS: longer than
# another whole order takes.
RACE_MS = 1000
HOLD_MS = 1000


async def test_the_original_scenario(shop):
    w = await world(shop, money="100.00", stock=10, price="5000.00", coupon="100.00")
    cmd = place(w.user_id, w.goods_id, w.price, coupon_id=w.coupon_id, money_paid="100.00")
    order = await shop.orders.confirm_order(cmd)
    assert order.order_status == OrderStatus.CONFIRMED
    assert order.pay_amount == D("4800.00")
    assert order.shipping_fee == D("0.00") and order.order_amount == D("5000.00")
    assert await state(shop, w) == (9, D("0.00"), 1)
    coupon = await shop.coupons.find_coupon(w.coupon_id)
    assert coupon.order_id == order.order_id
    stored = await shop.orders.find_order(order.order_id)
    assert stored.order_status == OrderStatus.CONFIRMED and stored.confirm_time is not None
    assert (await quiet(shop))["consistent"]


async def test_small_order_pays_shipping(shop):
    w = await world(shop, price="30.00", coupon=None)
    order = await shop.orders.confirm_order(place(w.user_id, w.goods_id, w.price, 2))
    assert (order.goods_amount, order.shipping_fee, order.order_amount) == (D("60.00"), D("10.00"), D("70.00"))


async def test_stock_shortage_found_at_the_update_cancels_and_restores(shop):
    w = await world(shop, stock=2, price="10.00", money="500.00", coupon=None)
    # The first order passes validation (2 in stock) and saves its pre-order, then waits; meanwhile a
    # second order takes a unit. The first finds the shortage at the stock update, not at validation.
    shop.faults.arm("order.after_pre_order", "delay", times=1, delay_ms=HOLD_MS)
    held = asyncio.create_task(shop.orders.confirm_order(place(w.user_id, w.goods_id, w.price, 2, money_paid="30.00")))
    assert await until(lambda: _saved(shop, 1))
    second = await shop.orders.confirm_order(place(w.user_id, w.goods_id, w.price, money_paid="20.00"))
    assert second.order_status == OrderStatus.CONFIRMED
    assert not held.done()  # the stock changed between the first order's validation and its step
    with pytest.raises(ShopError) as e:
        await held
    assert e.value.code == ShopCode.SHOP_GOODS_NUM_NOT_ENOUGH
    order_id = int(e.value.data["orderId"])  # only a failure after the pre-order carries it
    assert (await shop.orders.find_order(order_id)).order_status == OrderStatus.CANCELLED
    assert await state(shop, w) == (1, D("480.00"), None)  # the second order's unit and 20.00, nothing else
    report = await quiet(shop)
    assert report == {"consistent": True, "violations": [], "pending": 0}


async def _orders(shop) -> dict:
    """Every order the order service has saved, by id."""
    return (await shop.orders.audit_facts()).orders


async def _saved(shop, n: int) -> bool:
    return len(await _orders(shop)) >= n


async def race(shop, orders: list) -> tuple[list[Order], list[ShopError]]:
    """Place the orders at once, each held after its validation and pre-order for RACE_MS, so that all
    pass validation before any takes stock, a coupon or a balance: only the participants' conditional
    updates decide who wins. Returns the winners and the losers' errors."""
    shop.faults.arm("order.after_pre_order", "delay", delay_ms=RACE_MS)
    try:
        results = await asyncio.gather(*(shop.orders.confirm_order(o) for o in orders), return_exceptions=True)
    finally:
        shop.faults.clear()
    won = [r for r in results if isinstance(r, Order)]
    lost = [r for r in results if not isinstance(r, Order)]
    assert all(isinstance(e, ShopError) for e in lost), lost
    saved = await _orders(shop)
    # Every order passed validation (a refusal there saves nothing), and every loser failed after its
    # pre-order, at a participant's update: its error names the order, which was cancelled.
    assert len(saved) == len(orders)
    confirmed = sorted(i for i, o in saved.items() if o.order_status == OrderStatus.CONFIRMED)
    cancelled = sorted(i for i, o in saved.items() if o.order_status == OrderStatus.CANCELLED)
    assert sorted(o.order_id for o in won) == confirmed
    assert sorted(int((e.data or {}).get("orderId", 0)) for e in lost) == cancelled, lost
    return won, lost


@pytest.mark.shop_settings(order_cancel_after_s=30.0)  # no deadline may cancel a winner held by the race
async def test_forty_buyers_for_seven_units(shop):
    w = await world(shop, stock=7, price="10.00", coupon=None)
    buyers = [await world(shop, money="20.00", coupon=None) for _ in range(40)]
    won, lost = await race(shop, [place(b.user_id, w.goods_id, w.price, money_paid="20.00") for b in buyers])
    assert len(won) == 7
    assert [e.code for e in lost] == [ShopCode.SHOP_GOODS_NUM_NOT_ENOUGH] * 33
    report = await quiet(shop)
    assert report == {"consistent": True, "violations": [], "pending": 0}
    assert (await shop.goods.find_goods(w.goods_id)).goods_number == 0
    winners = {o.user_id for o in won}
    for b in buyers:
        money = (await shop.users.find_user(b.user_id)).user_money
        assert money == (D("0.00") if b.user_id in winners else D("20.00"))


@pytest.mark.shop_settings(order_cancel_after_s=30.0)
async def test_one_coupon_in_ten_simultaneous_orders(shop):
    w = await world(shop, stock=20, price="200.00", coupon="50.00")
    won, lost = await race(shop, [place(w.user_id, w.goods_id, w.price, coupon_id=w.coupon_id) for _ in range(10)])
    assert len(won) == 1
    assert [e.code for e in lost] == [ShopCode.SHOP_COUPON_INVALID] * 9
    report = await quiet(shop)
    assert report == {"consistent": True, "violations": [], "pending": 0}
    assert (await shop.goods.find_goods(w.goods_id)).goods_number == 19  # the losers' stock came back
    assert (await shop.coupons.find_coupon(w.coupon_id)).order_id == won[0].order_id


@pytest.mark.shop_settings(order_cancel_after_s=30.0)
async def test_no_overdraft_under_concurrent_orders(shop):
    w = await world(shop, money="100.00", stock=50, price="20.00", coupon=None)
    won, lost = await race(shop, [place(w.user_id, w.goods_id, w.price, money_paid="30.00") for _ in range(10)])
    assert len(won) == 3  # 3 x 30 <= 100 < 4 x 30
    assert [e.code for e in lost] == [ShopCode.SHOP_MONEY_PAID_INVALID] * 7
    report = await quiet(shop)
    assert report == {"consistent": True, "violations": [], "pending": 0}
    assert await state(shop, w) == (47, D("10.00"), None)  # the losers' stock came back
