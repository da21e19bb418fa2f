"""All of the log service's SQL, built once."""
from typing import Any

import sqlalchemy as sa

from shop.infra.db import Query, ScopedRows, UnitOfWork, bind, insert_ignore
from shop.services.log.models import pay_log

lg = pay_log.c

INSERT = insert_ignore(pay_log, **bind("order_id", "pay_id", "user_id", "pay_amount", "log_time"))
FOR_ORDER = Query(sa.select(pay_log).where(lg.order_id == sa.bindparam("order_id")).order_by(lg.log_time))
ALL = Query(sa.select(lg.order_id, lg.pay_id))
OF_ORDERS = ScopedRows(sa.select(lg.order_id, lg.pay_id), lg.order_id)  # the primary key leads with order_id


async def insert(uow: UnitOfWork, **row: Any) -> bool:
    return await uow.execute(INSERT, **row) == 1
