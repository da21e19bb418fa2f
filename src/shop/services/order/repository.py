"""All of the order service's SQL, built once."""
from typing import Any

import sqlalchemy as sa

from shop.infra.db import Query, UnitOfWork
from shop.services.order import domain
from shop.services.order.models import order

o = order.c

FIND = Query(sa.select(order).where(o.order_id == sa.bindparam("order_id")))
INSERT = Query(sa.insert(order).values({c.name: sa.bindparam(c.name) for c in order.columns}))


def _guarded(t: domain.Transition) -> Query:
    """A transition as one compare-and-set on the row: it changes the row only while the guard holds,
    so confirm and cancel can never both win, and a repeat changes nothing."""
    return Query(
        sa.update(order)
        .where(o.order_id == sa.bindparam("order_id"), *(o[f] == int(v) for f, v in t.guard.items()))
        .values({**{f: int(v) for f, v in t.sets.items()}, **{f: sa.bindparam("at") for f in t.stamps}})
    )


CONFIRM = _guarded(domain.CONFIRM)
CONFIRM_PAID = _guarded(domain.CONFIRM_PAID)
CANCEL_UNPAID = _guarded(domain.CANCEL_UNPAID)
MARK_PAID = _guarded(domain.MARK_PAID)
REFUND = _guarded(domain.REFUND)
CANCEL_UNCONFIRMED = _guarded(domain.CANCEL_UNCONFIRMED)
STATUS = Query(sa.select(o.order_status, o.pay_status).where(o.order_id == sa.bindparam("order_id")))
ALL = Query(sa.select(order))


async def find(uow: UnitOfWork, order_id: int) -> Any:
    return await uow.fetchone(FIND, order_id=order_id)


async def insert(uow: UnitOfWork, row: dict[str, Any]) -> None:
    await uow.execute(INSERT, **row)


async def confirm(uow: UnitOfWork, order_id: int, at: Any) -> bool:
    return await uow.execute(CONFIRM, order_id=order_id, at=at) == 1


async def confirm_paid(uow: UnitOfWork, order_id: int, at: Any) -> bool:
    return await uow.execute(CONFIRM_PAID, order_id=order_id, at=at) == 1


async def cancel_unpaid(uow: UnitOfWork, order_id: int) -> bool:
    return await uow.execute(CANCEL_UNPAID, order_id=order_id) == 1


async def mark_paid(uow: UnitOfWork, order_id: int, at: Any) -> bool:
    return await uow.execute(MARK_PAID, order_id=order_id, at=at) == 1


async def refund(uow: UnitOfWork, order_id: int) -> bool:
    return await uow.execute(REFUND, order_id=order_id) == 1


async def cancel_unconfirmed(uow: UnitOfWork, order_id: int) -> bool:
    return await uow.execute(CANCEL_UNCONFIRMED, order_id=order_id) == 1


async def status(uow: UnitOfWork, order_id: int) -> Any:
    return await uow.fetchone(STATUS, order_id=order_id)
