"""REST: the goods, for shoppers (read) and operators."""
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import Field, StrictInt

from shop.common.clock import iso
from shop.common.money import fmt
from shop.infra.deps import AdminDep, from_state
from shop.infra.openapi import IdOut, MoneyOut, Out, Result, Time
from shop.infra.web import Camel, Envelope, IdIn, MoneyIn, Text, ok
from shop.services.goods.contracts import CreateGoods, Goods, GoodsService

router = APIRouter()
GoodsDep = Annotated[GoodsService, from_state("goods")]


class CreateGoodsIn(Camel):
    goods_name: Text = Field(min_length=1, max_length=255)
    goods_number: StrictInt = Field(ge=0, le=2_000_000_000)
    goods_price: MoneyIn
    goods_desc: Text | None = Field(default=None, max_length=255)


class GoodsOut(Out):
    goods_id: IdOut
    goods_name: str
    goods_number: int
    goods_price: MoneyOut
    goods_desc: str | None
    add_time: Time


class GoodsIdOut(Out):
    goods_id: IdOut


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
