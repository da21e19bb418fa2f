"""No overselling: a hot goods with N units sells exactly N to a crowd of concurrent buyers, on every
backend, with no fault armed to line the buyers up: the race is the real one, and the test shows it
happened rather than assuming it."""
import asyncio
from datetime import UTC, datetime

import pytest

from shop.common.codes import ShopCode
from shop.common.errors import ShopError
from shop.services.coupon.contracts import CreateCoupon
from shop.services.goods.contracts import CreateGoods
from shop.services.order.contracts import Order
from shop.services.order.domain import OrderStatus
from shop.services.user.contracts import CreateUser
from tests.support import D, most_at_once, place, quiet

pytestmark = pytest.mark.all_backends

UNITS = 12
BUYERS = 60
PRICE = D("150.00")  # over 100: no shipping fee
BALANCE = D("100.00")
COUPON = D("50.00")


def _now() -> datetime:
    """The shop's clock's form (naive UTC), to the microsecond."""
    return datetime.now(UTC).replace(tzinfo=None)


@pytest.mark.shop_settings(order_cancel_after_s=30.0)  # no deadline may cancel a slow winner of the crowd
async def test_a_crowd_buys_exactly_the_units_in_stock(shop):
    goods_id = await shop.goods.create_goods(CreateGoods("hot", UNITS, PRICE))
    # A third pay with a coupon and part of their balance, a third with their balance alone, a third
    # leave it all to pay later: every participant's conditional update is in the race.
    buyers = []
    for i in range(BUYERS):
        user_id = await shop.users.create_user(CreateUser(f"flash-{i}", "secret", BALANCE))
        coupon_id = await shop.coupons.create_coupon(CreateCoupon(user_id, COUPON)) if i % 3 == 0 else None
        money = "30.00" if i % 3 == 0 else "100.00" if i % 3 == 1 else "0.00"
        buyers.append((user_id, coupon_id, D(money)))

    async def buy(user_id: int, coupon_id: int | None, money: D) -> tuple[Order | ShopError, datetime]:
        try:
            result: Order | ShopError = await shop.orders.confirm_order(
                place(user_id, goods_id, PRICE, coupon_id=coupon_id, money_paid=str(money)))
        except ShopError as e:
            result = e
        return result, _now()

    outcomes = await asyncio.gather(*(buy(*b) for b in buyers))

    won = [r for r, _ in outcomes if isinstance(r, Order)]
    lost = [r for r, _ in outcomes if isinstance(r, ShopError)]
    assert len(won) == UNITS
    assert {e.code for e in lost} == {ShopCode.SHOP_GOODS_NUM_NOT_ENOUGH}, lost
    assert (await shop.goods.find_goods(goods_id)).goods_number == 0
    assert await quiet(shop) == {"consistent": True, "violations": [], "pending": 0}

    # The race happened. A loser whose error names an order passed validation, seeing stock left, and
    # saved its pre-order, and only the stock's conditional update refused it: it was in flight while
    # the last units went. And orders overlapped between their pre-order and their answer.
    saved = await shop.orders.audit_facts()
    late = [int(e.data["orderId"]) for e in lost if (e.data or {}).get("orderId")]
    assert late, "every loser was refused at validation: the buyers never raced for the stock"
    assert all(saved.orders[i].order_status == OrderStatus.CANCELLED for i in late)
    assert sorted(o.order_id for o in won) == sorted(
        i for i, o in saved.orders.items() if o.order_status == OrderStatus.CONFIRMED)
    spans = []
    for result, answered in outcomes:
        order_id = result.order_id if isinstance(result, Order) else int((result.data or {}).get("orderId", 0))
        if order_id:
            spans.append(((await shop.orders.find_order(order_id)).add_time, answered))
    assert most_at_once(spans) >= 2, spans

    # Every buyer ends as the outcome says: a winner paid with its coupon and balance, a loser's are untouched.
    winners = {o.user_id: o for o in won}
    for user_id, coupon_id, money in buyers:
        user = await shop.users.find_user(user_id)
        order = winners.get(user_id)
        assert user.user_money == BALANCE - (money if order else 0)
        if coupon_id is not None:
            coupon = await shop.coupons.find_coupon(coupon_id)
            assert (coupon.is_used, coupon.order_id) == ((1, order.order_id) if order else (0, None))
    assert sum(o.pay_amount for o in won) == sum(
        PRICE - (COUPON if c else 0) - m for u, c, m in buyers if u in winners)
