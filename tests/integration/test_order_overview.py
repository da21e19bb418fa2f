"""The overview's counts on every backend: orders grouped by the minute in their id (integer
arithmetic in SQL, which each dialect writes its own way), by where they ended, and the
cancellations and refunds of the window found through their indexes."""
from datetime import timedelta

import pytest
import sqlalchemy as sa

from shop.common.clock import from_epoch_ms, now_ms, utcnow
from shop.common.errors import ShopError
from shop.common.ids import MINUTE_MS, first_id_at
from shop.infra.db import Query
from shop.services.order import repository as repo
from shop.services.order.contracts import Order
from shop.services.order.domain import OrderStatus
from shop.services.order.models import order
from tests.support import D

pytestmark = pytest.mark.all_backends


# The insert takes an Order's fields; when it was cancelled or refunded is written after.
ENDED = Query(sa.update(order).where(order.c.order_id == sa.bindparam("oid"))
              .values(cancel_time=sa.bindparam("cancel_time"), refund_time=sa.bindparam("refund_time")))


def _row(order_id: int, status: OrderStatus, **times: object) -> dict:
    return dict(
        order_id=order_id, user_id=1, order_status=int(status), pay_status=0, shipping_status=0, address="北京",
        consignee=None, goods_id=1, goods_number=1, goods_price=D("10.00"), goods_amount=D("10.00"),
        shipping_fee=D("10.00"), order_amount=D("20.00"), coupon_id=None, coupon_paid=D("0.00"),
        money_paid=D("0.00"), pay_amount=D("20.00"), add_time=utcnow(), confirm_time=None, pay_time=None,
    ) | times


async def test_the_overview_counts_each_minute_by_outcome(shop):
    now, at = now_ms(), utcnow()
    a = now // MINUTE_MS - 5  # a minute well inside a 10-minute window, should the minute turn meanwhile
    first, last = first_id_at(a * MINUTE_MS), first_id_at((a + 1) * MINUTE_MS - 1) + 4095  # its first and last id
    nxt = first_id_at((a + 1) * MINUTE_MS)
    old = first_id_at(now - 2 * 3600 * 1000)
    rows = [
        _row(first, OrderStatus.CONFIRMED, confirm_time=at),
        _row(last, OrderStatus.CANCELLED, cancel_time=at),  # failed: never confirmed
        _row(nxt, OrderStatus.UNCONFIRMED),
        _row(nxt + 1, OrderStatus.REFUNDED, confirm_time=at, refund_time=at),
        _row(nxt + 2, OrderStatus.CANCELLED, confirm_time=at, cancel_time=at),  # by its owner: was confirmed
        _row(old, OrderStatus.UNCONFIRMED),  # still pending, outside the window
        _row(old + 1, OrderStatus.CANCELLED, cancel_time=at - timedelta(hours=2)),
    ]
    async with shop.runtime.dbs["order"].unit_of_work() as uow:
        for r in rows:
            ended = {k: r.pop(k, None) for k in ("cancel_time", "refund_time")}
            await repo.insert(uow, [Order(**r)])
            await uow.execute(ENDED, oid=r["order_id"], **ended)
        await uow.commit()
    o = await shop.orders.overview(10)
    assert len(o.per_minute) == 10
    by_at = {m.at: (m.confirmed, m.failed, m.unconfirmed) for m in o.per_minute}
    assert by_at[from_epoch_ms(a * MINUTE_MS)] == (1, 1, 0)
    assert by_at[from_epoch_ms((a + 1) * MINUTE_MS)] == (2, 0, 1)
    assert sum(c + f + u for c, f, u in by_at.values()) == 5
    assert (o.compensations, o.unconfirmed, o.outbox_due) == (3, 2, 0)


async def test_a_window_out_of_bounds_is_refused(shop):
    for minutes in (0, 181):
        with pytest.raises(ShopError) as e:
            await shop.orders.overview(minutes)
        assert e.value.code.name == "SHOP_REQUEST_PARAMETER_VALID"
