"""What every REST front end shares: the envelope response, the one place errors become
responses, request field types, and the auth dependencies."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, PlainSerializer
from pydantic.alias_generators import to_camel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from shop.common import result
from shop.common.codes import ShopCode
from shop.common.errors import ShopError
from shop.common.ids import parse_id
from shop.common.money import parse_money, parse_signed_money
from shop.common.text import check_text
from shop.infra.failures import as_shop_error

T = TypeVar("T")


class Envelope(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def ok(data: Any = None, message: str = "success") -> Envelope:
    return Envelope(result.ok(data, message))


def valid(parse: Callable[[Any], T]) -> Callable[[Any], T]:
    """A parser of common/ as a pydantic validator: its ShopError becomes the ValueError pydantic
    reports, so the refusal is one 422 with every field's reason (validation_error below)."""

    def validate(v: Any) -> T:
        try:
            return parse(v)
        except ShopError as e:
            raise ValueError(e.message) from None

    return validate


# Every request's ids, amounts and text go through these, in bodies, paths and queries alike, so
# the formats of API.md ("Limits and formats") are checked in one place each (common/ids.py,
# money.py, text.py) and a refusal is a 422 SHOP_REQUEST_PARAMETER_VALID naming the field.
IdIn = Annotated[int, BeforeValidator(valid(parse_id)), PlainSerializer(str)]
MoneyIn = Annotated[Decimal, BeforeValidator(valid(parse_money)), PlainSerializer(str)]
# moneyPaid: null is 0, a negative amount reaches the order rules (common/money.py).
SignedMoneyIn = Annotated[Decimal, BeforeValidator(valid(parse_signed_money)), PlainSerializer(str)]
# A one-line text field: no control characters (NUL, newline, DEL, ...), no lone surrogates.
Text = Annotated[str, AfterValidator(valid(check_text))]


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


def _http_error(status: int, detail: str, headers: Mapping[str, str] | None = None) -> Envelope:
    """Starlette's own refusals (no route, wrong method) in the envelope."""
    code = {404: ShopCode.SHOP_NOT_FOUND}.get(
        status, ShopCode.SHOP_FAIL if status >= 500 else ShopCode.SHOP_REQUEST_PARAMETER_VALID)
    return Envelope(result.fail(code, detail), status_code=status, headers=headers)


def _error(exc: ShopError) -> Envelope:
    return Envelope(result.fail(exc.code, exc.message, exc.data), status_code=exc.http_status)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ShopError)
    async def shop_error(_: Request, exc: ShopError) -> Response:
        return _error(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> Response:
        malformed = any(e.get("type") == "json_invalid" for e in exc.errors())
        return Envelope(
            result.fail(ShopCode.SHOP_REQUEST_PARAMETER_VALID, _validation_message(exc)),
            status_code=400 if malformed else 422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        return _http_error(exc.status_code, str(exc.detail), exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        return _error(as_shop_error(exc, f"{request.method} {request.url.path}"))
