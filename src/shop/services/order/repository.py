"""All of the order service's SQL, built once."""
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from shop.common.clock import epoch_ms, utcnow
from shop.common.ids import MINUTE_ALIGN, MINUTE_IDS, first_id_at
from shop.infra.db import AuditScope, Database, Query, Row, ScopedRows, UnitOfWork, bind
from shop.infra.db.group_commit import GroupCommit
from shop.infra.messaging import Message, Outbox
from shop.services.order import domain
from shop.services.order.contracts import Order, OrderLine, OrderQuery, OrderState
from shop.services.order.models import order, order_item

o = order.c
i = order_item.c

ORDER_COLUMNS = tuple(f for f in Order.__slots__ if f != "items")  # the lines have their own table
FIND = Query(sa.select(order).where(o.order_id == sa.bindparam("order_id")))
INSERT = Query(sa.insert(order).values({name: sa.bindparam(name) for name in ORDER_COLUMNS}))
INSERT_ITEM = Query(sa.insert(order_item).values(bind("order_id", "goods_id", "line_no", "goods_number",
                                                      "goods_price")))
# The lines of some orders: every query of orders (one, a page, an audit's scope) reads them after.
_LINES = sa.select(i.order_id, i.goods_id, i.line_no, i.goods_number, i.goods_price)
ITEMS = ScopedRows(_LINES, i.order_id)
# One order's (the most asked for: a cancel, a refund, a payment, GET /order/{id}): through its key,
# not a page's batch of ids.
ITEMS_OF_ORDER = Query(_LINES.where(i.order_id == sa.bindparam("order_id")))


def _guarded(t: domain.Transition, *given: str) -> Query:
    """A transition as one compare-and-set on the row: it changes the row only while the guard holds,
    so confirm and cancel can never both win, and a repeat changes nothing. `given`: columns the
    transition writes from its parameters too."""
    return Query(
        sa.update(order)
        .where(o.order_id == sa.bindparam("order_id"), *(o[f] == int(v) for f, v in t.guard.items()))
        .values({**{f: int(v) for f, v in t.sets.items()}, **{f: sa.bindparam("at") for f in t.stamps},
                 **{f: sa.bindparam(f) for f in given}})
    )


# A confirm writes the pricing too: the pre-order counted its coupon as nothing, the coupon's step
# answered its price (handlers.confirm_order).
PRICING = ("coupon_paid", "pay_amount")
CONFIRM = _guarded(domain.CONFIRM, *PRICING)
CONFIRM_PAID = _guarded(domain.CONFIRM_PAID, *PRICING)
CANCEL_UNPAID = _guarded(domain.CANCEL_UNPAID)
MARK_PAID = _guarded(domain.MARK_PAID)
REFUND = _guarded(domain.REFUND)
CANCEL_UNCONFIRMED = _guarded(domain.CANCEL_UNCONFIRMED)
STATUS = Query(sa.select(o.order_status, o.pay_status).where(o.order_id == sa.bindparam("order_id")))
SAGA_BATCH = 64  # the most orders a group commit of the saga carries (SagaStore)
# A batch's orders' statuses, locked until its transaction ends (a batched confirm decides on them):
# padded with -1, no order's id, so the statement is compiled once.
LOCK_STATUSES = Query(sa.select(o.order_id, o.order_status, o.pay_status)
                      .where(o.order_id.in_([sa.bindparam(f"k{n}") for n in range(SAGA_BATCH)]))
                      .with_for_update())
ALL = Query(sa.select(order))
STATE_COLUMNS = tuple(f for f in OrderState.__slots__ if f != "items")
OF_ORDERS = ScopedRows(sa.select(*(o[f] for f in STATE_COLUMNS)), o.order_id)
UNCONFIRMED = Query(sa.select(sa.func.count().label("n")).select_from(order)
                    .where(o.order_status == int(domain.OrderStatus.UNCONFIRMED)))  # by the status index


def _earned(dialect: str) -> sa.Select[Any]:
    """The points each user's paid orders earn (floor of each pay amount), for users lo <= id < hi:
    a recount's sum, computed here rather than shipping the orders."""
    # SQLite keeps money as integer cents (infra/types.py): integer division is the floor.
    points = o.pay_amount.op("/")(100) if dialect == "sqlite" else sa.func.floor(o.pay_amount)
    return (sa.select(o.user_id, sa.func.sum(points).label("points"))
            .where(o.user_id >= sa.bindparam("lo"), o.user_id < sa.bindparam("hi"),
                   o.order_status == int(domain.OrderStatus.CONFIRMED), o.pay_status == int(domain.PayStatus.PAID),
                   o.pay_amount > 0)
            .group_by(o.user_id))


EARNED = Query(_earned)


async def count_unconfirmed(uow: UnitOfWork) -> int:
    row = await uow.fetchone(UNCONFIRMED)
    return int(row["n"]) if row else 0


async def find(uow: UnitOfWork, order_id: int) -> Any:
    return await uow.fetchone(FIND, order_id=order_id)


async def insert(uow: UnitOfWork, orders: Sequence[Order]) -> None:
    """The orders' rows and their lines."""
    await uow.execute_many(INSERT, [{f: getattr(new, f) for f in ORDER_COLUMNS} for new in orders])
    await uow.execute_many(INSERT_ITEM, [
        {"order_id": new.order_id, "goods_id": line.goods_id, "line_no": n, "goods_number": line.goods_number,
         "goods_price": line.goods_price}
        for new in orders for n, line in enumerate(new.items)
    ])


async def lines_of(uow: UnitOfWork, order_ids: Sequence[int]) -> dict[int, list[OrderLine]]:
    """Each order's lines, in the client's order."""
    found = (await uow.fetchall(ITEMS_OF_ORDER, order_id=order_ids[0]) if len(order_ids) == 1
             else await ITEMS.by_ids(uow, order_ids))
    rows = sorted(found, key=lambda r: (r["order_id"], r["line_no"]))
    out: dict[int, list[OrderLine]] = {}
    for r in rows:
        out.setdefault(r["order_id"], []).append(OrderLine(r["goods_id"], r["goods_number"], r["goods_price"]))
    return out


def order_of(row: Row, items: list[OrderLine]) -> Order:
    return Order(**{f: row[f] for f in ORDER_COLUMNS}, items=items)


async def orders_of(uow: UnitOfWork, rows: Sequence[Row]) -> list[Order]:
    lines = await lines_of(uow, [r["order_id"] for r in rows])
    return [order_of(r, lines.get(r["order_id"], [])) for r in rows]


_state = operator.itemgetter(*STATE_COLUMNS)


async def states_of(uow: UnitOfWork, rows: Sequence[Row], scope: AuditScope) -> dict[int, OrderState]:
    """What the audit reads of these orders (of the scope): each with its lines' units per goods,
    read through the lines' key (order_id leads it) over the same range."""
    held: dict[int, dict[int, int]] = {}
    for r in await ITEMS.fetch(uow, scope):
        held.setdefault(r["order_id"], {})[r["goods_id"]] = r["goods_number"]
    return {r["order_id"]: OrderState(*_state(r), held.get(r["order_id"], {}))  # type: ignore[call-arg]
            for r in rows}


async def cancel_unpaid(uow: UnitOfWork, order_id: int, at: datetime | None = None) -> bool:
    return await uow.execute(CANCEL_UNPAID, order_id=order_id, at=at or utcnow()) == 1


async def mark_paid(uow: UnitOfWork, order_id: int, at: Any) -> bool:
    return await uow.execute(MARK_PAID, order_id=order_id, at=at) == 1


async def refund(uow: UnitOfWork, order_id: int, at: datetime | None = None) -> bool:
    return await uow.execute(REFUND, order_id=order_id, at=at or utcnow()) == 1


async def cancel_unconfirmed(uow: UnitOfWork, order_id: int, at: datetime | None = None) -> bool:
    return await uow.execute(CANCEL_UNCONFIRMED, order_id=order_id, at=at or utcnow()) == 1


async def status(uow: UnitOfWork, order_id: int) -> Any:
    return await uow.fetchone(STATUS, order_id=order_id)


@dataclass(frozen=True, slots=True)
class _Confirming:
    order: Order  # priced
    msg_id: str  # its armed cancel's
    paid: bool
    at: datetime
    rearm_at_ms: int

    @property
    def order_id(self) -> int:
        return self.order.order_id

    def confirmed(self) -> dict[str, Any]:
        """The confirm's parameters (CONFIRM, CONFIRM_PAID)."""
        return {"order_id": self.order.order_id, "at": self.at, "coupon_paid": self.order.coupon_paid,
                "pay_amount": self.order.pay_amount}


class SagaStore:
    """The saga's three transactions on the order's own database, each local and atomic
    (ARCHITECTURE.md point 5). The saga (handlers.confirm_order) calls only these, so it reads as
    the saga, and its unit tests run on a fake of this class.

    Saving a pre-order and confirming one are group commits (infra/db/group_commit.py): the orders
    placed at the same time share those transactions, each order's statements as they were.
    Measured: a round trip to PostgreSQL costs the order process about as much CPU as the statement
    costs the server, and an order made nine. Both are safe to write for a caller that went away:
    a pre-order is cancelled at its deadline (its process might as well have died), and a confirm
    is what the steps already done asked for (its reply lost, as a network can lose it)."""

    def __init__(self, db: Database, outbox: Outbox) -> None:
        self.db = db
        self.outbox = outbox
        self._pre_orders = GroupCommit(self._save_pre_orders, SAGA_BATCH)
        self._confirms = GroupCommit(self._confirm_all, SAGA_BATCH)

    async def save_pre_order(self, order: Order, cancel: Message, due_at_ms: int) -> None:
        """The pre-order (status 0) with its cancel armed for the deadline."""
        await self._pre_orders((order, self.outbox.stamped(cancel), due_at_ms))

    async def _save_pre_orders(self, batch: list[tuple[Order, Message, int]]) -> list[None]:
        async with self.db.unit_of_work() as uow:
            await insert(uow, [order for order, _, _ in batch])
            await self.outbox.add_many(uow, [(cancel, due_at_ms) for _, cancel, due_at_ms in batch])
            await uow.commit()
        return [None] * len(batch)

    async def confirm(self, order: Order, cancel: Message, *, paid: bool, at: datetime, rearm_at_ms: int) -> bool:
        """0 -> 1 by compare-and-set, with the order's pricing (`order` as the steps priced it);
        False if the deadline's cancel got there first. The armed
        cancel goes with it (paid: nothing left to time out), or is re-armed for the payment
        timeout: it leaves only if the order is still unpaid then (guard_cancel), driven by no
        scan of orders."""
        return await self._confirms(_Confirming(order, cancel.msg_id, paid, at, rearm_at_ms))

    async def _confirm_all(self, batch: list[_Confirming]) -> list[bool]:
        """One transaction: the batch's orders locked and read, and each one its transition allows
        confirmed, by the same compare-and-set (it holds under the lock)."""
        async with self.db.unit_of_work() as uow:
            ids = [c.order_id for c in batch] + [-1] * (SAGA_BATCH - len(batch))
            rows = await uow.fetchall(LOCK_STATUSES, **{f"k{n}": order_id for n, order_id in enumerate(ids)})
            statuses = {r["order_id"]: r for r in rows}
            won = [c for c in batch if c.order_id in statuses
                   and (domain.CONFIRM_PAID if c.paid else domain.CONFIRM).allowed(statuses[c.order_id])]
            await uow.execute_many(CONFIRM_PAID, [c.confirmed() for c in won if c.paid])
            await uow.execute_many(CONFIRM, [c.confirmed() for c in won if not c.paid])
            await self.outbox.delete_many(uow, [c.msg_id for c in won if c.paid])
            await self.outbox.make_due_many(uow, [(c.msg_id, c.rearm_at_ms) for c in won if not c.paid])
            await uow.commit()
        confirmed = {c.order_id for c in won}
        return [c.order_id in confirmed for c in batch]

    async def confirmed(self, order_id: int) -> bool:
        """Whether the order stands confirmed: what a confirm whose answer was lost did."""
        async with self.db.unit_of_work(readonly=True) as uow:
            row = await status(uow, order_id)
        return row is not None and row["order_status"] == domain.OrderStatus.CONFIRMED

    async def fail(self, order_id: int, cancel: Message) -> None:
        """0 -> 2 and the cancel due now, in one transaction."""
        async with self.db.unit_of_work() as uow:
            await cancel_unconfirmed(uow, order_id)
            await self.outbox.make_due(uow, cancel.msg_id)
            await uow.commit()


# Orders newest first, filtered, a page at a time. The keyset is the id, which grows with the
# order's creation time: a page continues below the last id of the previous one, and a time range
# is an id range too (widened by a second for clocks apart, add_time staying the truth), so every
# query walks an index (the key, or (user_id | order_status | pay_status, order_id)) in order and
# stops after one page. One statement per combination of filters, compiled once.
_LISTS: dict[frozenset[str], Query] = {}
_SLACK_MS = 1000


def _list_query(filters: frozenset[str]) -> Query:
    if filters not in _LISTS:
        where = [o.user_id == sa.bindparam("user_id")] if "user_id" in filters else []
        for f in ("order_status", "pay_status"):
            if f in filters:
                # With a user, his own index is the way in (a user has few orders): `+ 0` keeps a
                # planner without statistics (SQLite's, as the embedded shop runs it) from walking
                # every order of that status instead.
                where.append((o[f] + 0 if "user_id" in filters else o[f]) == sa.bindparam(f))
        if "from_time" in filters:
            where += [o.order_id >= sa.bindparam("from_id"), o.add_time >= sa.bindparam("from_time")]
        if "to_time" in filters:
            where += [o.order_id < sa.bindparam("to_id"), o.add_time < sa.bindparam("to_time")]
        if "before_id" in filters:
            where.append(o.order_id < sa.bindparam("before_id"))
        _LISTS[filters] = Query(sa.select(order).where(*where).order_by(o.order_id.desc()).limit(sa.bindparam("n")))
    return _LISTS[filters]


def list_statement(q: OrderQuery) -> tuple[Query, dict[str, Any]]:
    """The statement for this query and its parameters: one row more than a page, to tell whether
    there is a next one."""
    params: dict[str, Any] = {f: getattr(q, f) for f in ("user_id", "order_status", "pay_status", "from_time",
                                                          "to_time", "before_id") if getattr(q, f) is not None}
    if q.from_time is not None:
        params["from_id"] = first_id_at(epoch_ms(q.from_time) - _SLACK_MS)
    if q.to_time is not None:
        params["to_id"] = first_id_at(epoch_ms(q.to_time) + _SLACK_MS)
    return _list_query(frozenset(params)), {**params, "n": q.limit + 1}


async def list_orders(db: Database, q: OrderQuery) -> tuple[list[Order], bool]:
    """Up to q.limit orders, and whether there are more."""
    query, params = list_statement(q)
    async with db.unit_of_work(readonly=True) as uow:
        rows = list(await uow.fetchall(query, **params))
        return await orders_of(uow, rows[: q.limit]), len(rows) > q.limit


# The operator's overview, polled every few seconds: each part walks an index over the window only.
# The orders of the window are a range of the key (ids grow with time), grouped by the minute their
# id was made in (common/ids.py: the same arithmetic), their status, and whether they were confirmed
# (count(confirm_time) counts the rows that have one). The constants are written into the SQL, not
# bound, so GROUP BY repeats the very expression the SELECT has. The division is an integer one on
# every backend: SQLAlchemy's `//` is FLOOR(a / b) on MySQL, a decimal division whose result shows
# rounded to four places (a minute's last milliseconds read as the next minute); MariaDB floors its
# exact value, but DIV says what is meant without depending on that.
def _const(n: int) -> sa.ColumnElement[int]:
    return sa.literal_column(str(n), sa.BigInteger)


def _per_minute(dialect: str) -> sa.Select[Any]:
    shifted = o.order_id + _const(MINUTE_ALIGN)
    minute = shifted.self_group().op("DIV")(_const(MINUTE_IDS)) if dialect == "mysql" else shifted // _const(MINUTE_IDS)
    return (
        sa.select(minute.label("minute"), o.order_status, sa.func.count().label("placed"),
                  sa.func.count(o.confirm_time).label("confirmed"))
        .where(o.order_id >= sa.bindparam("from_id"))
        .group_by(minute, o.order_status)
    )


PER_MINUTE = Query(_per_minute)


def _count(*where: sa.ColumnElement[bool]) -> sa.ScalarSelect[int]:
    return sa.select(sa.func.count()).select_from(order).where(*where).scalar_subquery()


OVERVIEW_COUNTS = Query(sa.select(
    _count(o.cancel_time >= sa.bindparam("since")).label("cancelled"),
    _count(o.refund_time >= sa.bindparam("since")).label("refunded"),
    _count(o.order_status == int(domain.OrderStatus.UNCONFIRMED)).label("unconfirmed"),
))
