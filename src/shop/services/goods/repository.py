"""All of the goods service's SQL, built once."""
from typing import Any

import sqlalchemy as sa

from shop.infra.db import Query, UnitOfWork, bind, insert_ignore
from shop.services.goods.models import goods, goods_number_log

g, lg = goods.c, goods_number_log.c

STOCK_IN, REDUCE, RESTORE = 0, 1, 2

FIND = Query(sa.select(goods).where(g.goods_id == sa.bindparam("goods_id")))
INSERT = Query(sa.insert(goods).values(bind("goods_id", "goods_name", "goods_number", "goods_price", "goods_desc", "add_time")))
# The conditional update that stops overselling: one row changed, or not enough stock.
TAKE = Query(
    sa.update(goods)
    .where(g.goods_id == sa.bindparam("goods_id"), g.goods_number >= sa.bindparam("n"))
    .values(goods_number=g.goods_number - sa.bindparam("n"))
)
GIVE_BACK = Query(
    sa.update(goods).where(g.goods_id == sa.bindparam("goods_id")).values(goods_number=g.goods_number + sa.bindparam("n"))
)
LOG = insert_ignore(goods_number_log, **bind("goods_id", "order_id", "log_type", "goods_number", "log_time"))
FIND_LOG = Query(
    sa.select(goods_number_log).where(
        lg.goods_id == sa.bindparam("goods_id"), lg.order_id == sa.bindparam("order_id"), lg.log_type == sa.bindparam("log_type")
    )
)
ALL_GOODS = Query(sa.select(goods))
ALL_LOGS = Query(sa.select(goods_number_log))


async def find(uow: UnitOfWork, goods_id: int) -> Any:
    return await uow.fetchone(FIND, goods_id=goods_id)


async def insert(uow: UnitOfWork, **row: Any) -> None:
    await uow.execute(INSERT, **row)


async def take(uow: UnitOfWork, goods_id: int, n: int) -> bool:
    return await uow.execute(TAKE, goods_id=goods_id, n=n) == 1


async def give_back(uow: UnitOfWork, goods_id: int, n: int) -> None:
    await uow.execute(GIVE_BACK, goods_id=goods_id, n=n)


async def log(uow: UnitOfWork, goods_id: int, order_id: int, log_type: int, n: int, at: Any) -> bool:
    """Write a ledger row; False if (goods, order, type) already has one."""
    return await uow.execute(LOG, goods_id=goods_id, order_id=order_id, log_type=log_type, goods_number=n, log_time=at) == 1


async def find_log(uow: UnitOfWork, goods_id: int, order_id: int, log_type: int) -> Any:
    return await uow.fetchone(FIND_LOG, goods_id=goods_id, order_id=order_id, log_type=log_type)
