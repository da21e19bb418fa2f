"""The order placement saga on every backend: the original's scenario, rejections, concurrency."""
import asyncio

import pytest

from shop.common.codes import ShopCode
from shop.common.errors import ShopError
from shop.services.order.domain import OrderStatus
from tests.support import D, place, quiet, state, world

pytestmark = pytest.mark.all_backends


async def test_the_original_scenario(shop):
    w = await world(shop, money="100.00", stock=10, price="5000.00", coupon="100.00")
    order = await shop.orders.confirm_order(
        place(w.user_id, w.goods_id, w.price, coupon_id=w.coupon_id, money_paid="100.00")
    )
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
    w = await world(shop, stock=1, money="500.00")
    # Take the last unit behind the order service's back, after its validation would pass.
    first = await shop.orders.confirm_order(
        place(w.user_id, w.goods_id, w.price, coupon_id=w.coupon_id, money_paid="50.00")
    )
    assert first.order_status == 1
    with pytest.raises(ShopError) as e:
        await shop.orders.confirm_order(place(w.user_id, w.goods_id, w.price, money_paid="50.00"))
    assert e.value.code == ShopCode.SHOP_GOODS_NUM_NOT_ENOUGH
    assert await state(shop, w) == (0, D("450.00"), 1)
    assert (await quiet(shop))["consistent"]


async def test_forty_buyers_for_seven_units(shop):
    w = await world(shop, stock=7, price="10.00", coupon=None)
    buyers = [await world(shop, money="20.00", coupon=None) for _ in range(40)]

    async def buy(b):
        try:
            return await shop.orders.confirm_order(place(b.user_id, w.goods_id, w.price, money_paid="20.00"))
        except ShopError as e:
            return e

    results = await asyncio.gather(*(buy(b) for b in buyers))
    won = [r for r in results if not isinstance(r, ShopError)]
    lost = [r for r in results if isinstance(r, ShopError)]
    assert len(won) == 7
    assert all(e.code == ShopCode.SHOP_GOODS_NUM_NOT_ENOUGH for e in lost)
    report = await quiet(shop)
    assert report["consistent"], report
    assert (await shop.goods.find_goods(w.goods_id)).goods_number == 0
    winners = {o.user_id for o in won}
    for b in buyers:
        money = (await shop.users.find_user(b.user_id)).user_money
        assert money == (D("0.00") if b.user_id in winners else D("20.00"))


async def test_one_coupon_in_ten_simultaneous_orders(shop):
    w = await world(shop, stock=20, price="200.00", coupon="50.00")
    results = await asyncio.gather(
        *(shop.orders.confirm_order(place(w.user_id, w.goods_id, w.price, coupon_id=w.coupon_id)) for _ in range(10)),
        return_exceptions=True,
    )
    won = [r for r in results if not isinstance(r, BaseException)]
    assert len(won) == 1
    assert all(isinstance(r, ShopError) and r.code == ShopCode.SHOP_COUPON_INVALID for r in results if r not in won)
    report = await quiet(shop)
    assert report["consistent"], report
    assert (await shop.goods.find_goods(w.goods_id)).goods_number == 19  # the losers' stock came back
    assert (await shop.coupons.find_coupon(w.coupon_id)).order_id == won[0].order_id


async def test_no_overdraft_under_concurrent_orders(shop):
    w = await world(shop, money="100.00", stock=50, price="20.00", coupon=None)
    results = await asyncio.gather(
        *(shop.orders.confirm_order(place(w.user_id, w.goods_id, w.price, money_paid="30.00")) for _ in range(10)),
        return_exceptions=True,
    )
    won = [r for r in results if not isinstance(r, BaseException)]
    assert len(won) == 3  # 3 x 30 <= 100 < 4 x 30
    assert all(r.code == ShopCode.SHOP_MONEY_PAID_INVALID for r in results if isinstance(r, ShopError))
    report = await quiet(shop)
    assert report["consistent"], report
    assert await state(shop, w) == (47, D("10.00"), None)
