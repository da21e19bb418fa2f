"""REST: the operator's coupon endpoints."""
from typing import Annotated, Any, Literal

from fastapi import APIRouter

from shop.common.clock import iso
from shop.common.money import fmt
from shop.infra.deps import AdminDep, from_state
from shop.infra.openapi import IdOut, MoneyOut, Out, Result, Time, refusals
from shop.infra.web import Camel, Envelope, IdIn, MoneyIn, ok
from shop.services.coupon.contracts import Coupon, CouponService, CreateCoupon
from shop.services.user.api import UsersDep

router = APIRouter()
CouponsDep = Annotated[CouponService, from_state("coupons")]


class CreateCouponIn(Camel):
    user_id: IdIn
    coupon_price: MoneyIn


class CouponOut(Out):
    coupon_id: IdOut
    coupon_price: MoneyOut
    user_id: IdOut
    order_id: IdOut | None
    is_used: Literal[0, 1]
    used_time: Time | None


class CouponIdOut(Out):
    coupon_id: IdOut


def coupon_json(c: Coupon) -> dict[str, Any]:
    return {
        "couponId": str(c.coupon_id), "couponPrice": fmt(c.coupon_price), "userId": str(c.user_id),
        "orderId": None if c.order_id is None else str(c.order_id), "isUsed": c.is_used, "usedTime": iso(c.used_time),
    }


@router.post("/admin/coupons", tags=["admin"], dependencies=[AdminDep], response_model=Result[CouponIdOut],
             responses=refusals(404))
async def create_coupon(body: CreateCouponIn, users: UsersDep, coupons: CouponsDep) -> Envelope:
    await users.find_user(body.user_id)  # a coupon belongs to a real user
    coupon_id = await coupons.create_coupon(CreateCoupon(body.user_id, body.coupon_price))
    return ok({"couponId": str(coupon_id)})


@router.get("/admin/coupons/{coupon_id}", tags=["admin"], dependencies=[AdminDep], response_model=Result[CouponOut])
async def get_coupon(coupon_id: IdIn, coupons: CouponsDep) -> Envelope:
    return ok(coupon_json(await coupons.find_coupon(coupon_id)))
