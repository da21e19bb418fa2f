"""What every REST front end shares: the envelope response, the one place errors become
responses, request field types, and the auth dependencies."""
from __future__ import annotations

import logging
from decimal import Decimal
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer, WithJsonSchema
from pydantic.alias_generators import to_camel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from shop.common import result
from shop.common.codes import ShopCode
from shop.common.errors import ShopError
from shop.common.ids import parse_id
from shop.common.money import parse_money
from shop.infra.openapi import ID_IN_SCHEMA, MONEY_IN_SCHEMA

log = logging.getLogger("shop.web")


class Envelope(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def ok(data: Any = None, message: str = "success") -> Envelope:
    return Envelope(result.ok(data, message))


def _id(v: Any) -> int:
    try:
        return parse_id(v)
    except ShopError as e:
        raise ValueError(e.message) from None


def _money(v: Any) -> Decimal:
    try:
        return parse_money(v)
    except ShopError as e:
        raise ValueError(e.message) from None


def _signed_money(v: Any) -> Decimal:
    """moneyPaid: a negative value passes here so the order rules answer SHOP_MONEY_PAID_LESS_ZERO."""
    if isinstance(v, (int, float, str, Decimal)) and not isinstance(v, bool):
        s = str(v).strip()
        if s.startswith("-"):
            return -_money(s[1:])
    return _money(v)


# WithJsonSchema: the document says what the validators accept (infra/openapi.py). A negative
# moneyPaid is documented as invalid, which it is (422), only with its own code.
IdIn = Annotated[int, BeforeValidator(_id), PlainSerializer(str), WithJsonSchema(ID_IN_SCHEMA)]
MoneyIn = Annotated[Decimal, BeforeValidator(_money), PlainSerializer(str), WithJsonSchema(MONEY_IN_SCHEMA)]
SignedMoneyIn = Annotated[Decimal, BeforeValidator(_signed_money), PlainSerializer(str),
                          WithJsonSchema(MONEY_IN_SCHEMA)]


class Camel(BaseModel):
    """Request bodies use the original beans' camelCase names."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ShopError)
    async def shop_error(request: Request, exc: ShopError) -> Response:
        return Envelope(result.fail(exc.code, exc.message, exc.data), status_code=exc.http_status,
                        headers=error_headers(request, exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> Response:
        malformed = any(e.get("type") == "json_invalid" for e in exc.errors())
        return Envelope(
            result.fail(ShopCode.SHOP_REQUEST_PARAMETER_VALID, _validation_message(exc)),
            status_code=400 if malformed else 422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        code = ShopCode.SHOP_NOT_FOUND if exc.status_code == 404 else ShopCode.SHOP_REQUEST_PARAMETER_VALID
        if exc.status_code >= 500:
            code = ShopCode.SHOP_FAIL
        return Envelope(result.fail(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> Response:
        log.exception("unhandled error")
        # Answered outside the middlewares (Starlette's outermost one): its header given here.
        return Envelope(result.fail(ShopCode.SHOP_FAIL, "internal error"), status_code=500,
                        headers={"X-Content-Type-Options": "nosniff"})


def error_headers(request: Request, exc: ShopError) -> dict[str, str] | None:
    """The headers a refusal carries: on a 401 the bearer challenge RFC 6750 asks for (with
    `error="invalid_token"` when the caller did present credentials); Retry-After on one that
    says when to come back (a throttled login: its data's retryAfter, in seconds, which crosses
    gRPC with the error where a header would not)."""
    if exc.http_status == 401:
        presented = "authorization" in request.headers
        return {"WWW-Authenticate": 'Bearer realm="shop"' + (', error="invalid_token"' if presented else "")}
    if exc.http_status == 429 and isinstance(exc.data, dict) and isinstance(exc.data.get("retryAfter"), int):
        return {"Retry-After": str(exc.data["retryAfter"])}
    return None


_NOSNIFF = (b"x-content-type-options", b"nosniff")


class SecurityHeaders:
    """`X-Content-Type-Options: nosniff` on every answer, so a browser never runs one as another
    type than it says. A pure ASGI middleware: one tuple appended as the response starts, no copy
    of the body (it runs on every request)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), _NOSNIFF]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
