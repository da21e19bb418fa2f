"""All of the user service's SQL, built once."""
from typing import Any

import sqlalchemy as sa

from shop.common.codes import ShopCode
from shop.infra.db import Query, ScopedRows, UnitOfWork, bind, insert_ignore
from shop.infra.ledger import Ledger, LedgerKinds, Refusal, counter_updates
from shop.services.user.contracts import MoneyLogType
from shop.services.user.models import user, user_money_log

u = user.c

FIND = Query(sa.select(user).where(u.user_id == sa.bindparam("user_id")))
FIND_BY_NAME = Query(sa.select(user).where(u.user_name == sa.bindparam("user_name")))
INSERT = insert_ignore(
    user, **bind("user_id", "user_name", "user_password", "user_mobile", "user_score", "user_reg_time", "user_money")
)
# The conditional update that stops an overdraft.
TAKE, GIVE = counter_updates(user, "user_id", "user_money")
ADD_SCORE = Query(
    sa.update(user).where(u.user_id == sa.bindparam("user_id")).values(user_score=u.user_score + sa.bindparam("points"))
)
ALL_USERS = Query(sa.select(user.c.user_id, user.c.user_money, user.c.user_score))
USERS = ScopedRows(sa.select(user.c.user_id, user.c.user_money, user.c.user_score), user.c.user_id)  # a recount's

LEDGER = Ledger(
    user_money_log, LedgerKinds(put_in=MoneyLogType.DEPOSIT, take=MoneyLogType.PAID, give_back=MoneyLogType.REFUND),
)
REFUSAL = Refusal(FIND, ShopCode.SHOP_USER_NO_EXIST, ShopCode.SHOP_MONEY_PAID_INVALID)


async def find(uow: UnitOfWork, user_id: int) -> Any:
    return await uow.fetchone(FIND, user_id=user_id)


async def find_by_name(uow: UnitOfWork, user_name: str) -> Any:
    return await uow.fetchone(FIND_BY_NAME, user_name=user_name)


async def insert(uow: UnitOfWork, **row: Any) -> bool:
    """False if the user name (or id) is taken."""
    return await uow.execute(INSERT, **row) == 1


async def take(uow: UnitOfWork, user_id: int, money: Any) -> bool:
    return await uow.execute(TAKE, user_id=user_id, n=money) == 1


async def give(uow: UnitOfWork, user_id: int, money: Any) -> None:
    await uow.execute(GIVE, user_id=user_id, n=money)


async def add_score(uow: UnitOfWork, user_id: int, points: int) -> None:
    await uow.execute(ADD_SCORE, user_id=user_id, points=points)

