"""All of the pay service's SQL, built once."""
from typing import Any

import sqlalchemy as sa

from shop.infra.db import Query, ScopedRows, UnitOfWork, bind, insert_ignore
from shop.services.pay.domain import PaymentStatus
from shop.services.pay.models import pay

p = pay.c

FIND = Query(sa.select(pay).where(p.pay_id == sa.bindparam("pay_id")))
FIND_BY_ORDER = Query(sa.select(pay).where(p.order_id == sa.bindparam("order_id")))
INSERT = insert_ignore(
    pay, **bind("pay_id", "order_id", "user_id", "pay_amount", "create_time"), is_paid=int(PaymentStatus.UNPAID),
    is_refunded=0,
)
# The notification's compare-and-set: of many notifications for one payment, one marks it paid.
MARK_PAID = Query(
    sa.update(pay)
    .where(p.pay_id == sa.bindparam("pay_id"), p.is_paid == int(PaymentStatus.UNPAID))
    .values(is_paid=int(PaymentStatus.PAID), trade_no=sa.bindparam("trade_no"), paid_time=sa.bindparam("paid_time"))
)
MARK_REFUNDED = Query(
    sa.update(pay)
    .where(p.pay_id == sa.bindparam("pay_id"), p.is_paid == int(PaymentStatus.PAID), p.is_refunded == 0)
    .values(is_refunded=1, refund_time=sa.bindparam("refund_time"))
)
ALL = Query(sa.select(pay))
# One payment per order: found through the unique index on order_id.
OF_ORDERS = ScopedRows(sa.select(p.order_id, p.pay_id, p.is_paid, p.is_refunded), p.order_id)


async def find(uow: UnitOfWork, pay_id: int) -> Any:
    return await uow.fetchone(FIND, pay_id=pay_id)


async def find_by_order(uow: UnitOfWork, order_id: int) -> Any:
    return await uow.fetchone(FIND_BY_ORDER, order_id=order_id)


async def insert(uow: UnitOfWork, **row: Any) -> bool:
    return await uow.execute(INSERT, **row) == 1


async def mark_paid(uow: UnitOfWork, pay_id: int, trade_no: str, at: Any) -> bool:
    return await uow.execute(MARK_PAID, pay_id=pay_id, trade_no=trade_no, paid_time=at) == 1


async def mark_refunded(uow: UnitOfWork, pay_id: int, at: Any) -> bool:
    return await uow.execute(MARK_REFUNDED, pay_id=pay_id, refund_time=at) == 1
