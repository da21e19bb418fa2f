"""The order topic's messages are versioned (order/contracts.py): version 2 carries a cart's lines,
version 1 (no "v", written before carts) one goods. A consumer after the upgrade still handles a
version-1 cancel or refund that was in the outbox or the broker when it came, and gives back exactly
what the order took; a version it does not know is not half understood."""
import pytest

from shop.infra.messaging import Message
from shop.services.coupon.contracts import UseCoupon
from shop.services.goods.contracts import CreateGoods, ReduceStock, StockLine
from shop.services.order.contracts import (
    ORDER_TOPIC,
    TAG_CANCEL,
    TAG_REFUND,
    OrderCancelled,
    OrderPaid,
)
from shop.services.user.contracts import ChangeMoney, MoneyLogType
from tests.support import D, new_id, quiet, state, world


def version_1(tag: str, order_id: int, w, n: int, money: str, **extra: str) -> Message:
    """The body an order service before carts wrote."""
    return Message(ORDER_TOPIC, tag, str(order_id), {
        "orderId": str(order_id), "userId": str(w.user_id), "goodsId": str(w.goods_id), "goodsNumber": n,
        "couponId": str(w.coupon_id), "moneyPaid": money, **extra,
    })


async def take(shop, w, order_id: int, n: int, money: str) -> None:
    await shop.goods.reduce_stock(ReduceStock(order_id, [StockLine(w.goods_id, n)]))
    await shop.coupons.use_coupon(UseCoupon(w.coupon_id, w.user_id, order_id))
    await shop.users.change_money(ChangeMoney(w.user_id, order_id, D(money), MoneyLogType.PAID))


@pytest.mark.all_backends
async def test_a_version_1_cancel_is_still_compensated_once(shop):
    w = await world(shop, money="100.00", coupon="100.00")
    order_id = new_id()
    await take(shop, w, order_id, 2, "30.00")
    assert await state(shop, w) == (8, D("70.00"), 1)
    old = version_1(TAG_CANCEL, order_id, w, 2, "30.00")
    await shop.runtime.broker.publish(old)
    await shop.runtime.broker.publish(old)  # redelivered: still once
    await quiet(shop)
    assert await state(shop, w) == (10, D("100.00"), 0)
    timeline = await shop.goods.timeline(order_id)
    assert [e.kind for e in timeline if e.kind.startswith("goods.")] == ["goods.stock_reduced", "goods.stock_restored"]


@pytest.mark.all_backends
async def test_a_version_1_refund_gives_back_and_takes_the_points_back(shop):
    w = await world(shop, money="100.00", coupon="100.00")
    order_id = new_id()
    await take(shop, w, order_id, 3, "40.00")
    await shop.runtime.broker.publish(OrderPaid(order_id, w.user_id, new_id(), D("4970.00")).to_message())
    await shop.runtime.broker.publish(version_1(TAG_REFUND, order_id, w, 3, "40.00", payAmount="4970.00"))
    await quiet(shop)
    assert await state(shop, w) == (10, D("100.00"), 0)
    assert (await shop.users.find_user(w.user_id)).user_score == 0  # 4970 added, then taken back


async def test_version_2_gives_back_every_line_and_reads_both_shapes(shop):
    w = await world(shop, money="100.00", coupon="100.00")
    other = await shop.goods.create_goods(CreateGoods("case", 5, D("10.00")))
    order_id = new_id()
    await shop.goods.reduce_stock(ReduceStock(order_id, [StockLine(w.goods_id, 2), StockLine(other, 5)]))
    cancel = OrderCancelled(order_id, w.user_id, [StockLine(w.goods_id, 2), StockLine(other, 5)], None, D("0.00"))
    msg = cancel.to_message()
    assert msg.body["v"] == 2 and "goodsId" not in msg.body  # a version-1 consumer fails, not half-restores
    assert OrderCancelled.from_message(msg) == cancel
    await shop.runtime.broker.publish(msg)
    await quiet(shop)
    assert (await shop.goods.find_goods(w.goods_id)).goods_number == 10
    assert (await shop.goods.find_goods(other)).goods_number == 5


def test_a_version_this_consumer_does_not_know_is_refused_whole():
    body = {"v": 3, "orderId": "1", "userId": "2", "lines": [], "couponId": None, "moneyPaid": "0.00"}
    with pytest.raises(ValueError, match="version 3"):
        OrderCancelled.from_message(Message(ORDER_TOPIC, TAG_CANCEL, "1", body))
    old = OrderCancelled.from_message(Message(ORDER_TOPIC, TAG_CANCEL, "1", {
        "orderId": "1", "userId": "2", "goodsId": "3", "goodsNumber": 4, "couponId": None, "moneyPaid": "0.00"}))
    assert old == OrderCancelled(1, 2, [StockLine(3, 4)], None, D("0.00"))
