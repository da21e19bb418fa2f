"""The log service: records every payment accepted for an order, once."""
from shop.common.clock import utcnow
from shop.common.money import fmt
from shop.common.timeline import TimelineEvent
from shop.infra.db import EVERYTHING, AuditScope, Database, UnitOfWork
from shop.infra.messaging import Consumes, Inbox, Message
from shop.services.log import repository as repo
from shop.services.log.contracts import LogFacts, PayLogEntry
from shop.services.log.models import inbox
from shop.services.order.contracts import ORDER_TOPIC, TAG_PAID, OrderPaid

INBOX = Inbox(inbox)


class LogHandlers:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def on_order_paid(self, uow: UnitOfWork, msg: Message) -> None:
        ev = OrderPaid.from_message(msg)
        await repo.insert(uow, order_id=ev.order_id, pay_id=ev.pay_id, user_id=ev.user_id, pay_amount=ev.pay_amount,
                          log_time=utcnow())

    async def pay_log(self, order_id: int) -> list[PayLogEntry]:
        rows = await self.db.fetchall(repo.FOR_ORDER, order_id=order_id)
        return [PayLogEntry(order_id=r["order_id"], pay_id=r["pay_id"], user_id=r["user_id"],
                            pay_amount=r["pay_amount"], log_time=r["log_time"]) for r in rows]

    async def timeline(self, order_id: int) -> list[TimelineEvent]:
        async with self.db.unit_of_work(readonly=True) as uow:
            rows = await uow.fetchall(repo.FOR_ORDER, order_id=order_id)
            events = [TimelineEvent(r["log_time"], "log", "log.recorded",
                                    {"payId": str(r["pay_id"]), "payAmount": fmt(r["pay_amount"])}) for r in rows]
            return events + await INBOX.handled_events(uow, str(order_id), "log")

    async def audit_facts(self, scope: AuditScope = EVERYTHING) -> LogFacts:
        if scope.entities:
            return LogFacts(logged={})
        async with scope.unit_of_work(self.db) as uow:
            rows = await (uow.fetchall(repo.ALL) if scope.whole else repo.OF_ORDERS.fetch(uow, scope))
        logged: dict[int, int] = {}
        for r in rows:
            logged[r["order_id"]] = logged.get(r["order_id"], 0) + 1
        return LogFacts(logged=logged)


CONSUMES = (Consumes("log", ORDER_TOPIC, {TAG_PAID: LogHandlers.on_order_paid}),)
