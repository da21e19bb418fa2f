"""The cross-service audit: stock, coupons and balances agree with the orders.

Each service reports its own facts (its rows and its ledger); nothing here queries across
services. `check` is pure: facts in, violations out. An order still unconfirmed, or a cancel
message not yet handled while messages are still in flight, is work in progress, not a
violation; the same once nothing is in flight is a violation (a lost message).
"""
from __future__ import annotations

from dataclasses import dataclass
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

    def json(self) -> dict[str, Any]:
        return {"consistent": self.consistent, "violations": self.violations, "pending": self.pending}


def _ids(held: dict[int, Decimal]) -> str:
    return ", ".join(str(e) for e in held)


def check(
    orders: dict[int, Any], goods: GoodsFacts, users: UserFacts, coupons: CouponFacts, *,
    pending: int, dead: list[dict[str, Any]], payments: dict[int, Any] | None = None,
    logged: dict[int, int] | None = None,
) -> list[str]:
    v: list[str] = []
    for gid, n in goods.stock.items():
        if n < 0:
            v.append(f"goods {gid}: stock {n} is negative")
        if goods.ledger.ledger.get(gid, 0) != n:
            v.append(f"goods {gid}: stock {n} but its ledger says {goods.ledger.ledger.get(gid, 0)}")
    for uid, m in users.balances.items():
        if m < 0:
            v.append(f"user {uid}: balance {m} is negative")
        if users.ledger.ledger.get(uid, ZERO) != m:
            v.append(f"user {uid}: balance {m} but its ledger says {users.ledger.ledger.get(uid, ZERO)}")

    def unsettled(service: str, cancels_seen: set[int], order_id: int, what: str) -> None:
        # Given back later, once the cancel message arrives: in flight while messages are.
        if order_id in cancels_seen or pending == 0:
            v.append(f"order {order_id}: cancelled but {service} still holds {what}")

    for oid, o in orders.items():
        status = o.order_status
        if status == OrderStatus.UNCONFIRMED:
            continue
        g_held, u_held, c_held = goods.ledger.held(oid), users.ledger.held(oid), coupons.ledger.held(oid)
        if status in HOLDS_EFFECTS:
            if g_held != {o.goods_id: o.goods_number}:
                v.append(f"order {oid}: confirmed for {o.goods_number} of goods {o.goods_id}, "
                         f"goods took {sum(g_held.values())}")
            if u_held != ({o.user_id: o.money_paid} if o.money_paid > 0 else {}):
                v.append(f"order {oid}: confirmed with money paid {o.money_paid}, "
                         f"the balance gave {sum(u_held.values())}")
            if o.coupon_id is not None:
                state = coupons.coupons.get(o.coupon_id)
                if c_held != {o.coupon_id: 1} or state != CouponState(1, oid):
                    v.append(f"order {oid}: confirmed with coupon {o.coupon_id}, "
                             f"which is {state and (state.is_used, state.order_id)}")
            elif c_held:
                v.append(f"order {oid}: took coupon {_ids(c_held)} it does not name")
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
                v.append(f"{name} holds effects of order {oid}, which the order service does not know")
    for cid, state in coupons.coupons.items():
        used, order_id = state.is_used, state.order_id
        if used and (order_id not in orders
                     or orders[order_id].order_status not in HOLDS_EFFECTS | {OrderStatus.UNCONFIRMED}):
            if order_id in orders and order_id not in coupons.cancels_seen and pending:
                continue
            v.append(f"coupon {cid}: used by order {order_id}, which is not confirmed")
    if pending == 0 and payments is not None:
        v += check_payments(orders, users, payments, logged or {})
    for d in dead:
        v.append(f"message {d['id']} ({d['topic']}/{d['tag']} {d['key']}) for {d['group']} is parked dead")
    return v


def check_payments(orders: dict[int, Any], users: UserFacts, payments: dict[int, Any],
                   logged: dict[int, int]) -> list[str]:
    """Payments, points and the payment log, once nothing is in flight (they follow by message)."""
    v: list[str] = []
    points: dict[int, int] = {}
    for oid, o in orders.items():
        p = payments.get(oid)
        paid = p if p is not None and p.is_paid == PaymentStatus.PAID else None  # its payment, if paid
        if o.order_status == OrderStatus.CONFIRMED and o.pay_status == PayStatus.PAID and o.pay_amount > 0:
            if paid is None or paid.is_refunded:
                v.append(f"order {oid}: paid, but its payment is {p and (p.is_paid, p.is_refunded)}")
            if logged.get(oid, 0) != 1:
                v.append(f"order {oid}: paid, with {logged.get(oid, 0)} payment log rows")
            points[o.user_id] = points.get(o.user_id, 0) + floor_points(o.pay_amount)
        elif o.order_status in HOLDS_NONE and paid is not None and not paid.is_refunded:
            v.append(f"order {oid}: {o.order_status} but payment {paid.pay_id} was kept, not refunded")
        elif o.order_status == OrderStatus.CONFIRMED and o.pay_status != PayStatus.PAID and paid is not None:
            v.append(f"order {oid}: payment {paid.pay_id} paid, the order never marked paid")
    for uid, score in users.scores.items():
        if score != points.get(uid, 0):
            v.append(f"user {uid}: {score} points, its paid orders earn {points.get(uid, 0)}")
    return v
