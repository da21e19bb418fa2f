"""The cross-service audit: stock, coupons and balances agree with the orders.

Each service reports its own facts (its rows and its ledger); nothing here queries across
services. `check` is pure: facts in, violations out. An order still unconfirmed, or a cancel
message not yet handled while messages are still in flight, is work in progress, not a
violation; the same once nothing is in flight is a violation (a lost message).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from shop.common.money import ZERO, floor_points
from shop.services.coupon.contracts import CouponFacts, CouponState
from shop.services.goods.contracts import GoodsFacts
from shop.services.order.domain import OrderStatus, PayStatus
from shop.services.pay.domain import PaymentStatus
from shop.services.user.contracts import UserFacts

HOLDS_EFFECTS = {OrderStatus.CONFIRMED}  # the stock, coupon and balance stay taken
HOLDS_NONE = {OrderStatus.CANCELLED, OrderStatus.INVALID, OrderStatus.REFUNDED}  # everything given back


@dataclass
class AuditReport:
    consistent: bool
    violations: list[str]
    pending: int
    # Progress, shown only while there is some: the checker catching up, a recount (admin.auditor).
    extra: dict[str, Any] = field(default_factory=dict)

    def json(self) -> dict[str, Any]:
        return {"consistent": self.consistent, "violations": self.violations, "pending": self.pending, **self.extra}


@dataclass(frozen=True, slots=True)
class Finding:
    """One violation, and the order it is about (None: an entity's sum, a dead message): the audit
    re-reads an order it found wrong, and the console links to it."""

    text: str
    order_id: int | None = None


def _ids(held: dict[int, Decimal]) -> str:
    return ", ".join(str(e) for e in held)


def check(
    orders: dict[int, Any], goods: GoodsFacts, users: UserFacts, coupons: CouponFacts, *,
    pending: int, dead: list[dict[str, Any]], payments: dict[int, Any] | None = None,
    logged: dict[int, int] | None = None,
) -> list[str]:
    return [f.text for f in findings(orders, goods, users, coupons, pending=pending, dead=dead,
                                     payments=payments, logged=logged)]


def findings(
    orders: dict[int, Any], goods: GoodsFacts, users: UserFacts, coupons: CouponFacts, *,
    pending: int, dead: list[dict[str, Any]], payments: dict[int, Any] | None = None,
    logged: dict[int, int] | None = None,
) -> list[Finding]:
    """The facts may be of every order and entity, or of a scope (AuditScope): a scope's facts hold
    the rows of its orders only, and no entity's stock or balance, so only what they hold is checked."""
    v: list[Finding] = []
    for gid, n in goods.stock.items():
        if n < 0:
            v.append(Finding(f"goods {gid}: stock {n} is negative"))
        if goods.ledger.ledger.get(gid, 0) != n:
            v.append(Finding(f"goods {gid}: stock {n} but its ledger says {goods.ledger.ledger.get(gid, 0)}"))
    for uid, m in users.balances.items():
        if m < 0:
            v.append(Finding(f"user {uid}: balance {m} is negative"))
        if users.ledger.ledger.get(uid, ZERO) != m:
            v.append(Finding(f"user {uid}: balance {m} but its ledger says {users.ledger.ledger.get(uid, ZERO)}"))

    def unsettled(service: str, cancels_seen: set[int], order_id: int, what: str) -> None:
        # Given back later, once the cancel message arrives: in flight while messages are.
        if order_id in cancels_seen or pending == 0:
            v.append(Finding(f"order {order_id}: cancelled but {service} still holds {what}", order_id))

    for oid, o in orders.items():
        status = o.order_status
        if status == OrderStatus.UNCONFIRMED:
            continue
        g_held, u_held, c_held = goods.ledger.held(oid), users.ledger.held(oid), coupons.ledger.held(oid)
        if status in HOLDS_EFFECTS:
            if g_held != o.items:  # every line: the goods took each line's units, and nothing else
                lines = ", ".join(f"{n} of goods {g}" for g, n in o.items.items())
                took = ", ".join(f"{n} of goods {g}" for g, n in g_held.items()) or "nothing"
                v.append(Finding(f"order {oid}: confirmed for {lines}, goods took {took}", oid))
            if u_held != ({o.user_id: o.money_paid} if o.money_paid > 0 else {}):
                v.append(Finding(f"order {oid}: confirmed with money paid {o.money_paid}, "
                                 f"the balance gave {sum(u_held.values())}", oid))
            if o.coupon_id is not None:
                state = coupons.coupons.get(o.coupon_id)
                if c_held != {o.coupon_id: 1} or state != CouponState(1, oid):
                    v.append(Finding(f"order {oid}: confirmed with coupon {o.coupon_id}, "
                                     f"which is {state and (state.is_used, state.order_id)}", oid))
            elif c_held:
                v.append(Finding(f"order {oid}: took coupon {_ids(c_held)} it does not name", oid))
        elif status in HOLDS_NONE:
            if g_held:
                unsettled("goods", goods.cancels_seen, oid, f"{sum(g_held.values())} units")
            if u_held:
                unsettled("user", users.cancels_seen, oid, f"{sum(u_held.values())} of the balance")
            if c_held:
                unsettled("coupon", coupons.cancels_seen, oid, f"coupon {_ids(c_held)}")
    for name, ledger in (("goods", goods.ledger), ("user", users.ledger), ("coupon", coupons.ledger)):
        for oid in ledger.taken:
            if oid != 0 and oid not in orders and ledger.held(oid):
                v.append(Finding(f"{name} holds effects of order {oid}, which the order service does not know", oid))
    for cid, state in coupons.coupons.items():
        used, order_id = state.is_used, state.order_id
        if used and (order_id not in orders
                     or orders[order_id].order_status not in HOLDS_EFFECTS | {OrderStatus.UNCONFIRMED}):
            if order_id in orders and order_id not in coupons.cancels_seen and pending:
                continue
            v.append(Finding(f"coupon {cid}: used by order {order_id}, which is not confirmed", order_id))
    if pending == 0 and payments is not None:
        v += check_payments(orders, users, payments, logged or {})
    for d in dead:
        key = d["key"]
        v.append(Finding(f"message {d['id']} ({d['topic']}/{d['tag']} {key}) for {d['group']} is parked dead",
                         int(key) if str(key).isdigit() else None))
    return v


def check_payments(orders: dict[int, Any], users: UserFacts, payments: dict[int, Any],
                   logged: dict[int, int]) -> list[Finding]:
    """Payments, points and the payment log, once nothing is in flight (they follow by message).
    Points are checked per user against every order's (all facts), or per order against what its
    messages brought (a scope's facts: `users.points`)."""
    v: list[Finding] = []
    points: dict[int, int] = {}
    for oid, o in orders.items():
        p = payments.get(oid)
        paid = p if p is not None and p.is_paid == PaymentStatus.PAID else None  # its payment, if paid
        earns = 0
        if o.order_status == OrderStatus.CONFIRMED and o.pay_status == PayStatus.PAID and o.pay_amount > 0:
            if paid is None or paid.is_refunded:
                v.append(Finding(f"order {oid}: paid, but its payment is {p and (p.is_paid, p.is_refunded)}", oid))
            if logged.get(oid, 0) != 1:
                v.append(Finding(f"order {oid}: paid, with {logged.get(oid, 0)} payment log rows", oid))
            earns = floor_points(o.pay_amount)
            points[o.user_id] = points.get(o.user_id, 0) + earns
        elif o.order_status in HOLDS_NONE and paid is not None and not paid.is_refunded:
            v.append(Finding(f"order {oid}: {o.order_status} but payment {paid.pay_id} was kept, not refunded", oid))
        elif o.order_status == OrderStatus.CONFIRMED and o.pay_status != PayStatus.PAID and paid is not None:
            v.append(Finding(f"order {oid}: payment {paid.pay_id} paid, the order never marked paid", oid))
        if users.points is not None and o.order_status != OrderStatus.UNCONFIRMED \
                and users.points.get(oid, 0) != earns:
            v.append(Finding(f"order {oid}: earns {earns} points, its messages gave {users.points.get(oid, 0)}", oid))
    return v + check_scores(users.scores, points)


def check_scores(scores: dict[int, int], earned: dict[int, int]) -> list[Finding]:
    """Each user's points are what their paid orders earn."""
    return [Finding(f"user {uid}: {score} points, its paid orders earn {earned.get(uid, 0)}")
            for uid, score in scores.items() if score != earned.get(uid, 0)]
