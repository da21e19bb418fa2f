"""The goods service: finding goods, reducing stock for an order, restoring it when the order is
cancelled, and an operator's restocks."""

from collections.abc import Iterable
from functools import partial

from shop.common.clock import utcnow
from shop.common.codes import ShopCode
from shop.common.errors import ShopError
from shop.common.ids import IdWorker
from shop.common.timeline import TimelineEvent
from shop.infra.db import EVERYTHING, AuditScope, Database, UnitOfWork, as_record
from shop.infra.db.scope import NO_LIMIT
from shop.infra.ledger import LedgerFacts, adjustment_key
from shop.infra.messaging import Consumes, Inbox, Message
from shop.services.goods import repository as repo
from shop.services.goods.contracts import (
    CreateGoods,
    Goods,
    GoodsFacts,
    ReduceStock,
    Restock,
    StockLine,
    first_refused,
)
from shop.services.goods.models import inbox
from shop.services.order.contracts import (
    ORDER_TOPIC,
    TAG_CANCEL,
    TAG_REFUND,
    OrderCancelled,
)

INBOX = Inbox(inbox)
# A step's refusals for what the order asked (not for when it came): the client's order names why.
REFUSED = {ShopCode.SHOP_GOODS_NO_EXIST, ShopCode.SHOP_GOODS_PRICE_INVALID, ShopCode.SHOP_GOODS_NUM_NOT_ENOUGH}


def in_lock_order(lines: Iterable[StockLine]) -> list[StockLine]:
    """A transaction's goods rows are locked in goods-id order: two carts that share goods then
    wait for each other in line, and never each hold a row the other needs (a deadlock, which
    PostgreSQL and MariaDB would break by failing one of them)."""
    return sorted(lines, key=lambda line: line.goods_id)


class GoodsHandlers:
    def __init__(self, db: Database, ids: IdWorker) -> None:
        self.db = db
        self.ids = ids

    async def find_goods(self, goods_id: int) -> Goods:
        row = await self.db.fetchone(repo.FIND, goods_id=goods_id)
        if row is None:  # named, as a cart's failing line will be
            raise ShopError(ShopCode.SHOP_GOODS_NO_EXIST, data={"goodsId": str(goods_id)})
        return as_record(Goods, row)

    async def create_goods(self, cmd: CreateGoods) -> int:
        goods_id = self.ids.next_id()
        now = utcnow()
        async with self.db.unit_of_work() as uow:
            await repo.insert(
                uow, goods_id=goods_id, goods_name=cmd.goods_name, goods_number=cmd.goods_number,
                goods_price=cmd.goods_price, goods_desc=cmd.goods_desc, add_time=now,
            )
            await repo.LEDGER.put_in(uow, goods_id, cmd.goods_number, now)
            await uow.commit()
        return goods_id

    async def restock(self, cmd: Restock) -> int:
        key = self.ids.next_id() if cmd.key is None else adjustment_key(cmd.key)
        async with self.db.unit_of_work() as uow:
            await repo.LEDGER.adjust(uow, cmd.goods_id, key, cmd.delta,
                                     lambda: repo.adjust(uow, cmd.goods_id, cmd.delta), repo.REFUSAL)
            # The stock this transaction left (its own write), or, a repeat, the stock as it is now.
            row = await repo.find(uow, cmd.goods_id)
            await uow.commit()
        return int(row["goods_number"])

    async def reduce_stock(self, cmd: ReduceStock) -> None:
        """A cart's lines in one transaction, each at the client's price: a refused line leaves it
        without commit, which takes back every line taken before it. The order read no goods
        first, so this step is the original's check: a refusal names the first line, in the
        client's order, that fails it (the lines are taken in lock order)."""
        if len(cmd.lines) == 1 and cmd.lines[0].goods_price is not None:  # an order of one goods, priced
            line = cmd.lines[0]
            if await repo.LEDGER.take_at_once(self.db, repo.TAKE_AT_ONCE, line.goods_id, cmd.order_id,
                                              line.goods_number, goods_id=line.goods_id, n=line.goods_number,
                                              price=line.goods_price):
                return
        try:
            async with self.db.unit_of_work() as uow:
                for line in in_lock_order(cmd.lines):
                    try:
                        await repo.LEDGER.take(uow, line.goods_id, cmd.order_id, line.goods_number,
                                               partial(repo.take, uow, line.goods_id, line.goods_number,
                                                       line.goods_price), repo.REFUSAL)
                    except ShopError as exc:
                        raise exc.with_data({"goodsId": str(line.goods_id)}) from None
                await uow.commit()
        except ShopError as exc:
            if exc.code not in REFUSED:  # a late step (the order cancelled first): as it is
                raise
            raise await self._first_refused(cmd.lines) or exc from None

    async def _first_refused(self, lines: list[StockLine]) -> ShopError | None:
        """Why the first line, in the client's order, cannot be taken now (read after the refused
        transaction rolled back: the lines it took before are not counted against the others);
        None if every line would pass now (stock came back meanwhile: the refusal stands as it was)."""
        async with self.db.unit_of_work(readonly=True) as uow:
            async def find(goods_id: int) -> Goods | None:
                row = await repo.find(uow, goods_id)
                return None if row is None else as_record(Goods, row)

            return await first_refused(lines, find)

    async def on_order_cancel(self, uow: UnitOfWork, msg: Message) -> None:
        """Give back what this order took of every line, once; a line it took nothing of is made
        sure never to be taken."""
        ev = OrderCancelled.from_message(msg)
        for line in in_lock_order(ev.items):
            await repo.LEDGER.give_back(uow, line.goods_id, ev.order_id, partial(repo.give_back, uow, line.goods_id))

    async def timeline(self, order_id: int) -> list[TimelineEvent]:
        async with self.db.unit_of_work(readonly=True) as uow:
            steps = await repo.LEDGER.events(uow, order_id, "goods.stock_reduced", "goods.stock_restored")
            return steps + await INBOX.handled_events(uow, str(order_id), "goods")

    async def audit_facts(self, scope: AuditScope = EVERYTHING) -> GoodsFacts:
        """This service's side of the cross-service invariants (see admin.audit)."""
        async with scope.unit_of_work(self.db) as uow:
            if scope.whole:
                stock = {r["goods_id"]: r["goods_number"] for r in await uow.fetchall(repo.ALL_GOODS)}
                return GoodsFacts(stock, await repo.LEDGER.facts(uow), await INBOX.orders_handled(uow, TAG_CANCEL))
            if scope.entities:  # a recount: the goods' stock and their ledgers' sums, in one transaction
                rows, through = await repo.STOCK.first(uow, scope)
                totals = await repo.LEDGER.totals(uow, scope.bounds[0], through or NO_LIMIT)
                return GoodsFacts({r["goods_id"]: r["goods_number"] for r in rows}, LedgerFacts(ledger=totals),
                                  set(), through=through)
            ledger = await repo.LEDGER.facts(uow, scope)
            seen = (set() if scope.strict else
                    await INBOX.orders_handled(uow, TAG_CANCEL, {*scope.order_ids, *ledger.taken}))
            return GoodsFacts({}, ledger, seen)


CONSUMES = (
    Consumes(
        "goods", ORDER_TOPIC, {TAG_CANCEL: GoodsHandlers.on_order_cancel, TAG_REFUND: GoodsHandlers.on_order_cancel}
    ),
)
