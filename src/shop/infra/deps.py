"""FastAPI dependencies: what a route needs from the app's state, the calling user, the admin.

Each route asks for the narrow thing it uses (a service's interface, the tokens), never the whole
wired shop: `create_app` puts each on `app.state`, and `from_state(name)` hands it over.
All `async def`: FastAPI runs a plain `def` dependency in a thread pool, a thread hop per request.
"""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.params import Depends as DependsParam

from shop.common.codes import ShopCode
from shop.common.errors import ShopError
from shop.infra.auth import Tokens, bearer, check_admin


def from_state(name: str) -> DependsParam:
    async def get(request: Request) -> Any:
        return getattr(request.app.state, name)

    get.__name__ = f"state_{name}"
    return Depends(get)


async def current_user_id(request: Request) -> int:
    tokens: Tokens = request.app.state.tokens
    return tokens.verify(bearer(request.headers.get("authorization")))


async def require_admin(request: Request) -> None:
    check_admin(request.headers.get("authorization"), request.app.state.admin_token)


def forbid_unless(owner_id: int, caller_id: int) -> None:
    if owner_id != caller_id:
        raise ShopError(ShopCode.SHOP_USER_NOT_AUTHORIZED, "not yours", http_status=403)


TokensDep = Annotated[Tokens, from_state("tokens")]
UserIdDep = Annotated[int, Depends(current_user_id)]
AdminDep = Depends(require_admin)
