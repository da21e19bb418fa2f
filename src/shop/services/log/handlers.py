"""The log service: records every payment accepted for an order, once."""
from typing import Any

from shop.common.clock import iso, utcnow
from shop.common.money import fmt
from shop.infra.db import Database, UnitOfWork
from shop.infra.messaging import Message
from shop.services.log import repository as repo
from shop.services.order.contracts import OrderPaid


class LogHandlers:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def on_order_paid(self, uow: UnitOfWork, msg: Message) -> None:
        ev = OrderPaid.from_message(msg)
        await repo.insert(uow, order_id=ev.order_id, pay_id=ev.pay_id, user_id=ev.user_id, pay_amount=ev.pay_amount,
                          log_time=utcnow())

    async def pay_log(self, order_id: int) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(repo.FOR_ORDER, order_id=order_id)
        return [
            {"orderId": str(r["order_id"]), "payId": str(r["pay_id"]), "userId": str(r["user_id"]),
             "payAmount": fmt(r["pay_amount"]), "logTime": iso(r["log_time"])}
            for r in rows
        ]

    async def audit_facts(self) -> dict[str, Any]:
        rows = await self.db.fetchall(repo.ALL)
        logged: dict[int, int] = {}
        for r in rows:
            logged[r["order_id"]] = logged.get(r["order_id"], 0) + 1
        return {"logged": logged}
