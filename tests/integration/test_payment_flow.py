"""The payment flow on every backend, at the service interfaces: paid once, refunded once."""
import asyncio

import orjson
import pytest
import sqlalchemy as sa

from shop.infra.db import Query
from shop.infra.messaging import Message
from shop.services.order.domain import OrderStatus, PayStatus
from shop.services.pay.contracts import TAG_PAID, Notification, PaymentPaid
from shop.services.pay.models import outbox
from tests.support import D, answered, place, quiet, state, until, world

pytestmark = pytest.mark.all_backends
# The pay service's messages about an order, sent or not (a sent one stays until the retention ends).
PAY_MESSAGES = Query(sa.select(outbox).where(outbox.c.msg_key == sa.bindparam("key")))


def _deliver_to(shop):
    """The sandbox's notifications, handed straight to the pay service (no HTTP here)."""

    async def send(url, headers, body):
        await shop.pay.notify(Notification(headers["X-Pay-Timestamp"], headers["X-Pay-Nonce"],
                                           headers["X-Pay-Signature"], body))
        return True

    return send


async def _paid_order(shop):
    shop.sandbox.use_sender(_deliver_to(shop))
    w = await world(shop, money="100.00", coupon="100.00")
    order = await shop.orders.confirm_order(
        place(w.user_id, w.goods_id, w.price, coupon_id=w.coupon_id, money_paid="100.00")
    )
    payment = await shop.pay.create_payment(order.order_id, w.user_id, D("4800.00"))
    assert (await shop.pay.create_payment(order.order_id, w.user_id, D("4800.00"))).pay_id == payment.pay_id
    trade_no = await shop.sandbox.pay(payment.pay_id)
    for _ in range(200):
        if (await shop.orders.find_order(order.order_id)).pay_status == PayStatus.PAID:
            break
        await asyncio.sleep(0.05)
    return w, order, payment, trade_no


async def test_paid_once_with_points_and_one_log_row(shop):
    w, order, payment, trade_no = await _paid_order(shop)
    first = await until(lambda: answered(shop, payment.pay_id))
    assert first, "the platform never saw its notification answered"
    for _ in range(3):  # the platform resends; each is a duplicate
        await shop.sandbox.resend(payment.pay_id)
    assert await until(lambda: answered(shop, payment.pay_id, other_than=first)), "the resend was never answered"
    report = await quiet(shop)
    assert report == {"consistent": True, "violations": [], "pending": 0}
    assert (await shop.orders.find_order(order.order_id)).pay_status == PayStatus.PAID
    assert (await shop.users.find_user(w.user_id)).user_score == 4800
    assert len(await shop.log.pay_log(order.order_id)) == 1
    assert (await shop.pay.find_payment(payment.pay_id)).trade_no == trade_no


async def test_refund_gives_everything_back_once(shop):
    w, order, payment, trade_no = await _paid_order(shop)
    await quiet(shop)
    refunded = await shop.orders.refund_order(order.order_id, w.user_id)
    assert refunded.order_status == OrderStatus.REFUNDED
    report = await quiet(shop)
    assert report == {"consistent": True, "violations": [], "pending": 0}
    assert await state(shop, w) == (10, D("100.00"), 0)
    assert (await shop.users.find_user(w.user_id)).user_score == 0
    assert (await shop.pay.find_payment(payment.pay_id)).is_refunded == 1
    assert (await shop.sandbox.trade(trade_no))["state"] == "REFUNDED"


async def test_notifications_racing_mark_the_payment_paid_with_one_message(shop):
    """The same signed notification, several at once (on a server database their transactions
    meet on the payment's row): one compare-and-set wins, and its message is the only one written."""
    caught: list[tuple[dict[str, str], bytes]] = []

    async def catch(url, headers, body):
        caught.append((headers, body))
        return False  # not answered: the platform would send it again later

    shop.sandbox.use_sender(catch)
    w = await world(shop, money="100.00", coupon=None)
    order = await shop.orders.confirm_order(place(w.user_id, w.goods_id, w.price, money_paid="100.00"))
    payment = await shop.pay.create_payment(order.order_id, w.user_id, order.pay_amount)
    await shop.sandbox.pay(payment.pay_id)
    assert await until(lambda: asyncio.sleep(0, bool(caught))), "the platform sent nothing"
    headers, body = caught[0]
    notification = Notification(headers["X-Pay-Timestamp"], headers["X-Pay-Nonce"], headers["X-Pay-Signature"], body)
    await asyncio.gather(*(shop.pay.notify(notification) for _ in range(6)))
    await shop.pay.notify(notification)  # and once more, after: a repeat

    messages = await shop.runtime.dbs["pay"].fetchall(PAY_MESSAGES, key=str(order.order_id))
    trade_no = (await shop.pay.find_payment(payment.pay_id)).trade_no
    assert [(m["msg_tag"], PaymentPaid.from_message(Message(m["msg_topic"], m["msg_tag"], m["msg_key"],
                                                            orjson.loads(m["msg_body"]))))
            for m in messages] == [(TAG_PAID, PaymentPaid(payment.pay_id, order.order_id, order.pay_amount, trade_no))]
    assert await quiet(shop) == {"consistent": True, "violations": [], "pending": 0}
    assert (await shop.orders.find_order(order.order_id)).pay_status == PayStatus.PAID
    assert len(await shop.log.pay_log(order.order_id)) == 1
