"""All of the coupon service's SQL, built once."""
from typing import Any

import sqlalchemy as sa

from shop.common.codes import ShopCode
from shop.infra.db import Query, ScopedRows, UnitOfWork, bind
from shop.infra.ledger import Ledger, LedgerKinds, Refusal
from shop.services.coupon.models import coupon, coupon_log

c = coupon.c

USE, RELEASE = 1, 2

FIND = Query(sa.select(coupon).where(c.coupon_id == sa.bindparam("coupon_id")))
INSERT = Query(sa.insert(coupon).values(**bind("coupon_id", "coupon_price", "user_id"), is_used=0))
# The conditional update: an unused coupon of this user, or nothing.
TAKE = Query(
    sa.update(coupon)
    .where(c.coupon_id == sa.bindparam("coupon_id"), c.user_id == sa.bindparam("user_id"), c.is_used == 0)
    .values(is_used=1, order_id=sa.bindparam("order_id"), used_time=sa.bindparam("used_time"))
)
GIVE_BACK = Query(
    sa.update(coupon)
    .where(c.coupon_id == sa.bindparam("coupon_id"), c.order_id == sa.bindparam("held_by"), c.is_used == 1)
    .values(is_used=0, order_id=None, used_time=None)
)
ALL_COUPONS = Query(sa.select(coupon))
USED_BY = ScopedRows(sa.select(coupon), coupon.c.order_id)  # the coupons a scope's orders used

# A use takes the coupon (amount 1) for one order; a release gives it back.
LEDGER = Ledger(coupon_log, LedgerKinds(take=USE, give_back=RELEASE))
REFUSAL = Refusal(FIND, ShopCode.SHOP_COUPON_NO_EXIST, ShopCode.SHOP_COUPON_INVALID)
USE_AT_ONCE = LEDGER.at_once(TAKE, c.coupon_price)  # a use in one statement, answering the coupon's price


async def find(uow: UnitOfWork, coupon_id: int) -> Any:
    return await uow.fetchone(FIND, coupon_id=coupon_id)


async def insert(uow: UnitOfWork, **row: Any) -> None:
    await uow.execute(INSERT, **row)


async def take(uow: UnitOfWork, coupon_id: int, user_id: int, order_id: int, at: Any) -> bool:
    return await uow.execute(TAKE, coupon_id=coupon_id, user_id=user_id, order_id=order_id, used_time=at) == 1


async def give_back(uow: UnitOfWork, coupon_id: int, order_id: int) -> None:
    await uow.execute(GIVE_BACK, coupon_id=coupon_id, held_by=order_id)

