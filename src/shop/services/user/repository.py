"""All of the user service's SQL, built once."""
from typing import Any

import sqlalchemy as sa

from shop.common.codes import ShopCode
from shop.infra.db import Query, ScopedRows, UnitOfWork, bind, insert_ignore, upsert
from shop.infra.ledger import Ledger, LedgerKinds, Refusal, counter_updates
from shop.services.user.contracts import MoneyLogType
from shop.services.user.models import login_attempt, user, user_money_log

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
PAY_AT_ONCE = LEDGER.at_once(TAKE, u.user_id)  # a payment's step in one statement


# A login attempt: counted in the name's window, or the first of a new one when the window has
# passed (the same expiry as domain.expired, in SQL so that the row's lock decides it), in one
# upsert (infra/db: why one statement). attempts is set before window_start: on MySQL attempts'
# CASE must read the old window_start.
_a = login_attempt.c
_EXPIRED = _a.window_start <= sa.bindparam("cutoff")
COUNT_ATTEMPT = upsert(
    login_attempt, _a.user_name, {"user_name": sa.bindparam("user_name"), "window_start": sa.bindparam("now"),
                                  "attempts": 1},
    [("attempts", sa.case((_EXPIRED, 1), else_=_a.attempts + 1)),
     ("window_start", sa.case((_EXPIRED, sa.bindparam("now")), else_=_a.window_start))],
)
FIND_ATTEMPTS = Query(sa.select(_a.attempts, _a.window_start).where(_a.user_name == sa.bindparam("user_name")))
FORGET_ATTEMPTS = Query(sa.delete(login_attempt).where(_a.user_name == sa.bindparam("user_name")))
PRUNE_ATTEMPTS = Query(sa.delete(login_attempt).where(_EXPIRED))


async def count_attempt(uow: UnitOfWork, user_name: str, now: int, window_ms: int) -> tuple[int, int]:
    """This attempt counted: (attempts in the window so far, this one included; the window's start)."""
    await uow.execute(COUNT_ATTEMPT, user_name=user_name, now=now, cutoff=now - window_ms)
    row = await uow.fetchone(FIND_ATTEMPTS, user_name=user_name)
    assert row is not None, "written just now, in this transaction"
    return row["attempts"], row["window_start"]


async def forget_attempts(uow: UnitOfWork, user_name: str) -> None:
    await uow.execute(FORGET_ATTEMPTS, user_name=user_name)


async def prune_attempts(uow: UnitOfWork, now: int, window_ms: int) -> int:
    return await uow.execute(PRUNE_ATTEMPTS, cutoff=now - window_ms)


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

