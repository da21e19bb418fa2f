"""One ledger for every participant: the idempotency key and the barrier (ARCHITECTURE.md 3 and 4).

A participant's step for an order (stock taken, a coupon used, a balance paid) is a row in the
service's ledger table, keyed by the table's primary key (entity, order, kind), written in the
step's own transaction *before* its conditional update. The one row is then both:

- the idempotency key: a repeated step finds its row and changes nothing;
- the barrier: a compensation that finds no step writes an empty take row (null compensation),
  and a step arriving after it finds that row and refuses (no hanging).

A step and its compensation meet on that key's unique index, so they are ordered by the
database, in any process: whichever inserts second waits for the first to commit or roll back,
then reads what it left. A step refused by its conditional update leaves nothing, because its
unit of work is left without commit. Steps for distinct entities of one order are distinct keys:
one transaction may take several (a cart's lines), all or nothing.

An operator's adjustment (a restock, a removal) is a row of its own kind, keyed by a fresh id in
the order column, or by one derived from the operator's idempotency key, and holding the signed
change: it counts in the entity's sum and is no order's step (never taken, given back, nor in a
timeline). Under a derived key, a repeat finds its row and changes nothing, as a step's does.

Amounts go in and out in the amount column's own type (a count, or money); the audit's facts are
Decimal throughout.
"""
from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql import visitors
from sqlalchemy.sql.elements import BindParameter

from shop.common.clock import utcnow
from shop.common.codes import ShopCode
from shop.common.errors import ShopError, invalid
from shop.common.timeline import TimelineEvent
from shop.infra import metrics
from shop.infra.db import AtOnce, AuditScope, Database, Query, Row, ScopedRows, UnitOfWork, insert_ignore
from shop.infra.types import Timestamp

Amount = int | Decimal
Change = Callable[[], Awaitable[bool]]  # the service's conditional update: did one row change?
Undo = Callable[[Amount], Awaitable[None]]  # gives back what a step took


@dataclass(frozen=True, slots=True)
class LedgerColumns:
    """The names a service's ledger table gives the ledger's columns."""

    entity: str
    order: str
    kind: str
    amount: str
    time: str


@dataclass(frozen=True, slots=True)
class LedgerKinds:
    """The values of the kind column. A coupon is never put in (it exists or it does not), nor adjusted."""

    take: int
    give_back: int
    put_in: int | None = None
    adjust: int | None = None  # an operator's signed change, keyed by an id of its own


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a service's conditional update changed nothing: the entity is missing (`find`, by the
    ledger's entity column, finds no row), or it refused (not enough stock, a used coupon, ...).

    `report`: a column of the row `find` reads whose value the refusal tells the caller (the stock
    left: the front door's sold-out gate reads it), the entity named with it, both in the camelCase
    of the API ({"goodsId": "7", "goodsNumber": 0}). Opt-in per service: a user's balance is
    nobody's business but the user's."""

    find: Query
    missing: ShopCode
    refused: ShopCode
    report: str | None = None


@dataclass(frozen=True, slots=True)
class Taken:
    """What a step holds: on a repeat, the first call's amount, not this call's."""

    amount: Amount
    repeated: bool


@dataclass(frozen=True, slots=True)
class LedgerFacts:
    """A ledger as the audit reads it. Plain dicts of int and Decimal, so it crosses JSON and
    comes back through pydantic's TypeAdapter unchanged."""

    ledger: dict[int, Decimal] = field(default_factory=dict)  # entity -> put in - taken + given back + adjusted
    taken: dict[int, dict[int, Decimal]] = field(default_factory=dict)  # order -> entity -> taken
    returned: dict[int, dict[int, Decimal]] = field(default_factory=dict)  # order -> entity -> given back

    def held(self, order_id: int) -> dict[int, Decimal]:
        """What the order still holds, per entity (taken less given back), where it is not zero."""
        taken = self.taken.get(order_id)
        if not taken:
            return {}
        returned = self.returned.get(order_id, {})
        return {e: n - returned.get(e, 0) for e, n in taken.items() if n != returned.get(e, 0)}


def counter_updates(table: sa.Table, key: str, counter: str) -> tuple[Query, Query]:
    """A counter's conditional take and its give-back, ARCHITECTURE.md point 2: `UPDATE t SET c = c - :n
    WHERE key = :key AND c >= :n` changes one row or none (not enough: stock, a balance), so two takes
    racing for the last units can never both win; and `c = c + :n` for the compensation."""
    c, k = table.c[counter], table.c[key]
    n: sa.BindParameter[Any] = sa.bindparam("n")
    take = sa.update(table).where(k == sa.bindparam(key), c >= n).values({counter: c - n})
    give = sa.update(table).where(k == sa.bindparam(key)).values({counter: c + n})
    return Query(take), Query(give)


def counter_adjustment(table: sa.Table, key: str, counter: str, most: int) -> Query:
    """An operator's conditional change of a counter by a signed :delta: `c = c + :delta WHERE key = :key
    AND c + :delta BETWEEN 0 AND most` changes one row or none, so a removal racing orders for the
    last units never takes the counter below 0, and an addition never past what the column holds."""
    c, k = table.c[counter], table.c[key]
    delta: sa.BindParameter[Any] = sa.bindparam("delta")
    return Query(sa.update(table).where(k == sa.bindparam(key), (c + delta).between(0, most))
                 .values({counter: c + delta}))


def ledger_table(
    metadata: sa.MetaData, name: str, *, entity: str, amount: str, amount_type: sa.types.TypeEngine[Any],
    kind: str = "log_type", time: str = "log_time",
) -> sa.Table:
    """A service's ledger table (the original's names kept): one row per (entity, order, kind), the
    key that makes a step idempotent and leaves a compensation's barrier."""
    table = sa.Table(
        name, metadata,
        *(sa.Column(key, sa.BigInteger if key != kind else sa.Integer, primary_key=True, autoincrement=False)
          for key in (entity, "order_id", kind)),
        sa.Column(amount, amount_type, nullable=False),
        sa.Column(time, Timestamp(), nullable=False),
        sa.Index(f"ix_{name}_order_id", "order_id"),  # an order's timeline
    )
    table.info["ledger"] = LedgerColumns(entity=entity, order="order_id", kind=kind, amount=amount, time=time)
    return table


def adjustment_key(idempotency_key: str) -> int:
    """The order column's key of an adjustment its operator named (an Idempotency-Key): negative, so
    no order's id and no fresh adjustment's (positive snowflakes) is ever it, nor does an audit's
    scope of orders reach it; 62 bits of the name's SHA-256, so two names meet on one entity with
    odds of 2^-62."""
    return -1 - (int.from_bytes(hashlib.sha256(idempotency_key.encode()).digest()[:8], "big") >> 2)


def _positive(amount: Amount) -> None:
    if amount <= 0:
        raise invalid("a step takes a positive amount")  # an empty take row is the barrier


def _camel(column: str) -> str:
    head, *rest = column.split("_")
    return head + "".join(w.title() for w in rest)


class Ledger:
    """The ledger over one service's table (ledger_table)."""

    def __init__(self, table: sa.Table, kinds: LedgerKinds) -> None:
        self.columns = columns = table.info["ledger"]
        self._table = table
        self.kinds = kinds
        self._service = columns.entity.removesuffix("_id")  # goods_id -> goods: the metrics' label
        c = table.c
        amount = c[columns.amount]
        # The barrier's empty amount, in the column's own type (SQLite binds every Decimal as cents).
        self._zero: Amount = amount.type.python_type(0)
        self._write = insert_ignore(table, **{
            columns.entity: sa.bindparam("entity"), columns.order: sa.bindparam("order"),
            columns.kind: sa.bindparam("kind"), columns.amount: sa.bindparam("amount"),
            columns.time: sa.bindparam("at"),
        })
        self._find = Query(sa.select(amount).where(
            c[columns.entity] == sa.bindparam("entity"), c[columns.order] == sa.bindparam("order"),
            c[columns.kind] == sa.bindparam("kind"),
        ))
        self._all = Query(sa.select(c[columns.entity], c[columns.order], c[columns.kind], amount))
        self._scoped = ScopedRows(sa.select(c[columns.entity], c[columns.order], c[columns.kind], amount),
                                  c[columns.order])  # through the order_id index
        signs = [(c[columns.kind] == kinds.take, -amount)]  # every other kind adds its amount (signed: an adjustment's)
        # The entity's sum in the database (the primary key leads with the entity): a recount ships
        # one number per entity, not its rows.
        self._totals = Query(
            sa.select(c[columns.entity].label("entity"), sa.func.sum(sa.case(*signs, else_=amount)).label("total"))
            .where(c[columns.entity] >= sa.bindparam("lo"), c[columns.entity] < sa.bindparam("hi"))
            .group_by(c[columns.entity])
        )
        self._of_order = Query(sa.select(c[columns.entity], c[columns.kind], amount, c[columns.time])
                               .where(c[columns.order] == sa.bindparam("order")))

    async def put_in(self, uow: UnitOfWork, entity_id: int, amount: Amount, at: datetime | None = None) -> None:
        """An operator's stock-in or opening deposit (order 0): what the entity's sum starts from."""
        if self.kinds.put_in is None:
            raise ValueError("this ledger has nothing put in")
        await self._record(uow, entity_id, 0, self.kinds.put_in, amount, at or utcnow())

    async def adjust(self, uow: UnitOfWork, entity_id: int, key: int, amount: Amount, change: Change,
                     refusal: Refusal) -> None:
        """An operator's signed change of the entity (`change`, its conditional update), in the
        caller's transaction, recorded under `key`: a fresh id, or one derived from the operator's
        idempotency key (adjustment_key). Nothing changes when the key has this very change already
        (a repeat); a key that holds another change is refused. Written before the
        update, as a step's is: a second change under the same key waits for the first's commit and
        then finds it. When `change` changes nothing: the entity is missing, a removal finds too
        little (refusal.refused), or an addition would pass the column's bound (invalid). Told by the
        sign, not by a second read: that read could see a later commit and give another reason than
        the one that held. Each refusal leaves the caller without commit, which takes the row back."""
        if self.kinds.adjust is None:
            raise ValueError("this ledger has no adjustments")
        if not amount:
            raise invalid("an adjustment changes something")
        if not await self._record(uow, entity_id, key, self.kinds.adjust, amount, utcnow()):
            if await self._recorded(uow, entity_id, key, self.kinds.adjust) != amount:
                raise invalid("this Idempotency-Key was used for another change of this entity")
            return
        if not await change():
            if await uow.fetchone(refusal.find, **{self.columns.entity: entity_id}) is None:
                raise ShopError(refusal.missing)
            if amount < 0:
                raise ShopError(refusal.refused)
            raise invalid("the result would pass the largest amount the entity can hold")

    async def take(
        self, uow: UnitOfWork, entity_id: int, order_id: int, amount: Amount, change: Change, refusal: Refusal,
    ) -> Taken:
        """The order's step on one entity, in the caller's transaction. When `change` changes
        nothing, the refusal's ShopError: the caller leaves without commit, which takes the ledger
        row back with everything else the transaction wrote."""
        _positive(amount)
        if not await self._record(uow, entity_id, order_id, self.kinds.take, amount, utcnow()):
            first = await self._recorded(uow, entity_id, order_id, self.kinds.take)
            if not first:
                # The order's compensation got here first: this step came late and must not hang.
                raise ShopError(ShopCode.SHOP_ORDER_STATUS_INVALID, "the order was already cancelled")
            return Taken(first, repeated=True)
        if not await change():
            row = await uow.fetchone(refusal.find, **{self.columns.entity: entity_id})
            if refusal.report is None:
                raise ShopError(refusal.missing if row is None else refusal.refused)
            named = {_camel(self.columns.entity): str(entity_id)}
            if row is None:
                raise ShopError(refusal.missing, data=named)
            raise ShopError(refusal.refused, data={**named, _camel(refusal.report): row[refusal.report]})
        return Taken(amount, repeated=False)

    def at_once(self, change: Query, answer: sa.ColumnElement[Any], *more: sa.ColumnElement[Any]) -> AtOnce:
        """The step as one statement (take_at_once), for a database that writes at once: `change`,
        the service's conditional update, and the take row written from the row it changed,

            WITH changed AS (UPDATE entity ... RETURNING answer),
                 recorded AS (INSERT INTO ledger SELECT :entity, :order, take, :amount, :at FROM changed)
            SELECT answer FROM changed, recorded

        The update comes first here and the ledger row second (take writes the row first), and
        the ledger's key still decides: a repeated step, or one whose compensation came first,
        breaks the key (after waiting for the other's commit, as in take) and the whole statement
        is undone, its update with it. A refused update changes no row, so no take row is written.

        Several steps go the same way in one statement (`many`): each of the step's parameters an
        array, unnested into one row per step; a step whose take row is there already is left out
        (a repeat, a late step: the slow way tells which); the update joins the rest, and each row
        it changed answers with its step's place. Two steps on one entity in one statement: the
        update changes the row once, for one of them, and the other goes the slow way."""
        col, table = self.columns, self._table
        update = change.statement("postgresql")
        assert isinstance(update, sa.Update), "a step's change is an UPDATE"
        changed = update.returning(answer, *more).cte("changed")
        types = {name: table.c[name].type for name in (col.entity, col.order, col.amount, col.time)}
        recorded = (
            sa.insert(table)
            .from_select([col.entity, col.order, col.kind, col.amount, col.time], sa.select(
                sa.bindparam("entity", type_=types[col.entity]), sa.bindparam("order", type_=types[col.order]),
                sa.literal(self.kinds.take, sa.Integer), sa.bindparam("amount", type_=types[col.amount]),
                sa.bindparam("at", type_=types[col.time])).select_from(changed))
            .returning(table.c[col.order])
            .cte("recorded")
        )
        one = Query(sa.select(*changed.c).select_from(changed).join(recorded, sa.true()))
        many, params = self._at_once_many(update, answer, *more)
        return AtOnce(one, many, params)

    def _at_once_many(self, update: sa.Update, *answers: sa.ColumnElement[Any]) -> tuple[Query, tuple[str, ...]]:
        col, c = self.columns, self._table.c
        # The update's own parameters (a literal of its SET is not one), typed as their columns.
        own: dict[str, sa.types.TypeEngine[Any]] = {}

        def typed(bind: BindParameter[Any]) -> None:
            if bind.required and bind.key not in own:
                t = bind.type
                own[bind.key] = update.table.c[bind.key].type if isinstance(t, sa.types.NullType) else t

        visitors.traverse(update, {}, {"bindparam": typed})
        each = {"entity": c[col.entity].type, "order": c[col.order].type, "amount": c[col.amount].type,
                "at": c[col.time].type, **own, "at_once_n": sa.Integer()}
        steps = sa.select(*(sa.func.unnest(sa.bindparam(f"{name}_each", type_=ARRAY(t))).label(name)
                            for name, t in each.items())).cte("steps")
        fresh = sa.select(steps).where(~sa.exists().where(
            c[col.entity] == steps.c.entity, c[col.order] == steps.c.order, c[col.kind] == self.kinds.take,
        )).cte("fresh")
        def from_fresh(element: Any, **kw: Any) -> Any:
            return fresh.c[element.key] if isinstance(element, BindParameter) and element.key in own else None

        opts: dict[str, Any] = {}
        joined = visitors.replacement_traverse(update, opts, from_fresh)
        assert isinstance(joined, sa.Update)
        changed = joined.returning(*answers, *(fresh.c[name] for name in ("at_once_n", "entity", "order", "amount",
                                                                           "at"))).cte("changed")
        recorded = (
            sa.insert(self._table)
            .from_select([col.entity, col.order, col.kind, col.amount, col.time], sa.select(
                changed.c.entity, changed.c.order, sa.literal(self.kinds.take, sa.Integer), changed.c.amount,
                changed.c.at))
            .returning(c[col.entity], c[col.order])
            .cte("recorded")
        )
        answered = [changed.c[a.name] for a in answers if isinstance(a, sa.ColumnClause)]
        many = sa.select(*answered, changed.c.at_once_n).select_from(changed).join(recorded, sa.and_(
            recorded.c[col.entity] == changed.c.entity, recorded.c[col.order] == changed.c.order))
        return Query(many), tuple(name for name in each if name != "at_once_n")

    async def take_at_once(self, db: Database, step: AtOnce, entity_id: int, order_id: int, amount: Amount, /,
                           **params: Any) -> Row | None:
        """The order's step on one entity in one round trip, where the database writes at once
        (`step`, from at_once; `params`, its update's): the row it answers if the step was taken now.
        None when it was not: not that database, refused, repeated, or late (its compensation came
        first); the caller then runs the step in a transaction of its own (take), which tells which.
        A refused step thus costs two tries, a taken one a single statement instead of four, or a
        share of one when several are asked for at once (Database.write_at_once)."""
        if not db.writes_at_once:
            return None
        _positive(amount)  # before the statement: its update would add what a negative step "takes"
        return await db.write_at_once(step, entity=entity_id, order=order_id, amount=amount, at=utcnow(), **params)

    async def give_back(self, uow: UnitOfWork, entity_id: int, order_id: int, undo: Undo) -> Amount:
        """Undo what the order's step took, once; if it took nothing, make sure it never will.
        Returns what was given back now (nothing on a repeat or a null compensation)."""
        now = utcnow()
        if await self._record(uow, entity_id, order_id, self.kinds.take, self._zero, now):
            # Null compensation: the empty take row is the barrier, the give-back row its key.
            await self._record(uow, entity_id, order_id, self.kinds.give_back, self._zero, now)
            metrics.barrier_left(self._service)
            return self._zero
        taken = await self._recorded(uow, entity_id, order_id, self.kinds.take)
        # The give-back row is keyed too: a repeated compensation finds it and gives nothing.
        if await self._record(uow, entity_id, order_id, self.kinds.give_back, taken, now) and taken:
            await undo(taken)
            # Counted in the consumer's transaction: one that fails to commit is counted again on
            # its retry. A metric may overcount there; the ledger never does.
            metrics.compensated(self._service)
            return taken
        return self._zero

    async def events(self, uow: UnitOfWork, order_id: int, took: str, gave_back: str) -> list[TimelineEvent]:
        """The order's steps and compensations here, for its timeline: `took` and `gave_back` name
        them (goods.stock_reduced, ...); a take row with nothing in it is the barrier."""
        col, out = self.columns, []
        for r in await uow.fetchall(self._of_order, order=order_id):
            detail = {col.entity.removesuffix("_id") + "Id": str(r[col.entity]), "amount": str(r[col.amount])}
            if r[col.kind] == self.kinds.take:
                out.append(TimelineEvent(r[col.time], self._service, took if r[col.amount] else "barrier", detail))
            elif r[col.kind] == self.kinds.give_back and r[col.amount]:
                out.append(TimelineEvent(r[col.time], self._service, gave_back, detail))
        return out

    async def facts(self, uow: UnitOfWork, scope: AuditScope | None = None) -> LedgerFacts:
        """Every row, or the rows of a scope's orders (their `ledger` sums are then partial: the
        entities' own sums come from totals())."""
        if scope is None or scope.whole:
            return self.summary(await uow.fetchall(self._all))
        return self.summary(await self._scoped.fetch(uow, scope))

    async def totals(self, uow: UnitOfWork, lo: int, hi: int) -> dict[int, Decimal]:
        """Each entity's sum (put in - taken + given back + adjusted) for the entities lo <= id < hi."""
        # SQLite keeps money as integer cents (infra/types.py), and a sum loses the column's type.
        cents = isinstance(self._zero, Decimal) and uow.dialect == "sqlite"
        return {r["entity"]: Decimal(r["total"]).scaleb(-2) if cents else Decimal(r["total"])
                for r in await uow.fetchall(self._totals, lo=lo, hi=hi)}

    def summary(self, rows: Iterable[Row]) -> LedgerFacts:
        col, kinds = self.columns, self.kinds
        sign = {kinds.take: -1, kinds.give_back: 1}
        for own in (kinds.put_in, kinds.adjust):  # their amounts carry their sign
            if own is not None:
                sign[own] = 1
        facts = LedgerFacts()
        for r in rows:
            entity, order, kind, amount = r[col.entity], r[col.order], r[col.kind], Decimal(r[col.amount])
            facts.ledger[entity] = facts.ledger.get(entity, Decimal(0)) + sign[kind] * amount
            if kind == kinds.take:
                facts.taken.setdefault(order, {})[entity] = amount
            elif kind == kinds.give_back:
                facts.returned.setdefault(order, {})[entity] = amount
        return facts

    async def _record(self, uow: UnitOfWork, entity_id: int, order_id: int, kind: int, amount: Amount,
                      at: datetime) -> bool:
        """Write a ledger row; False if its key has one already (written, or being written and now committed)."""
        return await uow.execute(self._write, entity=entity_id, order=order_id, kind=kind, amount=amount, at=at) == 1

    async def _recorded(self, uow: UnitOfWork, entity_id: int, order_id: int, kind: int) -> Amount:
        row = await uow.fetchone(self._find, entity=entity_id, order=order_id, kind=kind)
        assert row is not None, "a ledger row whose key was taken is there to read"  # rows are never deleted
        return row[self.columns.amount]
