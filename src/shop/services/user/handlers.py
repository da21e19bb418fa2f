"""The user service: users, logins, and the balance's payments and refunds."""
import asyncio
import logging
from decimal import Decimal

import orjson
from argon2 import PasswordHasher
from argon2.exceptions import VerificationError

from shop.common.clock import now_ms, utcnow
from shop.common.codes import ShopCode
from shop.common.errors import ShopError
from shop.common.ids import IdWorker
from shop.common.money import floor_points
from shop.common.timeline import TimelineEvent
from shop.infra.db import EVERYTHING, AuditScope, Database, UnitOfWork, as_record, find_one
from shop.infra.db.scope import NO_LIMIT
from shop.infra.ledger import LedgerFacts
from shop.infra.messaging import Consumes, Inbox, Message
from shop.services.order.contracts import (
    ORDER_TOPIC,
    TAG_CANCEL,
    TAG_PAID,
    TAG_REFUND,
    OrderCancelled,
    OrderPaid,
)
from shop.services.user import repository as repo
from shop.services.user.contracts import (
    ChangeMoney,
    CreateUser,
    MoneyLogType,
    User,
    UserFacts,
)
from shop.services.user.domain import LoginLimits, retry_after_s
from shop.services.user.models import inbox

log = logging.getLogger("shop.user")
INBOX = Inbox(inbox)




class UserHandlers:
    def __init__(self, db: Database, ids: IdWorker, hasher: PasswordHasher | None = None,
                 limits: LoginLimits | None = None) -> None:
        self.db = db
        self.ids = ids
        self.hasher = hasher or PasswordHasher()
        self.limits = limits or LoginLimits()
        # Verified against when the user name is unknown, so a login takes as long either way.
        self._dummy_hash = self.hasher.hash("not a password")

    async def find_user(self, user_id: int) -> User:
        row = await find_one(self.db, repo.FIND, ShopCode.SHOP_USER_NO_EXIST, user_id=user_id)
        return as_record(User, row)

    async def create_user(self, cmd: CreateUser) -> int:
        # Hashing takes tens of milliseconds: off the event loop.
        hashed = await asyncio.to_thread(self.hasher.hash, cmd.user_password)
        user_id = self.ids.next_id()
        now = utcnow()
        async with self.db.unit_of_work() as uow:
            if not await repo.insert(
                uow, user_id=user_id, user_name=cmd.user_name, user_password=hashed, user_mobile=cmd.user_mobile,
                user_score=0, user_reg_time=now, user_money=cmd.user_money,
            ):
                raise ShopError(ShopCode.SHOP_USER_NAME_TAKEN)
            await repo.LEDGER.put_in(uow, user_id, cmd.user_money, now)
            await uow.commit()
        return user_id

    async def login(self, user_name: str, password: str) -> User:
        """Throttled per user name (domain.retry_after_s): the attempt is counted before the
        password is checked, whatever the name (an unknown one is counted too, so the answers
        tell nobody which names exist), and forgotten when it succeeds."""
        now = now_ms()
        async with self.db.unit_of_work() as uow:
            attempts, window_start = await repo.count_attempt(uow, user_name, now, self.limits.window_ms)
            row = await repo.find_by_name(uow, user_name)
            await uow.commit()
        if attempts == 1:  # a new window (a new row, or an expired one reused): once per name and window
            await self._prune_attempts(now)
        wait = retry_after_s(attempts, window_start, now, self.limits)
        if wait is not None:
            if attempts == self.limits.max_failures + 1:  # once per window, not per attempt
                log.warning("login for user name %r throttled for %ss after %s failures", user_name, wait,
                            self.limits.max_failures)
            raise ShopError(ShopCode.SHOP_USER_LOGIN_THROTTLED, f"too many failed logins; try again in {wait}s",
                            data={"retryAfter": wait})
        stored = row["user_password"] if row is not None else self._dummy_hash
        try:
            await asyncio.to_thread(self.hasher.verify, stored, password)
        except VerificationError:
            row = None
        if row is None:
            log.warning("failed login for user name %r (%s of %s in the window)", user_name, attempts,
                        self.limits.max_failures)  # never the password
            raise ShopError(ShopCode.SHOP_USER_NOT_AUTHORIZED, "wrong user name or password")
        async with self.db.unit_of_work() as uow:
            await repo.forget_attempts(uow, user_name)
            await uow.commit()
        return as_record(User, row)

    async def _prune_attempts(self, now: int) -> None:
        """Expired rows go when a window starts: the table holds about the names tried within
        one window. Its own transaction, after the attempt's: a prune that fails
        (a lock timeout under a flood of names) costs only a row or two kept a while longer."""
        try:
            async with self.db.unit_of_work() as uow:
                await repo.prune_attempts(uow, now, self.limits.window_ms)
                await uow.commit()
        except Exception:  # noqa: BLE001 - the next new name prunes them
            log.debug("pruning login attempts failed", exc_info=True)

    async def change_money(self, cmd: ChangeMoney) -> None:
        if cmd.money <= 0:
            raise ShopError(ShopCode.SHOP_MONEY_PAID_LESS_ZERO)
        if cmd.log_type == MoneyLogType.PAID and await repo.LEDGER.take_at_once(
                self.db, repo.PAY_AT_ONCE, cmd.user_id, cmd.order_id, cmd.money, user_id=cmd.user_id, n=cmd.money):
            return
        async with self.db.unit_of_work() as uow:
            if cmd.log_type == MoneyLogType.PAID:
                await self._pay(uow, cmd)
            elif cmd.log_type == MoneyLogType.REFUND:
                await refund(uow, cmd.user_id, cmd.order_id)
            else:
                raise ShopError(ShopCode.SHOP_REQUEST_PARAMETER_VALID, "unknown money log type")
            await uow.commit()

    async def _pay(self, uow: UnitOfWork, cmd: ChangeMoney) -> None:
        await repo.LEDGER.take(uow, cmd.user_id, cmd.order_id, cmd.money,
                               lambda: repo.take(uow, cmd.user_id, cmd.money), repo.REFUSAL)

    async def on_order_cancel(self, uow: UnitOfWork, msg: Message) -> None:
        ev = OrderCancelled.from_message(msg)
        await refund(uow, ev.user_id, ev.order_id)

    async def on_order_paid(self, uow: UnitOfWork, msg: Message) -> None:
        """Points: floor(pay amount), once per order (the inbox row is the key)."""
        ev = OrderPaid.from_message(msg)
        await repo.add_score(uow, ev.user_id, floor_points(ev.pay_amount))

    async def on_order_refund(self, uow: UnitOfWork, msg: Message) -> None:
        """A paid order returned: the balance part back, and the points it earned taken back.
        Adding and taking back commute, so the two messages may arrive in either order."""
        ev = OrderCancelled.from_message(msg)
        await refund(uow, ev.user_id, ev.order_id)
        await repo.add_score(uow, ev.user_id, -floor_points(Decimal(msg.body["payAmount"])))

    async def timeline(self, order_id: int) -> list[TimelineEvent]:
        """The balance's steps, and the points: added by the order's paid message, taken back by its
        refund (the inbox rows of those messages, with the amount they carried)."""
        async with self.db.unit_of_work(readonly=True) as uow:
            events = await repo.LEDGER.events(uow, order_id, "user.money_paid", "user.money_refunded")
            events += await INBOX.handled_events(uow, str(order_id), "user")
            for r in await INBOX.handled(uow, str(order_id)):
                points = {TAG_PAID: "user.points_added", TAG_REFUND: "user.points_removed"}.get(r["msg_tag"])
                if points is not None:
                    amount = Decimal(orjson.loads(r["msg_body"])["payAmount"])
                    events.append(TimelineEvent(r["consumer_timestamp"], "user", points,
                                                {"points": floor_points(amount)}))
        return events

    async def audit_facts(self, scope: AuditScope = EVERYTHING) -> UserFacts:
        """This service's side of the cross-service invariants (see admin.audit)."""
        async with scope.unit_of_work(self.db) as uow:
            if scope.whole or scope.entities:
                users, through = (await uow.fetchall(repo.ALL_USERS), 0) if scope.whole else \
                    await repo.USERS.first(uow, scope)
                balances = {r["user_id"]: r["user_money"] for r in users}
                scores = {r["user_id"]: r["user_score"] for r in users}
                if scope.whole:
                    return UserFacts(balances, scores, await repo.LEDGER.facts(uow),
                                     await INBOX.orders_handled(uow, TAG_CANCEL))
                # A recount: the users' balances, points and ledgers' sums, in one transaction.
                totals = await repo.LEDGER.totals(uow, scope.bounds[0], through or NO_LIMIT)
                return UserFacts(balances, scores, LedgerFacts(ledger=totals), set(), through=through)
            ledger = await repo.LEDGER.facts(uow, scope)
            seen: set[int] = set()
            points: dict[int, int] = {}
            # The points a scope's order brought: its paid message added them, its refund took them back.
            for r in await INBOX.handled_orders(uow, {*scope.order_ids, *ledger.taken}):
                order_id = int(r["msg_key"])
                if r["msg_tag"] == TAG_CANCEL:
                    seen.add(order_id)
                sign = {TAG_PAID: 1, TAG_REFUND: -1}.get(r["msg_tag"])
                if sign is not None:
                    amount = Decimal(orjson.loads(r["msg_body"])["payAmount"])
                    points[order_id] = points.get(order_id, 0) + sign * floor_points(amount)
            return UserFacts({}, {}, ledger, seen, points=points)


async def refund(uow: UnitOfWork, user_id: int, order_id: int) -> None:
    """Give back what the order paid from the balance, once; if it paid nothing, make sure it never will."""
    await repo.LEDGER.give_back(uow, user_id, order_id, lambda money: repo.give(uow, user_id, money))


CONSUMES = (
    Consumes("user", ORDER_TOPIC, {
        TAG_CANCEL: UserHandlers.on_order_cancel, TAG_PAID: UserHandlers.on_order_paid,
        TAG_REFUND: UserHandlers.on_order_refund,
    }),
)
