"""The audit at any size: orders checked once they settle behind a watermark, in the background;
the answer made of that state and a fresh look at the few orders that may still change; a full
recount on demand. Nothing here reads every order at once, and nothing runs long without awaiting.

Why an order checked once may be left alone afterwards: every change to an order after it is
confirmed (paid, cancelled at the payment timeout, cancelled or refunded by its owner) sends a
message from the order or the pay service, and those services report the orders of the messages
they sent since a given time (their outboxes' due_at index). An unconfirmed order sends nothing when
it is confirmed, so it stays open until it is not unconfirmed any more. And an order whose facts
still disagree when read as if nothing were in flight (a cancel not yet handled everywhere, a payment
whose log or points are still on their way) stays open too, and is read again on every pass; so an
order leaves the open set only once everything it caused has been done.

"Settled" for the watermark is therefore only about the order's row being there to read: its id is
minted just before its pre-order is saved, in the same call. The watermark stays SETTLE_MS behind the
clock, so an order whose id it has passed is in the order service's table (clocks of one machine or
of NTP-synchronised ones).

A violation is reported only if two readings a moment apart both find it (Operator.audit's rule
before this module): facts come from six services read at different instants.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shop.admin.audit import AuditReport, Finding, check_scores, findings
from shop.common.clock import iso, now_ms, utcnow
from shop.common.ids import TIMESTAMP_SHIFT, TWEPOCH, first_id_at
from shop.infra import metrics
from shop.infra.db import AuditScope
from shop.infra.failures import is_unavailable
from shop.infra.ledger import LedgerFacts
from shop.infra.messaging import Broker
from shop.services.coupon.contracts import CouponFacts, CouponService
from shop.services.goods.contracts import GoodsFacts, GoodsService
from shop.services.log.contracts import LogFacts, LogService
from shop.services.order.contracts import OrderFacts, OrderService
from shop.services.order.domain import OrderStatus
from shop.services.pay.contracts import PayFacts, PayService
from shop.services.user.contracts import UserFacts, UserService

log = logging.getLogger("shop.audit")

SETTLE_MS = 5_000  # how far the watermark stays behind the clock (see the module's docstring)
SKEW_MS = 1_000  # messages sent this long before a pass began are asked for again: clocks of two processes
# Orders per reading on a serving process. The event loop serves no one while a reading's rows are
# turned into facts and checked: 5-9 ms at 500 orders, the payment notification's answer waiting behind
# it (issue 13); about 1-2 ms at 100, and still some 14,000 orders/s of auditing with PAUSE_S between.
CHUNK = 100
DIRECT = 5_000  # at most this many orders past the watermark are read for an answer
PASS_S = 1.0  # between the background checker's passes
PAUSE_S = 0.005  # between its readings: the event loop serves others in between
CONFIRM_S = 0.05  # between the two readings of a violation
SCORE_CONFIRM_S = 0.5  # points follow by message: a user's sum is read again after a longer moment


def id_time(order_id: int) -> str | None:
    """When an id was minted (ids are time-ordered snowflakes): for the answer's progress."""
    at = datetime.fromtimestamp(((order_id >> TIMESTAMP_SHIFT) + TWEPOCH) / 1000, UTC).replace(tzinfo=None)
    return iso(at)


@dataclass
class Reading:
    """The six services' facts about one scope of orders."""

    orders: OrderFacts
    goods: GoodsFacts
    users: UserFacts
    coupons: CouponFacts
    pay: PayFacts
    log: LogFacts

    def check(self, pending: int, dead: list[dict[str, Any]] | None = None) -> list[Finding]:
        return findings(self.orders.orders, self.goods, self.users, self.coupons, pending=pending, dead=dead or [],
                        payments=self.pay.payments, logged=self.log.logged)

    def strict(self) -> dict[int, list[str]]:
        """What would be wrong if nothing were in flight, by order; an unconfirmed order counts as open."""
        wrong: dict[int, list[str]] = {oid: [] for oid, o in self.orders.orders.items()
                                       if o.order_status == OrderStatus.UNCONFIRMED}
        for f in self.check(pending=0):
            if f.order_id is not None:
                wrong.setdefault(f.order_id, []).append(f.text)
        return wrong

    @property
    def unsent(self) -> int:
        """Messages due and not yet sent, and orders still unconfirmed: work in flight."""
        return self.orders.outbox_due + self.pay.outbox_due + self.orders.unconfirmed


@dataclass
class Recount:
    """A full recount's progress and result, as GET /admin/audit/recount (and, while it runs or when
    it found something, GET /admin/audit) shows it."""

    started_at: datetime = field(default_factory=utcnow)
    finished_at: datetime | None = None
    orders: int = 0
    entities: dict[str, int] = field(default_factory=lambda: {"goods": 0, "users": 0})
    violations: list[Finding] = field(default_factory=list)  # its entities' (its orders' are re-read with the rest)
    error: str | None = None
    wrong_orders: set[int] = field(default_factory=set)  # orders it found wrong: the checker keeps them open
    process: int | None = None  # the pid of the process it runs in, if not this one

    def json(self) -> dict[str, Any]:
        state = "failed" if self.error else "done" if self.finished_at else "running"
        out = {"state": state, "startedAt": iso(self.started_at), "finishedAt": iso(self.finished_at),
               "orders": self.orders, **self.entities,
               "violations": [f.text for f in self.violations]}
        if self.error:
            out["error"] = self.error
        return out


class Auditor:
    def __init__(
        self, *, users: UserService, goods: GoodsService, coupons: CouponService, orders: OrderService,
        pay: PayService, log: LogService, broker: Broker, settle_ms: int = SETTLE_MS, chunk: int = CHUNK,
        pause_s: float = PAUSE_S, pass_s: float = PASS_S,
        run_recount: Callable[[Recount], Awaitable[None]] | None = None,
    ) -> None:
        self.users, self.goods, self.coupons, self.orders, self.pay, self.log = users, goods, coupons, orders, pay, log
        self.broker = broker
        self.settle_ms, self.chunk, self.pause_s, self.pass_s = settle_ms, chunk, pause_s, pass_s
        # Every order below the watermark was read once it settled: found right, or kept open.
        self.watermark = 1
        self.caught_up = False  # the last pass brought the watermark to its target
        self.open: dict[int, int] = {}  # order -> kept open until (epoch ms; 0: until it reads right)
        self.wrong: dict[int, list[str]] = {}  # open orders wrong in two passes running, as the last one said
        self._suspects: dict[int, list[str]] = {}
        self.sent_since_ms = 0  # the next pass asks for the messages sent since then (0: first pass)
        self.recount: Recount | None = None
        # Where a recount runs: here (None), or elsewhere, filling the Recount it is handed (the
        # embedded shop's, in a child process: admin/recount_child.py says why).
        self._run_recount = run_recount
        self._recount_task: asyncio.Task[None] | None = None

    # -- reading ------------------------------------------------------------------------------------

    async def read(self, scope: AuditScope) -> Reading:
        """One reading of a scope: the order service first (it cuts a range at the limit), then the
        others for the range it covered and the orders it found, so their rows of unknown orders in
        the range are read too."""
        orders = await self.orders.audit_facts(scope)
        rest = AuditScope(since_id=scope.since_id, below_id=orders.through, strict=scope.strict,
                          order_ids=tuple(sorted({*orders.orders, *scope.order_ids})))
        goods, users, coupons, pay, logged = await asyncio.gather(
            self.goods.audit_facts(rest), self.users.audit_facts(rest), self.coupons.audit_facts(rest),
            self.pay.audit_facts(rest), self.log.audit_facts(rest))
        return Reading(orders, goods, users, coupons, pay, logged)

    async def _touched(self, since_ms: int) -> set[int]:
        """The orders whose messages left the order and pay services since then."""
        ask = AuditScope(since_id=1, below_id=1, sent_since_ms=since_ms)
        return {*(await self.orders.audit_facts(ask)).sent, *(await self.pay.audit_facts(ask)).sent}

    # -- the background checker -------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            try:
                await self.check_pass()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the next pass tries again
                if is_unavailable(exc):  # a service down for a moment (or stopping first): one line is enough
                    log.warning("audit pass failed: a service is unavailable: %r", exc)
                else:
                    log.warning("audit pass failed", exc_info=True)
            await asyncio.sleep(self.pass_s)

    async def check_pass(self) -> None:
        """Advance the watermark over the orders settled since the last pass, re-read the open ones
        and those that changed since, and keep what is still open or wrong."""
        now = now_ms()
        if self.sent_since_ms:
            for oid in await self._touched(self.sent_since_ms):
                if oid < self.watermark:  # past the watermark: read when it gets there
                    self.open[oid] = max(self.open.get(oid, 0), now + self.settle_ms)
        self.sent_since_ms = now - SKEW_MS
        target = first_id_at(now - self.settle_ms)
        if self.watermark < target:
            async for r, wrong in self._walk(AuditScope(since_id=self.watermark, below_id=target), self.chunk,
                                             self.pause_s):
                for oid in wrong:
                    self.open.setdefault(oid, 0)
                self.watermark = r.orders.through or target
        self.caught_up = True
        await self._recheck_open(now)

    async def _walk(self, scope: AuditScope, chunk: int, pause_s: float) -> AsyncIterator[
            tuple[Reading, dict[int, list[str]]]]:
        """Readings of a range, chunk by chunk, each with what it finds wrong read strictly. The rules
        run on a worker thread: the event loop gets its turn at least every switch interval while they
        do. On a serving process (pause_s > 0) each chunk is followed by a pause at least as long as it
        took, so the audit takes at most about half of the process; offline, the next chunk is read
        while this one is checked."""
        lo, below = scope.since_id, scope.below_id
        ahead: asyncio.Task[Reading] | None = None
        while True:
            started = time.monotonic()
            r = await (ahead or self.read(AuditScope(since_id=lo, below_id=below, limit=chunk, strict=True)))
            ahead = None
            if r.orders.through and r.orders.through != below and not pause_s:
                ahead = asyncio.create_task(self.read(AuditScope(since_id=r.orders.through, below_id=below,
                                                                 limit=chunk, strict=True)))
            yield r, await asyncio.to_thread(r.strict)
            lo = r.orders.through  # the range it covered ends there (0: it had no end)
            if not lo or lo == below:
                return
            if pause_s:
                await asyncio.sleep(max(pause_s, time.monotonic() - started))

    async def _recheck_open(self, now: int) -> None:
        """Read again the open orders that are due (kept open until a time now past, or until they read
        right) and those suspected last pass. An order a message touched is kept open SETTLE_MS and read
        once then, not on every pass meanwhile, which at 500 payments a second read each paid order
        about five times over (paired, 15 s of them: the answer's p50 4.7-4.8 → 3.5-3.8 ms, p99
        16.4-16.8 → 13.1-15.3 ms; issue 13). report() reads every open order itself, so an answer
        misses nothing for it."""
        pending = await self.broker.pending()
        suspects: dict[int, list[str]] = {}
        ids = sorted(oid for oid, until in self.open.items() if until <= now or oid in self._suspects)
        for start in range(0, len(ids), self.chunk):
            r = await self.read(AuditScope.of(ids[start:start + self.chunk]))
            strict = r.strict()
            for oid in ids[start:start + self.chunk]:
                if oid not in strict and self.open[oid] <= now:
                    del self.open[oid]
            for f in r.check(pending + r.unsent):
                if f.order_id is not None and f.order_id in self.open:
                    suspects.setdefault(f.order_id, []).append(f.text)
            await asyncio.sleep(self.pause_s)
        self.wrong = {oid: texts for oid, texts in suspects.items() if oid in self._suspects}
        self._suspects = suspects

    # -- the answer ---------------------------------------------------------------------------------

    async def report(self) -> AuditReport:
        """The orders past the watermark, the open ones and those changed since the last pass, read
        now (twice if something is wrong); the older ones as the checker left them."""
        ids = sorted(self.open)[:DIRECT]
        if self.sent_since_ms:
            ids = sorted({*ids, *(oid for oid in await self._touched(self.sent_since_ms) if oid < self.watermark)})
        behind = None
        pieces, cut = await self._direct(self.watermark, ids)
        if cut:  # more than DIRECT orders past the watermark: it is catching up (a restart, a big import)
            behind = self.watermark
            pieces, _ = await self._direct(max(self.watermark, first_id_at(now_ms() - 2 * self.settle_ms)), ids)
        pending = await self.broker.pending()
        dead = await self.broker.dead()
        unsent = pieces[-1][1].unsent
        found = {i: r.check(pending + unsent) for i, (_, r) in enumerate(pieces)}
        gone = _dead_findings(pending + unsent, dead)
        if gone or any(found.values()):
            await asyncio.sleep(CONFIRM_S)
            pending = max(pending, await self.broker.pending())
            for i in [i for i, f in found.items() if f]:
                again = await self.read(pieces[i][0])
                unsent = max(unsent, again.unsent)
                second = {f.text for f in again.check(pending + unsent)}
                found[i] = [f for f in found[i] if f.text in second]
            still = {f.text for f in _dead_findings(pending + unsent, await self.broker.dead())}
            gone = [f for f in gone if f.text in still]
        pending = max(pending, await self.broker.pending()) + unsent
        texts = list(dict.fromkeys(
            [f.text for fs in found.values() for f in fs] + [f.text for f in gone]
            + [t for oid, ts in self.wrong.items() if oid not in set(ids) for t in ts]
            + [f.text for f in (self.recount.violations if self.recount else [])]))
        report = AuditReport(consistent=not texts, violations=texts, pending=pending)
        if behind is not None:
            report.extra["catchingUp"] = {"checkedThrough": str(behind), "checkedThroughTime": id_time(behind)}
        # A recount shows here while it runs, and after only if it found something: a clean one's
        # result is at GET /admin/audit/recount, not in every audit after it (whose readers compare
        # the three fields of the contract).
        if self.recount is not None and (self.recount.finished_at is None or self.recount.error
                                         or self.recount.violations):
            report.extra["recount"] = self.recount.json()
        metrics.audited(report.consistent)
        return report

    async def _direct(self, lo: int, ids: list[int]) -> tuple[list[tuple[AuditScope, Reading]], bool]:
        """Readings of the orders from lo up (at most DIRECT of them: cut says there were more) and of
        these ones, a chunk at a time; each with a scope that reads the same orders again."""
        pieces: list[tuple[AuditScope, Reading]] = []
        n = 0
        while True:
            r = await self.read(AuditScope(since_id=lo, limit=self.chunk))
            pieces.append((AuditScope(since_id=lo, below_id=r.orders.through), r))
            n += len(r.orders.orders)
            if not r.orders.through or n >= DIRECT:
                break
            lo = r.orders.through
        for start in range(0, len(ids), self.chunk):
            scope = AuditScope.of(ids[start:start + self.chunk])
            pieces.append((scope, await self.read(scope)))
        return pieces, bool(r.orders.through)

    # -- the full recount ---------------------------------------------------------------------------

    def start_recount(self) -> Recount:
        """Start a recount in the background (one at a time); its progress and result show in report()."""
        if self._recount_task is None or self._recount_task.done():
            self.recount = Recount()
            self._recount_task = asyncio.create_task(self._recount(self.recount), name="audit-recount")
        assert self.recount is not None
        return self.recount

    async def wait_recount(self) -> None:
        if self._recount_task is not None:
            await asyncio.shield(self._recount_task)

    async def stop(self) -> None:
        if self._recount_task is not None:
            self._recount_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recount_task

    async def _recount(self, recount: Recount) -> None:
        try:
            if self._run_recount is not None:
                await self._run_recount(recount)
            else:
                await self.recount_all(recount, self.chunk, self.pause_s)
            for oid in recount.wrong_orders:
                self.open.setdefault(oid, 0)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("audit recount failed")
            recount.error = f"{exc.__class__.__name__}: {exc}"
        recount.finished_at = utcnow()

    async def recount_all(self, recount: Recount, chunk: int, pause_s: float) -> list[Finding]:
        """Everything: each goods' stock and each user's balance against its ledger's sum and each
        user's points against what their paid orders earn (sums computed by each service's database,
        a range of entities at a time), and every order, a range at a time. The entities' violations
        go into `recount`, and the orders found wrong into its wrong_orders, which the checker keeps
        open so that the answer reads them again; the order findings are returned (read twice) for
        the offline audit."""
        await self._recount_entities(recount, chunk * 4, pause_s)
        wrong: set[int] = set()
        async for r, strict in self._walk(AuditScope(), chunk, pause_s):
            wrong |= set(strict)
            recount.orders += len(r.orders.orders)
        recount.wrong_orders = wrong
        out: list[Finding] = []
        ids = sorted(wrong)
        for start in range(0, len(ids), chunk):
            scope = AuditScope.of(ids[start:start + chunk])
            first = await self.read(scope)
            pending = await self.broker.pending()
            found = first.check(pending + first.unsent)
            if found:
                await asyncio.sleep(CONFIRM_S)
                second = await self.read(scope)
                again = {f.text for f in second.check(max(pending, await self.broker.pending()) + second.unsent)}
                out += [f for f in found if f.text in again]
        return out

    async def _recount_entities(self, recount: Recount, chunk: int, pause_s: float) -> None:
        empty_goods, empty_users, no_coupons = _nothing()

        async def goods_chunk(lo: int, below: int = 0) -> tuple[list[Finding], int, int]:
            g = await self.goods.audit_facts(AuditScope(since_id=lo, below_id=below, limit=chunk, entities=True))
            return findings({}, g, empty_users, no_coupons, pending=0, dead=[]), g.through, len(g.stock)

        async def users_chunk(lo: int, below: int = 0) -> tuple[list[Finding], int, int]:
            u = await self.users.audit_facts(AuditScope(since_id=lo, below_id=below, limit=chunk, entities=True))
            earned = await self.orders.audit_facts(AuditScope(since_id=lo, below_id=u.through, entities=True))
            found = findings({}, empty_goods, u, no_coupons, pending=0, dead=[]) + check_scores(u.scores, earned.earned)
            return found, u.through, len(u.balances)

        for kind, read in (("goods", goods_chunk), ("users", users_chunk)):
            lo = 1
            while True:
                found, through, n = await read(lo)
                recount.entities[kind] += n
                if found:  # read the same entities again a moment later: keep what both readings find
                    await asyncio.sleep(SCORE_CONFIRM_S)
                    again = {f.text for f in (await read(lo, through))[0]}
                    recount.violations += [f for f in found if f.text in again]
                if not through:
                    break
                lo = through
                await asyncio.sleep(pause_s)

    async def full(self) -> AuditReport:
        """The offline audit (`shop audit`): a recount in large ranges without pauses, and the work
        in flight and the dead messages, as one report."""
        recount = Recount()
        orders = await self.recount_all(recount, chunk=20_000, pause_s=0)
        r = await self.read(AuditScope.of(()))
        pending = await self.broker.pending() + r.unsent
        dead = await self.broker.dead()
        texts = list(dict.fromkeys(f.text for f in recount.violations + orders + _dead_findings(pending, dead)))
        return AuditReport(consistent=not texts, violations=texts, pending=pending)


def _nothing() -> tuple[GoodsFacts, UserFacts, CouponFacts]:
    """Facts that hold nothing: what a check of only some of the services' facts gives the others."""
    return (GoodsFacts({}, LedgerFacts(), set()), UserFacts({}, {}, LedgerFacts(), set()),
            CouponFacts({}, LedgerFacts(), set()))


def _dead_findings(pending: int, dead: list[dict[str, Any]]) -> list[Finding]:
    goods, users, coupons = _nothing()
    return findings({}, goods, users, coupons, pending=pending, dead=dead)
