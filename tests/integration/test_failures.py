"""Every failure path of the saga: injected errors, duplicated and late messages, barriers, dead letters."""
import asyncio

import orjson
import pytest
import sqlalchemy as sa

from shop.common.clock import now_ms
from shop.common.codes import ShopCode
from shop.common.errors import ShopError
from shop.infra.db import Query
from shop.infra.messaging import Message
from shop.services.coupon.contracts import UseCoupon
from shop.services.goods.contracts import ReduceStock, StockLine
from shop.services.order.contracts import OrderCancelled
from shop.services.order.domain import OrderStatus, PayStatus
from shop.services.user.contracts import ChangeMoney, MoneyLogType
from tests.support import D, new_id, place, quiet, state, until, world

ORDER_POINTS = [
    "order.after_pre_order",
    "order.after_reduce_stock",
    "order.after_use_coupon",
    "order.after_reduce_money",
    "order.before_confirm",
]


async def _only_order(shop):
    orders = (await shop.orders.audit_facts()).orders
    assert len(orders) == 1
    return next(iter(orders.values()))


@pytest.mark.all_backends
@pytest.mark.parametrize("point", ORDER_POINTS)
async def test_an_error_at_each_fault_point_undoes_everything(shop, point):
    w = await world(shop, money="100.00", stock=10, coupon="100.00")
    shop.faults.arm(point, "error", times=1)
    with pytest.raises(ShopError) as e:
        await shop.orders.confirm_order(
            place(w.user_id, w.goods_id, w.price, coupon_id=w.coupon_id, money_paid="100.00")
        )
    assert e.value.code == ShopCode.SHOP_SERVICE_UNAVAILABLE
    order = await _only_order(shop)
    assert e.value.data == {"orderId": str(order.order_id)}
    # settle() waited for the compensation: it is already undone when the caller hears of the failure.
    assert await state(shop, w) == (10, D("100.00"), 0)
    assert order.order_status == OrderStatus.CANCELLED
    report = await quiet(shop)
    assert report == {"consistent": True, "violations": [], "pending": 0}
    coupon = await shop.coupons.find_coupon(w.coupon_id)
    assert coupon.order_id is None and coupon.used_time is None


@pytest.mark.parametrize("point", ["goods.on_order_cancel", "coupon.on_order_cancel", "user.on_order_cancel"])
async def test_a_failing_compensation_is_retried_until_it_succeeds(shop, point):
    w = await world(shop, money="100.00", coupon="100.00")
    shop.faults.arm("order.before_confirm", "error", times=1)
    shop.faults.arm(point, "error", times=2)
    with pytest.raises(ShopError):
        await shop.orders.confirm_order(
            place(w.user_id, w.goods_id, w.price, coupon_id=w.coupon_id, money_paid="100.00")
        )
    report = await quiet(shop)
    assert report["consistent"], report
    assert await state(shop, w) == (10, D("100.00"), 0)
    assert await shop.runtime.broker.dead() == []


async def test_a_compensation_that_keeps_failing_is_parked_dead_then_replayed(shop):
    w = await world(shop, money="100.00", coupon=None)
    shop.faults.arm("order.before_confirm", "error", times=1)
    shop.faults.arm("goods.on_order_cancel", "error")  # until cleared
    with pytest.raises(ShopError):
        await shop.orders.confirm_order(place(w.user_id, w.goods_id, w.price, money_paid="10.00"))
    for _ in range(100):
        dead = await shop.runtime.broker.dead()
        if dead:
            break
        await asyncio.sleep(0.05)
    assert len(dead) == 1 and dead[0]["group"] == "goods-order-group"
    assert dead[0]["attempts"] == shop.settings.message_max_attempts
    report = (await shop.operator.audit()).json()
    assert not report["consistent"]  # stock still out for a cancelled order: an operator must act
    assert (await shop.goods.find_goods(w.goods_id)).goods_number == 9
    assert (await shop.users.find_user(w.user_id)).user_money == D("100.00")  # the other groups did their part
    shop.faults.clear()
    assert await shop.runtime.broker.replay(int(dead[0]["id"]))
    report = await quiet(shop)
    assert report == {"consistent": True, "violations": [], "pending": 0}
    assert (await shop.goods.find_goods(w.goods_id)).goods_number == 10
    assert not await shop.runtime.broker.replay(int(dead[0]["id"]))  # nothing left to replay


@pytest.mark.all_backends
async def test_a_duplicated_cancel_message_changes_nothing(shop):
    w = await world(shop, money="100.00", coupon="100.00")
    shop.faults.arm("order.before_confirm", "error", times=1)
    with pytest.raises(ShopError) as e:
        await shop.orders.confirm_order(
            place(w.user_id, w.goods_id, w.price, coupon_id=w.coupon_id, money_paid="100.00")
        )
    order_id = int(e.value.data["orderId"])
    await quiet(shop)
    cancel = OrderCancelled(order_id, w.user_id, [StockLine(w.goods_id, 1)], w.coupon_id, D("100.00")).to_message()
    for _ in range(3):  # a redelivery of the same message, and a new message for the same order
        await shop.runtime.broker.publish(cancel)
        await shop.runtime.broker.publish(OrderCancelled.from_message(cancel).to_message())
    report = await quiet(shop)
    assert report["consistent"], report
    assert await state(shop, w) == (10, D("100.00"), 0)


@pytest.mark.all_backends
async def test_a_cancel_for_a_step_that_never_ran_blocks_the_late_step(shop):
    """Null compensation and hanging: the cancel arrives first, the participant's step later."""
    w = await world(shop, money="100.00", coupon="100.00")
    order_id = new_id()
    cancel = OrderCancelled(order_id, w.user_id, [StockLine(w.goods_id, 2)], w.coupon_id, D("50.00")).to_message()
    await shop.runtime.broker.publish(cancel)
    await quiet(shop)
    assert await state(shop, w) == (10, D("100.00"), 0)  # nothing was taken, nothing given
    with pytest.raises(ShopError) as e:
        await shop.goods.reduce_stock(ReduceStock(order_id, [StockLine(w.goods_id, 2)]))
    assert e.value.code == ShopCode.SHOP_ORDER_STATUS_INVALID
    with pytest.raises(ShopError):
        await shop.coupons.use_coupon(UseCoupon(w.coupon_id, w.user_id, order_id))
    with pytest.raises(ShopError):
        await shop.users.change_money(ChangeMoney(w.user_id, order_id, D("50.00"), MoneyLogType.PAID))
    assert await state(shop, w) == (10, D("100.00"), 0)


@pytest.mark.all_backends
async def test_participant_steps_are_idempotent_per_order(shop):
    w = await world(shop, money="100.00", coupon="100.00")
    order_id = new_id()
    for _ in range(3):
        await shop.goods.reduce_stock(ReduceStock(order_id, [StockLine(w.goods_id, 2)]))
        await shop.coupons.use_coupon(UseCoupon(w.coupon_id, w.user_id, order_id))
        await shop.users.change_money(ChangeMoney(w.user_id, order_id, D("30.00"), MoneyLogType.PAID))
    assert await state(shop, w) == (8, D("70.00"), 1)
    # Their compensation, twice through different messages: given back once.
    cancel = OrderCancelled(order_id, w.user_id, [StockLine(w.goods_id, 2)], w.coupon_id, D("30.00"))
    await shop.runtime.broker.publish(cancel.to_message())
    await shop.runtime.broker.publish(cancel.to_message())
    await quiet(shop)
    assert await state(shop, w) == (10, D("100.00"), 0)


async def test_the_deadline_cancels_an_order_left_unconfirmed(shop):
    """What a crash leaves (the flow stalls after the pre-order): the armed cancel comes due."""
    w = await world(shop, money="100.00", coupon="100.00")
    shop.faults.arm("order.after_reduce_money", "delay", delay_ms=int(shop.settings.order_cancel_after_s * 1000) + 1500)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(ShopError) as e:
        await shop.orders.confirm_order(
            place(w.user_id, w.goods_id, w.price, coupon_id=w.coupon_id, money_paid="100.00")
        )
    # The relay cancelled the order at the deadline; confirming afterwards lost the compare-and-set.
    assert e.value.code == ShopCode.SHOP_ORDER_STATUS_INVALID
    assert loop.time() - start < shop.settings.order_cancel_after_s + 4
    report = await quiet(shop)
    assert report["consistent"], report
    assert await state(shop, w) == (10, D("100.00"), 0)
    assert (await _only_order(shop)).order_status == OrderStatus.CANCELLED


async def test_a_confirmed_order_is_never_cancelled_by_its_deadline(shop):
    w = await world(shop, money="100.00", coupon="100.00")
    order = await shop.orders.confirm_order(
        place(w.user_id, w.goods_id, w.price, coupon_id=w.coupon_id, money_paid="100.00")
    )
    await asyncio.sleep(shop.settings.order_cancel_after_s + 1)
    assert (await shop.orders.find_order(order.order_id)).order_status == OrderStatus.CONFIRMED
    assert await state(shop, w) == (9, D("0.00"), 1)
    assert (await quiet(shop))["consistent"]


@pytest.mark.all_backends
async def test_a_cancel_read_before_its_order_was_confirmed_does_not_leave(shop):
    """The relay read the armed cancel as due (the order's deadline had passed); before it acted,
    the order was confirmed after all and the row re-armed for the payment timeout. Acting on the
    copy it read would cancel a confirmed order at once: the relay acts on the row as it is now."""
    w = await world(shop, money="100.00", price="10.00", coupon=None)
    order = await shop.orders.confirm_order(place(w.user_id, w.goods_id, w.price, money_paid="5.00"))
    assert order.order_status == OrderStatus.CONFIRMED and order.pay_status == PayStatus.UNPAID
    relay = next(r for r in shop.runtime.relays if r.name == "order")
    async with shop.runtime.dbs["order"].unit_of_work(readonly=True) as uow:
        [row] = await uow.fetchall(Query(sa.select(relay.outbox.table)))
    assert row["msg_tag"] == "cancel" and row["due_at"] > now_ms() + 60_000  # re-armed: the payment timeout
    stale = Message(row["msg_topic"], row["msg_tag"], row["msg_key"], orjson.loads(row["msg_body"]), row["id"])

    await relay.send(stale)

    assert (await shop.orders.find_order(order.order_id)).order_status == OrderStatus.CONFIRMED
    async with shop.runtime.dbs["order"].unit_of_work(readonly=True) as uow:
        [after] = await uow.fetchall(Query(sa.select(relay.outbox.table)))
    assert after["due_at"] == row["due_at"]  # still armed for the payment timeout
    assert (await quiet(shop))["consistent"]
    assert await state(shop, w) == (9, D("95.00"), None)  # nothing given back


async def test_the_relay_drops_a_cancel_whose_order_was_paid(shop):
    """The guard: if a deadline races the payment, a paid order's cancel never leaves."""
    w = await world(shop, money="100.00", price="10.00", coupon=None)
    # 10 + 10 shipping, all from the balance: nothing left to pay, so paid at confirmation.
    order = await shop.orders.confirm_order(place(w.user_id, w.goods_id, w.price, money_paid="20.00"))
    assert order.pay_status == 2
    msg = OrderCancelled(order.order_id, w.user_id, [StockLine(w.goods_id, 1)], None, D("20.00")).to_message()
    order_db = shop.runtime.dbs["order"]
    outbox = next(r for r in shop.runtime.relays if r.name == "order").outbox
    async with order_db.unit_of_work() as uow:
        await outbox.add(uow, msg)  # as if the disarm had not happened
        await uow.commit()
    await quiet(shop)
    assert (await shop.orders.find_order(order.order_id)).order_status == OrderStatus.CONFIRMED
    assert await state(shop, w) == (9, D("80.00"), None)
    assert await shop.runtime.broker.pending() == 0



@pytest.mark.shop_settings(message_backoff_ms=60_000, message_backoff_cap_ms=60_000)
async def test_a_compensation_waiting_in_back_off_is_listed_and_a_replay_tries_it_at_once(shop):
    w = await world(shop, money="100.00", coupon=None)
    shop.faults.arm("order.before_confirm", "error", times=1)
    shop.faults.arm("goods.on_order_cancel", "error", times=1)
    with pytest.raises(ShopError):
        await shop.orders.confirm_order(place(w.user_id, w.goods_id, w.price))
    waiting = await until(shop.operator.retrying)
    assert len(waiting) == 1 and waiting[0]["group"] == "goods-order-group", waiting
    assert waiting[0]["attempts"] == 1 and waiting[0]["state"] == "retrying"
    assert (await shop.goods.find_goods(w.goods_id)).goods_number == 9  # still out: the retry is a minute away
    assert await shop.operator.replay(waiting[0]["id"])
    assert await quiet(shop) == {"consistent": True, "violations": [], "pending": 0}
    assert (await shop.goods.find_goods(w.goods_id)).goods_number == 10
    assert await shop.operator.retrying() == [] and await shop.operator.dead() == []
