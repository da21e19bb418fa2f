"""The goods service's interface (the original's IGoodsService): typed values in and out."""
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from shop.common.codes import ShopCode
from shop.common.errors import ShopError
from shop.common.timeline import TimelineEvent
from shop.infra.db.scope import EVERYTHING, AuditScope
from shop.infra.ledger import LedgerFacts

MAX_STOCK = 2_000_000_000  # the stock column is a 32-bit int: no goods holds more


@dataclass(frozen=True, slots=True)
class Goods:
    goods_id: int
    goods_name: str
    goods_number: int
    goods_price: Decimal
    goods_desc: str | None
    add_time: datetime


@dataclass(frozen=True, slots=True)
class CreateGoods:
    goods_name: str
    goods_number: int
    goods_price: Decimal
    goods_desc: str | None = None


@dataclass(frozen=True, slots=True)
class StockLine:
    """One line of an order, as the goods service sees it: which goods, how many units, and the
    price the client's order says (checked in the step; None: not checked, as in a cancel)."""

    goods_id: int
    goods_number: int
    goods_price: Decimal | None = None


def check_line(line: StockLine, goods: Goods | None) -> None:
    """The original's checks of one line's goods, in its order: the goods exists, the client's
    price is its price, the stock covers the units. A refusal names the line's goods
    (data.goodsId); one for stock also says how many are left (the front door's sold-out gate
    reads it). Mended: an order may take the last unit (the original refused goods_number == stock)."""
    named = {"goodsId": str(line.goods_id)}
    if goods is None:
        raise ShopError(ShopCode.SHOP_GOODS_NO_EXIST, data=named)
    if line.goods_price is not None and line.goods_price != goods.goods_price:
        raise ShopError(ShopCode.SHOP_GOODS_PRICE_INVALID, data=named)
    if line.goods_number > goods.goods_number:
        raise ShopError(ShopCode.SHOP_GOODS_NUM_NOT_ENOUGH, data={**named, "goodsNumber": goods.goods_number})


async def first_refused(lines: Iterable[StockLine], find: Callable[[int], Awaitable[Goods | None]]) -> ShopError | None:
    """check_line's refusal of the first of `lines` it refuses, each goods read by `find` (None:
    there is none); None if it refuses none. The goods step's answer after a refused take, and the
    order's for an order refused before its steps: both name the line the original would have."""
    for line in lines:
        try:
            check_line(line, await find(line.goods_id))
        except ShopError as refused:
            return refused
    return None


@dataclass(frozen=True, slots=True)
class ReduceStock:
    """Take every line's units for one order: all of them, or none (a cart is one step)."""

    order_id: int
    lines: list[StockLine]


@dataclass(frozen=True, slots=True)
class Restock:
    """An operator's change of a goods' stock: delta > 0 adds, < 0 removes (never below 0). With a
    key (the request's Idempotency-Key), the change is made once: the same key and delta again on
    the same goods change nothing, the same key with another delta is refused."""

    goods_id: int
    delta: int
    key: str | None = None


@dataclass(frozen=True, slots=True)
class GoodsFacts:
    """The goods service's side of the audit (admin.audit.check)."""

    stock: dict[int, int]  # goods -> units on the shelf
    ledger: LedgerFacts
    cancels_seen: set[int]  # orders whose cancel this service has handled
    through: int = 0  # entities: the goods covered, [since_id, through)


class GoodsService(Protocol):
    async def find_goods(self, goods_id: int) -> Goods: ...

    async def create_goods(self, cmd: CreateGoods) -> int: ...

    async def restock(self, cmd: Restock) -> int:
        """The goods' stock after the change, recorded in its ledger (after a repeat of a keyed one,
        the stock as it is now). Without a key, each call is a new adjustment."""
        ...

    async def reduce_stock(self, cmd: ReduceStock) -> None:
        """Every line or none, in one transaction. Idempotent per order; refused once the order's
        cancellation has been recorded. A refusal's data names the line (goodsId)."""
        ...

    async def audit_facts(self, scope: AuditScope = EVERYTHING) -> GoodsFacts:
        """This service's facts about the scope's orders (or entities): indexed reads only."""
        ...

    async def timeline(self, order_id: int) -> list[TimelineEvent]:
        """Every fact this service holds about one order, for the operator."""
        ...
