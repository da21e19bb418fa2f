"""FastAPI dependencies: the wired shop, the calling user, the admin.

All `async def`: FastAPI runs a plain `def` dependency in a thread pool, a thread hop per request.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

from shop.common.codes import ShopCode
from shop.common.errors import ShopError
from shop.infra.auth import bearer, check_admin

if TYPE_CHECKING:
    from shop.bootstrap import Shop


async def get_shop(request: Request) -> "Shop":
    return request.app.state.shop


async def current_user_id(request: Request) -> int:
    shop = request.app.state.shop
    return shop.tokens.verify(bearer(request.headers.get("authorization")))


async def require_admin(request: Request) -> None:
    check_admin(request.headers.get("authorization"), request.app.state.shop.admin_token)


def forbid_unless(owner_id: int, caller_id: int) -> None:
    if owner_id != caller_id:
        raise ShopError(ShopCode.SHOP_USER_NOT_AUTHORIZED, "not yours", http_status=403)


ShopDep = Annotated["Shop", Depends(get_shop)]
UserIdDep = Annotated[int, Depends(current_user_id)]
AdminDep = Depends(require_admin)
