"""REST: the goods, for shoppers (read) and operators."""
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import AfterValidator, Field, StrictInt

from shop.common.clock import iso
from shop.common.money import fmt
from shop.infra.deps import AdminDep, from_state
from shop.infra.openapi import IdOut, MoneyOut, Out, Result, Time, refusals
from shop.infra.web import Camel, Envelope, IdempotencyKey, IdIn, MoneyIn, Text, ok
from shop.services.goods.contracts import MAX_STOCK, CreateGoods, Goods, GoodsService, Restock

router = APIRouter()
GoodsDep = Annotated[GoodsService, from_state("goods")]


class CreateGoodsIn(Camel):
    goods_name: Text = Field(min_length=1, max_length=255)
    goods_number: StrictInt = Field(ge=0, le=MAX_STOCK)
    goods_price: MoneyIn
    goods_desc: Text | None = Field(default=None, max_length=255)


def _not_zero(n: int) -> int:
    if n == 0:
        raise ValueError("a restock changes the stock: not 0")
    return n


class RestockIn(Camel):
    # The document says "not 0" too: a client generating valid requests from it must not be refused.
    delta: Annotated[StrictInt, AfterValidator(_not_zero)] = Field(
        ge=-MAX_STOCK, le=MAX_STOCK, json_schema_extra={"not": {"const": 0}})


class GoodsOut(Out):
    goods_id: IdOut
    goods_name: str
    goods_number: int
    goods_price: MoneyOut
    goods_desc: str | None
    add_time: Time


class GoodsIdOut(Out):
    goods_id: IdOut


class StockOut(Out):
    goods_id: IdOut
    goods_number: int


def goods_json(g: Goods) -> dict[str, Any]:
    return {
        "goodsId": str(g.goods_id), "goodsName": g.goods_name, "goodsNumber": g.goods_number,
        "goodsPrice": fmt(g.goods_price), "goodsDesc": g.goods_desc, "addTime": iso(g.add_time),
    }


@router.post("/admin/goods", tags=["admin"], dependencies=[AdminDep], response_model=Result[GoodsIdOut])
async def create_goods(body: CreateGoodsIn, goods: GoodsDep) -> Envelope:
    goods_id = await goods.create_goods(
        CreateGoods(body.goods_name, body.goods_number, body.goods_price, body.goods_desc)
    )
    return ok({"goodsId": str(goods_id)})


# For shoppers, and below for operators: the same view.
@router.get("/goods/{goods_id}", tags=["goods"], response_model=Result[GoodsOut])
@router.get("/admin/goods/{goods_id}", tags=["admin"], dependencies=[AdminDep], response_model=Result[GoodsOut])
async def get_goods(goods_id: IdIn, goods: GoodsDep) -> Envelope:
    return ok(goods_json(await goods.find_goods(goods_id)))


@router.post("/admin/goods/{goods_id}/stock", tags=["admin"], dependencies=[AdminDep],
             response_model=Result[StockOut], responses=refusals(409))
async def restock(goods_id: IdIn, body: RestockIn, goods: GoodsDep, idempotency_key: IdempotencyKey = None
                  ) -> Envelope:
    """Adds delta units (or, negative, removes them: 409 if fewer are left), written to the goods' ledger.
    With an Idempotency-Key, the change is made once for this goods: sent again with the same key and
    delta (a retry whose answer was lost), it changes nothing and answers the stock as it is now; the
    same key with another delta is a 422. A refused change leaves its key unused."""
    number = await goods.restock(Restock(goods_id, body.delta, idempotency_key))
    return ok({"goodsId": str(goods_id), "goodsNumber": number})
