"""All of the order service's SQL, built once."""
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from shop.infra.db import Database, Query, UnitOfWork
from shop.infra.messaging import Message, Outbox
from shop.services.order.contracts import Order
from shop.services.order.models import order

o = order.c

FIND = Query(sa.select(order).where(o.order_id == sa.bindparam("order_id")))
INSERT = Query(sa.insert(order).values({c.name: sa.bindparam(c.name) for c in order.columns}))
# Every status change is a compare-and-set on the row: confirm and cancel can never both win.
CONFIRM = Query(
    sa.update(order)
    .where(o.order_id == sa.bindparam("order_id"), o.order_status == 0)
    .values(order_status=1, confirm_time=sa.bindparam("confirm_time"))
)
CONFIRM_PAID = Query(  # nothing left to pay (coupon and balance covered it): paid at confirmation
    sa.update(order)
    .where(o.order_id == sa.bindparam("order_id"), o.order_status == 0)
    .values(
        order_status=1, confirm_time=sa.bindparam("confirm_time"), pay_status=2, pay_time=sa.bindparam("confirm_time")
    )
)
# The payment timeout and the owner's cancel: only a confirmed order nobody has paid for.
CANCEL_UNPAID = Query(
    sa.update(order)
    .where(o.order_id == sa.bindparam("order_id"), o.order_status == 1, o.pay_status == 0)
    .values(order_status=2)
)
MARK_PAID = Query(
    sa.update(order)
    .where(o.order_id == sa.bindparam("order_id"), o.order_status == 1, o.pay_status == 0)
    .values(pay_status=2, pay_time=sa.bindparam("pay_time"))
)
REFUND = Query(
    sa.update(order)
    .where(o.order_id == sa.bindparam("order_id"), o.order_status == 1, o.pay_status == 2, o.shipping_status == 0)
    .values(order_status=4)
)
CANCEL_UNCONFIRMED = Query(
    sa.update(order).where(o.order_id == sa.bindparam("order_id"), o.order_status == 0).values(order_status=2)
)
STATUS = Query(sa.select(o.order_status, o.pay_status).where(o.order_id == sa.bindparam("order_id")))
ALL = Query(sa.select(order))
COUNT_UNCONFIRMED = Query(sa.select(sa.func.count().label("n")).select_from(order).where(o.order_status == 0))


async def find(uow: UnitOfWork, order_id: int) -> Any:
    return await uow.fetchone(FIND, order_id=order_id)


async def insert(uow: UnitOfWork, row: dict[str, Any]) -> None:
    await uow.execute(INSERT, **row)


async def confirm(uow: UnitOfWork, order_id: int, at: Any) -> bool:
    return await uow.execute(CONFIRM, order_id=order_id, confirm_time=at) == 1


async def confirm_paid(uow: UnitOfWork, order_id: int, at: Any) -> bool:
    return await uow.execute(CONFIRM_PAID, order_id=order_id, confirm_time=at) == 1


async def cancel_unpaid(uow: UnitOfWork, order_id: int) -> bool:
    return await uow.execute(CANCEL_UNPAID, order_id=order_id) == 1


async def mark_paid(uow: UnitOfWork, order_id: int, at: Any) -> bool:
    return await uow.execute(MARK_PAID, order_id=order_id, pay_time=at) == 1


async def refund(uow: UnitOfWork, order_id: int) -> bool:
    return await uow.execute(REFUND, order_id=order_id) == 1


async def cancel_unconfirmed(uow: UnitOfWork, order_id: int) -> bool:
    return await uow.execute(CANCEL_UNCONFIRMED, order_id=order_id) == 1


async def status(uow: UnitOfWork, order_id: int) -> Any:
    return await uow.fetchone(STATUS, order_id=order_id)


class SagaStore:
    """The saga's three transactions on the order's own database, each local and atomic
    (ARCHITECTURE.md point 5). The saga (handlers.confirm_order) calls only these, so it reads as
    the saga, and its unit tests run on a fake of this class."""

    def __init__(self, db: Database, outbox: Outbox) -> None:
        self.db = db
        self.outbox = outbox

    async def save_pre_order(self, order: Order, cancel: Message, due_at_ms: int) -> None:
        """The pre-order (status 0) with its cancel armed for the deadline."""
        async with self.db.unit_of_work() as uow:
            await insert(uow, {f: getattr(order, f) for f in Order.__slots__})
            await self.outbox.add(uow, cancel, due_at_ms=due_at_ms)
            await uow.commit()

    async def confirm(self, order: Order, cancel: Message, *, paid: bool, at: datetime, rearm_at_ms: int) -> bool:
        """0 -> 1 by compare-and-set; False if the deadline's cancel got there first. The armed
        cancel goes with it (paid: nothing left to time out), or is re-armed for the payment
        timeout: it leaves only if the order is still unpaid then (guard_cancel), driven by no
        scan of orders."""
        async with self.db.unit_of_work() as uow:
            if paid:
                confirmed = await confirm_paid(uow, order.order_id, at)
                if confirmed:
                    await self.outbox.delete(uow, cancel.msg_id)
            else:
                confirmed = await confirm(uow, order.order_id, at)
                if confirmed:
                    await self.outbox.make_due(uow, cancel.msg_id, rearm_at_ms)
            await uow.commit()
        return confirmed

    async def fail(self, order_id: int, cancel: Message) -> None:
        """0 -> 2 and the cancel due now, in one transaction."""
        async with self.db.unit_of_work() as uow:
            await cancel_unconfirmed(uow, order_id)
            await self.outbox.make_due(uow, cancel.msg_id)
            await uow.commit()
