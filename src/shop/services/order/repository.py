"""All of the order service's SQL, built once."""
from typing import Any

import sqlalchemy as sa

from shop.infra.db import Query, UnitOfWork
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
    .values(order_status=1, confirm_time=sa.bindparam("confirm_time"), pay_status=2, pay_time=sa.bindparam("confirm_time"))
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
