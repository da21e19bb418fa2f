"""The goods service: finding goods, reducing stock for an order, restoring it when the order is cancelled."""
from typing import Any

from shop.admin.audit import ledger_facts
from shop.common.clock import utcnow
from shop.common.codes import ShopCode
from shop.common.errors import ShopError
from shop.common.ids import IdWorker
from shop.infra.db import Database, UnitOfWork
from shop.infra.messaging import Consumes, Inbox, Message
from shop.services.goods import repository as repo
from shop.services.goods.contracts import CreateGoods, Goods, ReduceStock
from shop.services.goods.models import inbox
from shop.services.order.contracts import ORDER_TOPIC, TAG_CANCEL, TAG_REFUND, OrderCancelled

INBOX = Inbox(inbox)


def _goods(row: Any) -> Goods:
    return Goods(
        goods_id=row["goods_id"], goods_name=row["goods_name"], goods_number=row["goods_number"],
        goods_price=row["goods_price"], goods_desc=row["goods_desc"], add_time=row["add_time"],
    )


class GoodsHandlers:
    def __init__(self, db: Database, ids: IdWorker) -> None:
        self.db = db
        self.ids = ids

    async def find_goods(self, goods_id: int) -> Goods:
        async with self.db.unit_of_work(readonly=True) as uow:
            row = await repo.find(uow, goods_id)
        if row is None:
            raise ShopError(ShopCode.SHOP_GOODS_NO_EXIST)
        return _goods(row)

    async def create_goods(self, cmd: CreateGoods) -> int:
        goods_id = self.ids.next_id()
        now = utcnow()
        async with self.db.unit_of_work() as uow:
            await repo.insert(
                uow, goods_id=goods_id, goods_name=cmd.goods_name, goods_number=cmd.goods_number,
                goods_price=cmd.goods_price, goods_desc=cmd.goods_desc, add_time=now,
            )
            await repo.log(uow, goods_id, 0, repo.STOCK_IN, cmd.goods_number, now)
            await uow.commit()
        return goods_id

    async def reduce_stock(self, cmd: ReduceStock) -> None:
        async with self.db.unit_of_work() as uow:
            # The ledger row first: it is the idempotency key and the barrier in one.
            if not await repo.log(uow, cmd.goods_id, cmd.order_id, repo.REDUCE, cmd.goods_number, utcnow()):
                row = await repo.find_log(uow, cmd.goods_id, cmd.order_id, repo.REDUCE)
                if row is not None and row["goods_number"] == 0:
                    # The order's cancellation got here first (a late call): refuse, change nothing.
                    raise ShopError(ShopCode.SHOP_ORDER_STATUS_INVALID, "the order was already cancelled")
                return  # a repeated call: the first one's reduction stands
            if not await repo.take(uow, cmd.goods_id, cmd.goods_number):
                if await repo.find(uow, cmd.goods_id) is None:
                    raise ShopError(ShopCode.SHOP_GOODS_NO_EXIST)
                raise ShopError(ShopCode.SHOP_GOODS_NUM_NOT_ENOUGH)
            await uow.commit()

    async def on_order_cancel(self, uow: UnitOfWork, msg: Message) -> None:
        """Give back what this order took, once; if it took nothing, make sure it never will."""
        ev = OrderCancelled.from_message(msg)
        now = utcnow()
        if await repo.log(uow, ev.goods_id, ev.order_id, repo.REDUCE, 0, now):
            # Null compensation: nothing was taken. The empty reduction row is the barrier that
            # refuses a reduction arriving late for this order.
            await repo.log(uow, ev.goods_id, ev.order_id, repo.RESTORE, 0, now)
            return
        taken = await repo.find_log(uow, ev.goods_id, ev.order_id, repo.REDUCE)
        n = taken["goods_number"]
        if await repo.log(uow, ev.goods_id, ev.order_id, repo.RESTORE, n, now) and n > 0:
            await repo.give_back(uow, ev.goods_id, n)

    async def audit_facts(self) -> dict[str, Any]:
        """This service's side of the cross-service invariants (see admin.audit)."""
        async with self.db.unit_of_work() as uow:
            goods_rows = await uow.fetchall(repo.ALL_GOODS)
            logs = await uow.fetchall(repo.ALL_LOGS)
            seen = await INBOX.keys(uow, TAG_CANCEL)
        return {
            "balances": {r["goods_id"]: r["goods_number"] for r in goods_rows},
            "cancels_seen": {int(k) for k in seen},
            **ledger_facts(logs, entity="goods_id", kind="log_type", amount="goods_number", put_in=repo.STOCK_IN,
                           take=repo.REDUCE, give_back=repo.RESTORE),
        }


CONSUMES = (
    Consumes("goods", ORDER_TOPIC, {TAG_CANCEL: GoodsHandlers.on_order_cancel, TAG_REFUND: GoodsHandlers.on_order_cancel}),
)
