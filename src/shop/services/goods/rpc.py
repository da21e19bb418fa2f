"""The goods service on the wire: its gRPC method table, the converters, and its client."""
from __future__ import annotations

from typing import Any

from shop.infra.rpc.client import GrpcClient
from shop.infra.rpc.server import AUDIT_FACTS, Method, Service, method_table
from shop.infra.rpc.wire import build, money_in, money_out, opt, time_in, time_out
from shop.rpc.v1 import participants_pb2 as pb
from shop.rpc.v1 import participants_pb2_grpc as pb_grpc
from shop.services.goods.contracts import CreateGoods, Goods, GoodsFacts, ReduceStock


def goods_out(g: Goods) -> pb.Goods:
    return pb.Goods(
        goods_id=g.goods_id, goods_name=g.goods_name, goods_number=g.goods_number,
        goods_price=money_out(g.goods_price), goods_desc=g.goods_desc, add_time=time_out(g.add_time),
    )


def goods_in(m: pb.Goods) -> Goods:
    return Goods(
        goods_id=m.goods_id, goods_name=m.goods_name, goods_number=m.goods_number,
        goods_price=money_in(m.goods_price), goods_desc=opt(m, "goods_desc"), add_time=time_in(m.add_time),
    )


async def _find_goods(h: Any, r: pb.FindGoodsRequest) -> pb.Goods:
    return goods_out(await h.find_goods(r.goods_id))


async def _create_goods(h: Any, r: pb.CreateGoodsRequest) -> pb.CreateGoodsReply:
    cmd = CreateGoods(
        goods_name=r.goods_name, goods_number=r.goods_number, goods_price=money_in(r.goods_price),
        goods_desc=opt(r, "goods_desc"),
    )
    return pb.CreateGoodsReply(goods_id=await h.create_goods(cmd))


async def _reduce_stock(h: Any, r: pb.ReduceStockRequest) -> pb.ReduceStockReply:
    await h.reduce_stock(ReduceStock(order_id=r.order_id, goods_id=r.goods_id, goods_number=r.goods_number))
    return pb.ReduceStockReply()


SERVICE = Service(
    "goods", "shop.v1.GoodsService",
    method_table(
        Method("FindGoods", "find_goods", _find_goods, retry=True),
        Method("ReduceStock", "reduce_stock", _reduce_stock, retry=True),
        Method("CreateGoods", "create_goods", _create_goods, retry=False),
        AUDIT_FACTS,
    ),
    pb_grpc.GoodsServiceStub, pb_grpc.add_GoodsServiceServicer_to_server,
)


class GoodsClient(GrpcClient):
    """contracts.GoodsService over gRPC."""

    service = SERVICE

    async def find_goods(self, goods_id: int) -> Goods:
        return goods_in(await self._call("find_goods", build(lambda: pb.FindGoodsRequest(goods_id=goods_id))))

    async def create_goods(self, cmd: CreateGoods) -> int:
        req = build(lambda: pb.CreateGoodsRequest(
            goods_name=cmd.goods_name, goods_number=cmd.goods_number, goods_price=money_out(cmd.goods_price),
            goods_desc=cmd.goods_desc,
        ))
        return int((await self._call("create_goods", req)).goods_id)

    async def reduce_stock(self, cmd: ReduceStock) -> None:
        req = build(lambda: pb.ReduceStockRequest(
            order_id=cmd.order_id, goods_id=cmd.goods_id, goods_number=cmd.goods_number,
        ))
        await self._call("reduce_stock", req)

    async def audit_facts(self) -> GoodsFacts:
        return await self._facts(GoodsFacts)
