"""FastAPI dependencies: what a route needs from the app's state, the calling user, the admin.

Each route asks for the narrow thing it uses (a service's interface, the tokens), never the whole
wired shop: `create_app` puts each on `app.state`, and `from_state(name)` hands it over.
All `async def`: FastAPI runs a plain `def` dependency in a thread pool, a thread hop per request.
"""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.openapi.models import HTTPBearer
from fastapi.params import Depends as DependsParam
from fastapi.security.base import SecurityBase

from shop.common.codes import ShopCode
from shop.common.errors import ShopError
from shop.infra.auth import Tokens, bearer, check_secret


def from_state(name: str) -> DependsParam:
    async def get(request: Request) -> Any:
        return getattr(request.app.state, name)

    get.__name__ = f"state_{name}"
    return Depends(get)


class BearerToken(SecurityBase):
    """`Authorization: Bearer <token>`, read by auth.bearer; a SecurityBase so that FastAPI puts the
    scheme in the OpenAPI document and `security` on every route that depends on it."""

    def __init__(self, scheme_name: str, description: str) -> None:
        self.model = HTTPBearer(description=description)
        self.scheme_name = scheme_name

    async def __call__(self, request: Request) -> str:
        return bearer(request.headers.get("authorization"))


USER_TOKEN = BearerToken("userToken", "a user's token, from POST /user/login")
ADMIN_TOKEN = BearerToken("adminToken", "the operator's token (SHOP_ADMIN_TOKEN)")
MERCHANT_KEY = BearerToken("merchantKey", "the shop's key at the payment platform (SHOP_MERCHANT_KEY): the sandbox's "
                                          "merchant calls")


async def current_user_id(request: Request, token: Annotated[str, Depends(USER_TOKEN)]) -> int:
    tokens: Tokens = request.app.state.tokens
    return tokens.verify(token)


async def require_admin(request: Request, token: Annotated[str, Depends(ADMIN_TOKEN)]) -> None:
    check_secret(token, request.app.state.admin_token, "admin token")


def forbid_unless(owner_id: int, caller_id: int) -> None:
    if owner_id != caller_id:
        raise ShopError(ShopCode.SHOP_USER_NOT_AUTHORIZED, "not yours", http_status=403)


TokensDep = Annotated[Tokens, from_state("tokens")]
UserIdDep = Annotated[int, Depends(current_user_id)]
AdminDep = Depends(require_admin)
