"""The whole shop on PostgreSQL and RabbitMQ (one process): the saga, its compensations and the
payment fan-out go through real exchanges and queues, exactly as on the embedded broker."""
import os

import pytest

from shop.bootstrap import bootstrap
from shop.common.codes import ShopCode
from shop.common.errors import ShopError
from shop.infra.config import SERVICES
from shop.infra.rabbit import delete_topology
from shop.services.catalog import TOPOLOGY
from shop.services.order.domain import OrderStatus, PayStatus
from tests.conftest import _unavailable, make_settings, server_urls, truncate
from tests.integration.test_payment_flow import _paid_order
from tests.integration.test_rabbit import URL
from tests.support import D, place, quiet, state, world


@pytest.fixture
def pg_urls():
    return server_urls("postgresql")  # synchronous: it runs its own event loop once


@pytest.fixture
async def shop(tmp_path, pg_urls):
    prefix = f"shoptest{os.urandom(4).hex()}"
    urls = pg_urls
    s = bootstrap(make_settings(tmp_path, broker_url=URL, broker_prefix=prefix,
                                **{f"{svc}_db_url": urls[svc] for svc in SERVICES}), run_migrations=False)
    try:
        await s.start()
    except Exception as exc:  # noqa: BLE001
        _unavailable("RabbitMQ", exc)
    await truncate(s)
    try:
        yield s
    finally:
        await s.stop()
        await delete_topology(URL, prefix, TOPOLOGY)


async def test_the_original_scenario_and_a_failure_on_rabbitmq(shop):
    w = await world(shop, money="200.00", coupon="100.00")
    order = await shop.orders.confirm_order(
        place(w.user_id, w.goods_id, w.price, coupon_id=w.coupon_id, money_paid="100.00")
    )
    assert order.pay_amount == D("4800.00")
    assert await state(shop, w) == (9, D("100.00"), 1)
    shop.faults.arm("order.before_confirm", "error", times=1)
    with pytest.raises(ShopError) as e:
        await shop.orders.confirm_order(place(w.user_id, w.goods_id, w.price, money_paid="100.00"))
    assert e.value.code == ShopCode.SHOP_SERVICE_UNAVAILABLE
    assert await state(shop, w) == (9, D("100.00"), 1)  # the failed order's part already given back
    report = await quiet(shop)
    assert report == {"consistent": True, "violations": [], "pending": 0}


async def test_a_failing_compensation_is_retried_through_the_retry_queue(shop):
    w = await world(shop, money="100.00", coupon=None)
    shop.faults.arm("order.before_confirm", "error", times=1)
    shop.faults.arm("goods.on_order_cancel", "error", times=2)
    with pytest.raises(ShopError):
        await shop.orders.confirm_order(place(w.user_id, w.goods_id, w.price, money_paid="10.00"))
    report = await quiet(shop)
    assert report["consistent"], report
    assert await state(shop, w) == (10, D("100.00"), None)


async def test_payment_fan_out_and_refund_on_rabbitmq(shop):
    w, order, payment, trade_no = await _paid_order(shop)
    assert (await shop.orders.find_order(order.order_id)).pay_status == PayStatus.PAID
    await shop.sandbox.resend(payment.pay_id)
    report = await quiet(shop)
    assert report == {"consistent": True, "violations": [], "pending": 0}
    assert (await shop.users.find_user(w.user_id)).user_score == 4800
    assert len(await shop.log.pay_log(order.order_id)) == 1
    assert (await shop.orders.refund_order(order.order_id, w.user_id)).order_status == OrderStatus.REFUNDED
    report = await quiet(shop)
    assert report == {"consistent": True, "violations": [], "pending": 0}
    assert await state(shop, w) == (10, D("100.00"), 0)
    assert (await shop.users.find_user(w.user_id)).user_score == 0
    assert (await shop.sandbox.trade(trade_no))["state"] == "REFUNDED"
