"""All of the goods service's SQL, built once."""
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from shop.common.codes import ShopCode
from shop.infra.db import Query, ScopedRows, UnitOfWork, bind
from shop.infra.ledger import Amount, Ledger, LedgerKinds, Refusal, counter_adjustment, counter_updates
from shop.services.goods.contracts import MAX_STOCK
from shop.services.goods.models import goods, goods_number_log

g = goods.c

STOCK_IN, REDUCE, RESTORE, ADJUST = 0, 1, 2, 3

FIND = Query(sa.select(goods).where(g.goods_id == sa.bindparam("goods_id")))
INSERT = Query(
    sa.insert(goods).values(bind("goods_id", "goods_name", "goods_number", "goods_price", "goods_desc", "add_time"))
)
# The conditional update that stops overselling: one row changed, or not enough stock.
TAKE, GIVE_BACK = counter_updates(goods, "goods_id", "goods_number")
# The same, only at the client's price: an order reads no goods before its step (the step is the check).
TAKE_AT_PRICE = Query(
    sa.update(goods)
    .where(g.goods_id == sa.bindparam("goods_id"), g.goods_number >= sa.bindparam("n"),
           g.goods_price == sa.bindparam("price"))
    .values(goods_number=g.goods_number - sa.bindparam("n"))
)
ADJUSTMENT = counter_adjustment(goods, "goods_id", "goods_number", MAX_STOCK)
ALL_GOODS = Query(sa.select(goods))
STOCK = ScopedRows(sa.select(g.goods_id, g.goods_number), g.goods_id)  # a recount's goods, by id

LEDGER = Ledger(goods_number_log, LedgerKinds(put_in=STOCK_IN, take=REDUCE, give_back=RESTORE, adjust=ADJUST))
TAKE_AT_ONCE = LEDGER.at_once(TAKE_AT_PRICE, g.goods_id)  # an order of one goods: its step in one statement
# The refusal says what is left (and names the goods): the order's front door remembers a sold-out goods.
REFUSAL = Refusal(FIND, ShopCode.SHOP_GOODS_NO_EXIST, ShopCode.SHOP_GOODS_NUM_NOT_ENOUGH, report="goods_number")


async def find(uow: UnitOfWork, goods_id: int) -> Any:
    return await uow.fetchone(FIND, goods_id=goods_id)


async def insert(uow: UnitOfWork, **row: Any) -> None:
    await uow.execute(INSERT, **row)


async def take(uow: UnitOfWork, goods_id: int, n: int, price: Decimal | None = None) -> bool:
    if price is None:
        return await uow.execute(TAKE, goods_id=goods_id, n=n) == 1
    return await uow.execute(TAKE_AT_PRICE, goods_id=goods_id, n=n, price=price) == 1


async def adjust(uow: UnitOfWork, goods_id: int, delta: int) -> bool:
    return await uow.execute(ADJUSTMENT, goods_id=goods_id, delta=delta) == 1


async def give_back(uow: UnitOfWork, goods_id: int, n: Amount) -> None:
    await uow.execute(GIVE_BACK, goods_id=goods_id, n=int(n))

