"""The coupon service: using a coupon for an order, releasing it when the order is cancelled."""
from decimal import Decimal

from shop.common.clock import utcnow
from shop.common.codes import ShopCode
from shop.common.ids import IdWorker
from shop.common.timeline import TimelineEvent
from shop.infra.db import EVERYTHING, AuditScope, Database, UnitOfWork, as_record, find_one
from shop.infra.ledger import LedgerFacts
from shop.infra.messaging import Consumes, Inbox, Message
from shop.services.coupon import repository as repo
from shop.services.coupon.contracts import (
    Coupon,
    CouponFacts,
    CouponState,
    CreateCoupon,
    UseCoupon,
)
from shop.services.coupon.models import inbox
from shop.services.order.contracts import (
    ORDER_TOPIC,
    TAG_CANCEL,
    TAG_REFUND,
    OrderCancelled,
)

INBOX = Inbox(inbox)



class CouponHandlers:
    def __init__(self, db: Database, ids: IdWorker) -> None:
        self.db = db
        self.ids = ids

    async def find_coupon(self, coupon_id: int) -> Coupon:
        row = await find_one(self.db, repo.FIND, ShopCode.SHOP_COUPON_NO_EXIST, coupon_id=coupon_id)
        return as_record(Coupon, row)

    async def create_coupon(self, cmd: CreateCoupon) -> int:
        coupon_id = self.ids.next_id()
        async with self.db.unit_of_work() as uow:
            await repo.insert(uow, coupon_id=coupon_id, coupon_price=cmd.coupon_price, user_id=cmd.user_id)
            await uow.commit()
        return coupon_id

    async def use_coupon(self, cmd: UseCoupon) -> Decimal:
        at = utcnow()
        used = await repo.LEDGER.take_at_once(self.db, repo.USE_AT_ONCE, cmd.coupon_id, cmd.order_id, 1,
                                              coupon_id=cmd.coupon_id, user_id=cmd.user_id, order_id=cmd.order_id,
                                              used_time=at)
        if used is not None:
            return Decimal(used["coupon_price"])
        async with self.db.unit_of_work() as uow:
            use = lambda: repo.take(uow, cmd.coupon_id, cmd.user_id, cmd.order_id, at)  # noqa: E731
            await repo.LEDGER.take(uow, cmd.coupon_id, cmd.order_id, 1, use, repo.REFUSAL)
            row = await repo.find(uow, cmd.coupon_id)  # taken (now or by a repeat): it exists
            await uow.commit()
        return Decimal(row["coupon_price"])

    async def on_order_cancel(self, uow: UnitOfWork, msg: Message) -> None:
        ev = OrderCancelled.from_message(msg)
        if ev.coupon_id is None:
            return
        coupon_id = ev.coupon_id
        await repo.LEDGER.give_back(uow, coupon_id, ev.order_id, lambda _: repo.give_back(uow, coupon_id, ev.order_id))

    async def timeline(self, order_id: int) -> list[TimelineEvent]:
        async with self.db.unit_of_work(readonly=True) as uow:
            steps = await repo.LEDGER.events(uow, order_id, "coupon.used", "coupon.restored")
            return steps + await INBOX.handled_events(uow, str(order_id), "coupon")

    async def audit_facts(self, scope: AuditScope = EVERYTHING) -> CouponFacts:
        async with scope.unit_of_work(self.db) as uow:
            if scope.entities:
                return CouponFacts({}, LedgerFacts(), set())  # a coupon is checked with its order
            if scope.whole:
                rows = await uow.fetchall(repo.ALL_COUPONS)
                coupons = {r["coupon_id"]: CouponState(r["is_used"], r["order_id"]) for r in rows}
                return CouponFacts(coupons, await repo.LEDGER.facts(uow), await INBOX.orders_handled(uow, TAG_CANCEL))
            rows = await repo.USED_BY.fetch(uow, scope)
            ledger = await repo.LEDGER.facts(uow, scope)
            return CouponFacts({r["coupon_id"]: CouponState(r["is_used"], r["order_id"]) for r in rows}, ledger,
                               (set() if scope.strict else
                    await INBOX.orders_handled(uow, TAG_CANCEL, {*scope.order_ids, *ledger.taken})))


CONSUMES = (
    Consumes(
        "coupon", ORDER_TOPIC, {TAG_CANCEL: CouponHandlers.on_order_cancel, TAG_REFUND: CouponHandlers.on_order_cancel}
    ),
)
