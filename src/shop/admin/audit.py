"""The cross-service audit: stock, coupons and balances agree with the orders.

Each service reports its own facts (its rows and its ledger); nothing here queries across
services. `check` is pure: facts in, violations out. An order still unconfirmed, or a cancel
message not yet handled while messages are still in flight, is work in progress, not a
violation; the same once nothing is in flight is a violation (a lost message).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shop.common.money import ZERO, floor_points
from shop.services.order.domain import OrderStatus, PayStatus
from shop.services.pay.domain import PaymentStatus

HOLDS_EFFECTS = {OrderStatus.CONFIRMED}  # the stock, coupon and balance stay taken
HOLDS_NONE = {OrderStatus.CANCELLED, OrderStatus.INVALID, OrderStatus.REFUNDED}  # everything given back


@dataclass
class AuditReport:
    consistent: bool
    violations: list[str]
    pending: int

    def json(self) -> dict[str, Any]:
        return {"consistent": self.consistent, "violations": self.violations, "pending": self.pending}


def ledger_facts(
    rows: Any, *, entity: str, kind: str, amount: str, put_in: int, take: int, give_back: int, zero: Any = 0,
) -> dict[str, Any]:
    """A participant's ledger (goods number log, user money log) as the facts `check` reads:
    the sum per entity, and per order what was taken and what was given back."""
    sign = {put_in: 1, take: -1, give_back: 1}
    ledger: dict[int, Any] = {}
    taken: dict[int, tuple[int, Any]] = {}
    returned: dict[int, Any] = {}
    for r in rows:
        ledger[r[entity]] = ledger.get(r[entity], zero) + sign[r[kind]] * r[amount]
        if r[kind] == take:
            taken[r["order_id"]] = (r[entity], r[amount])
        elif r[kind] == give_back:
            returned[r["order_id"]] = r[amount]
    return {"ledger": ledger, "taken": taken, "returned": returned}


def _net(facts: dict[str, Any], order_id: int) -> tuple[int | None, Any]:
    taken = facts["taken"].get(order_id)
    if taken is None:
        return None, 0
    entity, amount = taken
    return entity, amount - facts["returned"].get(order_id, 0)


def check(
    orders: dict[int, Any], goods: dict[str, Any], users: dict[str, Any], coupons: dict[str, Any], *,
    pending: int, dead: list[dict[str, Any]], payments: dict[int, Any] | None = None,
    logged: dict[int, int] | None = None,
) -> list[str]:
    v: list[str] = []
    for gid, n in goods["balances"].items():
        if n < 0:
            v.append(f"goods {gid}: stock {n} is negative")
        if goods["ledger"].get(gid, 0) != n:
            v.append(f"goods {gid}: stock {n} but its ledger says {goods['ledger'].get(gid, 0)}")
    for uid, m in users["balances"].items():
        if m < 0:
            v.append(f"user {uid}: balance {m} is negative")
        if users["ledger"].get(uid, ZERO) != m:
            v.append(f"user {uid}: balance {m} but its ledger says {users['ledger'].get(uid, ZERO)}")

    def unsettled(service: str, facts: dict[str, Any], order_id: int, what: str) -> None:
        # Given back later, once the cancel message arrives: in flight while messages are.
        if order_id in facts["cancels_seen"] or pending == 0:
            v.append(f"order {order_id}: cancelled but {service} still holds {what}")

    for oid, o in orders.items():
        status = o.order_status
        if status == OrderStatus.UNCONFIRMED:
            continue
        g_id, g_net = _net(goods, oid)
        u_id, u_net = _net(users, oid)
        c_id, c_net = _net(coupons, oid)
        if status in HOLDS_EFFECTS:
            if g_net != o.goods_number or g_id != o.goods_id:
                v.append(f"order {oid}: confirmed for {o.goods_number} of goods {o.goods_id}, goods took {g_net}")
            if (u_net or ZERO) != o.money_paid or (o.money_paid > 0 and u_id != o.user_id):
                v.append(f"order {oid}: confirmed with money paid {o.money_paid}, the balance gave {u_net}")
            if o.coupon_id is not None:
                state = coupons["coupons"].get(o.coupon_id)
                if c_net != 1 or c_id != o.coupon_id or state != (1, oid):
                    v.append(f"order {oid}: confirmed with coupon {o.coupon_id}, which is {state}")
            elif c_net:
                v.append(f"order {oid}: took coupon {c_id} it does not name")
        elif status in HOLDS_NONE:
            if g_net:
                unsettled("goods", goods, oid, f"{g_net} units")
            if u_net:
                unsettled("user", users, oid, f"{u_net} of the balance")
            if c_net:
                unsettled("coupon", coupons, oid, f"coupon {c_id}")
    for name, facts in (("goods", goods), ("user", users), ("coupon", coupons)):
        for oid in facts["taken"]:
            if oid != 0 and oid not in orders and _net(facts, oid)[1]:
                v.append(f"{name} holds effects of order {oid}, which the order service does not know")
    for cid, (used, oid) in coupons["coupons"].items():
        if used and (oid not in orders or orders[oid].order_status not in HOLDS_EFFECTS | {OrderStatus.UNCONFIRMED}):
            if oid in orders and oid not in coupons["cancels_seen"] and pending:
                continue
            v.append(f"coupon {cid}: used by order {oid}, which is not confirmed")
    if pending == 0 and payments is not None:
        v += check_payments(orders, users, payments, logged or {})
    for d in dead:
        v.append(f"message {d['id']} ({d['topic']}/{d['tag']} {d['key']}) for {d['group']} is parked dead")
    return v


def check_payments(orders: dict[int, Any], users: dict[str, Any], payments: dict[int, Any],
                   logged: dict[int, int]) -> list[str]:
    """Payments, points and the payment log, once nothing is in flight (they follow by message)."""
    v: list[str] = []
    points: dict[int, int] = {}
    for oid, o in orders.items():
        p = payments.get(oid)
        paid_here = p is not None and p.is_paid == PaymentStatus.PAID
        if o.order_status == OrderStatus.CONFIRMED and o.pay_status == PayStatus.PAID and o.pay_amount > 0:
            if not paid_here or p.is_refunded:
                v.append(f"order {oid}: paid, but its payment is {p and (p.is_paid, p.is_refunded)}")
            if logged.get(oid, 0) != 1:
                v.append(f"order {oid}: paid, with {logged.get(oid, 0)} payment log rows")
            points[o.user_id] = points.get(o.user_id, 0) + floor_points(o.pay_amount)
        elif o.order_status in HOLDS_NONE and paid_here and not p.is_refunded:
            v.append(f"order {oid}: {o.order_status} but payment {p.pay_id} was kept, not refunded")
        elif o.order_status == OrderStatus.CONFIRMED and o.pay_status != PayStatus.PAID and paid_here:
            v.append(f"order {oid}: payment {p.pay_id} paid, the order never marked paid")
    for uid, score in users.get("scores", {}).items():
        if score != points.get(uid, 0):
            v.append(f"user {uid}: {score} points, its paid orders earn {points.get(uid, 0)}")
    return v
