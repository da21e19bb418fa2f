"""The saga's group commits (SagaStore, infra/db/group_commit.py), on every backend: orders placed
together share a transaction, each order's outcome is its own (a confirm the deadline beat is
refused, the others confirmed and their cancels deleted or re-armed), and a batch that fails
writes none of its orders and fails every caller in it."""
from __future__ import annotations

import asyncio
from itertools import count

import pytest
import sqlalchemy as sa

from shop.common.clock import now_ms, utcnow
from shop.infra.db import Query
from shop.infra.messaging import Message, Outbox
from shop.services.order import repository as repo
from shop.services.order.contracts import Order, OrderCancelled, OrderLine
from shop.services.order.domain import OrderStatus, PayStatus
from shop.services.order.models import outbox as outbox_table
from tests.support import D

pytestmark = pytest.mark.all_backends

ids = count(7_000_000)


def pre_order(order_id: int) -> Order:
    return Order(
        order_id=order_id, user_id=1, order_status=int(OrderStatus.UNCONFIRMED), pay_status=int(PayStatus.UNPAID),
        shipping_status=0, address="北京", consignee=None, goods_id=1, goods_number=2, goods_price=D("10.00"),
        goods_amount=D("20.00"), shipping_fee=D("0.00"), order_amount=D("20.00"), coupon_id=None,
        coupon_paid=D("0.00"), money_paid=D("0.00"), pay_amount=D("20.00"), add_time=utcnow(),
        items=[OrderLine(1, 2, D("10.00")), OrderLine(2, 1, D("5.00"))],
    )


def store_of(shop) -> repo.SagaStore:
    return repo.SagaStore(shop.runtime.dbs["order"], Outbox(outbox_table, "order-producer"))


async def due_at(shop, msg_id: str) -> int | None:
    t = outbox_table.c
    async with shop.runtime.dbs["order"].unit_of_work(readonly=True) as uow:
        row = await uow.fetchone(Query(sa.select(t.due_at).where(t.id == sa.bindparam("id"))), id=msg_id)
    return None if row is None else int(row["due_at"])


async def test_orders_placed_together_share_transactions_and_keep_their_own_outcomes(shop) -> None:
    store = store_of(shop)
    orders = [pre_order(next(ids)) for _ in range(40)]
    cancels = {o.order_id: OrderCancelled.of(o).to_message() for o in orders}
    deadline = now_ms() + 60_000
    await asyncio.gather(*(store.save_pre_order(o, cancels[o.order_id], deadline) for o in orders))
    assert not await store.confirmed(orders[0].order_id)  # saved, not confirmed
    assert not await store.confirmed(next(ids))  # no such order
    # Called together, they wait for the first write and go in one more: two transactions, not 40.
    assert store._pre_orders.batches <= 2
    for o in orders:
        async with shop.runtime.dbs["order"].unit_of_work(readonly=True) as uow:
            (saved,) = await repo.orders_of(uow, [await repo.find(uow, o.order_id)])
        assert saved.items == o.items and saved.order_status == OrderStatus.UNCONFIRMED
        assert await due_at(shop, cancels[o.order_id].msg_id) == deadline

    beaten = orders[:10]  # their deadline (or a failure) cancelled them first
    for o in beaten:
        await store.fail(o.order_id, cancels[o.order_id])
    at, rearm = utcnow(), now_ms() + 1_800_000
    confirmed = await asyncio.gather(*(
        store.confirm(o, cancels[o.order_id], paid=n % 2 == 0, at=at, rearm_at_ms=rearm) for n, o in enumerate(orders)
    ))
    assert store._confirms.batches <= 2
    assert confirmed == [o not in beaten for o in orders]
    for n, o in enumerate(orders):
        async with shop.runtime.dbs["order"].unit_of_work(readonly=True) as uow:
            row = await repo.find(uow, o.order_id)
        cancel = cancels[o.order_id].msg_id
        # What a confirm whose answer was lost is read back by (handlers.OrderHandlers._confirm).
        assert await store.confirmed(o.order_id) == (o not in beaten)
        if o in beaten:
            assert row["order_status"] == OrderStatus.CANCELLED and row["confirm_time"] is None
            # Fired, not re-armed (the shop's relay may since have taken it, sent it, or leased it).
            assert await due_at(shop, cancel) != rearm
        elif n % 2 == 0:  # nothing left to pay: paid at confirmation, its cancel gone
            assert (row["order_status"], row["pay_status"]) == (OrderStatus.CONFIRMED, PayStatus.PAID)
            assert await due_at(shop, cancel) is None
        else:  # the cancel waits for the payment timeout
            assert (row["order_status"], row["pay_status"]) == (OrderStatus.CONFIRMED, PayStatus.UNPAID)
            assert await due_at(shop, cancel) == rearm


async def test_a_batch_that_fails_writes_none_of_its_orders_and_fails_every_caller(shop) -> None:
    store = store_of(shop)
    taken = pre_order(next(ids))
    await store.save_pre_order(taken, OrderCancelled.of(taken).to_message(), now_ms() + 60_000)

    batch = [pre_order(next(ids)), pre_order(next(ids)), pre_order(taken.order_id)]  # the last: a taken id
    before = store._pre_orders.batches
    results = await asyncio.gather(
        *(store.save_pre_order(o, Message("order", "cancel", str(o.order_id), {}), now_ms() + 60_000) for o in batch),
        return_exceptions=True,
    )
    assert store._pre_orders.batches == before + 1  # one write carried the three
    assert all(isinstance(r, Exception) for r in results), results
    assert len({id(r) for r in results}) == 1  # the batch's error, the same for each
    for o in batch[:2]:
        async with shop.runtime.dbs["order"].unit_of_work(readonly=True) as uow:
            assert await repo.find(uow, o.order_id) is None

    # And the next batch is written as if nothing happened.
    later = pre_order(next(ids))
    await store.save_pre_order(later, OrderCancelled.of(later).to_message(), now_ms() + 60_000)
    async with shop.runtime.dbs["order"].unit_of_work(readonly=True) as uow:
        assert await repo.find(uow, later.order_id) is not None
