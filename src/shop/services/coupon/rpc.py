"""The coupon service on the wire: its gRPC method table, the converters, and its client."""
from __future__ import annotations

from typing import Any

from shop.infra.rpc.client import GrpcClient
from shop.infra.rpc.server import AUDIT_FACTS, Method, Service, method_table
from shop.infra.rpc.wire import build, money_in, money_out, opt, time_in_opt, time_out_opt
from shop.rpc.v1 import participants_pb2 as pb
from shop.rpc.v1 import participants_pb2_grpc as pb_grpc
from shop.services.coupon.contracts import Coupon, CouponFacts, CreateCoupon, UseCoupon


def coupon_out(c: Coupon) -> pb.Coupon:
    return pb.Coupon(
        coupon_id=c.coupon_id, coupon_price=money_out(c.coupon_price), user_id=c.user_id, order_id=c.order_id,
        is_used=c.is_used, used_time=time_out_opt(c.used_time),
    )


def coupon_in(m: pb.Coupon) -> Coupon:
    return Coupon(
        coupon_id=m.coupon_id, coupon_price=money_in(m.coupon_price), user_id=m.user_id,
        order_id=opt(m, "order_id"), is_used=m.is_used, used_time=time_in_opt(m, "used_time"),
    )


async def _find_coupon(h: Any, r: pb.FindCouponRequest) -> pb.Coupon:
    return coupon_out(await h.find_coupon(r.coupon_id))


async def _create_coupon(h: Any, r: pb.CreateCouponRequest) -> pb.CreateCouponReply:
    cmd = CreateCoupon(user_id=r.user_id, coupon_price=money_in(r.coupon_price))
    return pb.CreateCouponReply(coupon_id=await h.create_coupon(cmd))


async def _use_coupon(h: Any, r: pb.UseCouponRequest) -> pb.UseCouponReply:
    await h.use_coupon(UseCoupon(coupon_id=r.coupon_id, user_id=r.user_id, order_id=r.order_id))
    return pb.UseCouponReply()


SERVICE = Service(
    "coupon", "shop.v1.CouponService",
    method_table(
        Method("FindCoupon", "find_coupon", _find_coupon, retry=True),
        Method("UseCoupon", "use_coupon", _use_coupon, retry=True),
        Method("CreateCoupon", "create_coupon", _create_coupon, retry=False),
        AUDIT_FACTS,
    ),
    pb_grpc.CouponServiceStub, pb_grpc.add_CouponServiceServicer_to_server,
)


class CouponClient(GrpcClient):
    """contracts.CouponService over gRPC."""

    service = SERVICE

    async def find_coupon(self, coupon_id: int) -> Coupon:
        return coupon_in(await self._call("find_coupon", build(lambda: pb.FindCouponRequest(coupon_id=coupon_id))))

    async def create_coupon(self, cmd: CreateCoupon) -> int:
        req = build(lambda: pb.CreateCouponRequest(user_id=cmd.user_id, coupon_price=money_out(cmd.coupon_price)))
        return int((await self._call("create_coupon", req)).coupon_id)

    async def use_coupon(self, cmd: UseCoupon) -> None:
        req = build(lambda: pb.UseCouponRequest(coupon_id=cmd.coupon_id, user_id=cmd.user_id, order_id=cmd.order_id))
        await self._call("use_coupon", req)

    async def audit_facts(self) -> CouponFacts:
        return await self._facts(CouponFacts)
