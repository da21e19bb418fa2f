"""The OpenAPI document, saying what the shop really answers: every body a Result envelope, every
status a route can give, the bearer schemes, ids and money as the strings they cross JSON as.

FastAPI derives each route's request from its types and its 200 from `response_model=Result[...]`
(documentation only: the routes return an `Envelope`, which FastAPI sends as it is, unvalidated).
The error statuses are added in one place, `openapi()` below, from what the generated operation
already says (a body, parameters, path parameters, a bearer scheme), plus the statuses a route
declares itself with `refusals(...)` (what its business rules refuse, which no signature shows).
"""
from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from shop.common.ids import MAX_ID
from shop.common.money import MAX as MAX_MONEY

# What the shop answers: ids as digit strings (JavaScript loses precision above 2^53), money with
# its two places.
ID_PATTERN = r"^[0-9]{1,19}$"
MONEY_PATTERN = r"^[0-9]{1,10}(\.[0-9]{1,2})?$"


def _digits_up_to(n: int) -> str:
    """A regex for the decimal numbers 1..n without leading zeros: the pattern of a request's id can
    then be exactly what the shop accepts (a client tool that generates valid ids from the document,
    as schemathesis does, must not be answered 422)."""
    s = str(n)
    shorter = f"[1-9][0-9]{{0,{len(s) - 2}}}" if len(s) > 1 else ""
    same_length = [s]
    for i, d in enumerate(s):
        low = 1 if i == 0 else 0
        if int(d) > low:
            rest = len(s) - i - 1
            same_length.append(f"{s[:i]}[{low}-{int(d) - 1}]" + (f"[0-9]{{{rest}}}" if rest else ""))
    return "|".join(([shorter] if shorter else []) + same_length)


_MONEY_DIGITS = len(str(int(MAX_MONEY)))  # DECIMAL(10,2): 8 digits before the point

# The request side of common.ids.parse_id and common.money.parse_money (infra/web.py: IdIn, MoneyIn).
ID_IN_SCHEMA: dict[str, Any] = {
    "description": "an id: a positive integer below 2^63, as a string of digits (or a JSON integer)",
    "anyOf": [{"type": "string", "pattern": f"^({_digits_up_to(MAX_ID)})$"},
              {"type": "integer", "minimum": 1, "maximum": MAX_ID}],
}
MONEY_IN_SCHEMA: dict[str, Any] = {
    "description": f"an amount with at most 2 decimals, at most {MAX_MONEY}, as a string (or a JSON number)",
    "anyOf": [{"type": "string", "pattern": rf"^[0-9]{{1,{_MONEY_DIGITS}}}(\.[0-9]{{1,2}})?$"},
              {"type": "number", "minimum": 0, "maximum": float(MAX_MONEY), "multipleOf": 0.01}],
}

# A one-line text field: no control characters (common/text.py). The shop refuses lone surrogates
# too (a JSON "\ud800" escape), which the pattern leaves unsaid: a surrogate range is no regex to
# the Rust JSON Schema validators (schemathesis's), which then ignore the whole pattern.
TEXT_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"
# A message's id as GET /admin/messages lists it: a number (an id) or text with something not a digit.
MESSAGE_ID_PATTERN = rf"^(?:{_digits_up_to(MAX_ID)}|.*[^0-9].*)$"


class Pattern:
    """Adds `pattern` to a type's generated JSON schema, keeping the rest (its lengths...): for a
    validator (infra/web.py's Text) whose refusals the document must tell a client about."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> dict[str, Any]:
        schema: dict[str, Any] = handler(core_schema)
        schema["pattern"] = self.pattern
        return schema


IdOut = Annotated[str, Field(pattern=ID_PATTERN, examples=["346321587315814400"])]
MoneyOut = Annotated[str, Field(pattern=MONEY_PATTERN, examples=["4800.00"])]
Time = Annotated[str, Field(description="ISO 8601, UTC", examples=["2026-11-30T06:00:00.000Z"])]


class Out(BaseModel):
    """A response's data, as documented: camelCase names, like the requests."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


T = TypeVar("T")


class Result(BaseModel, Generic[T]):
    """The envelope of a success."""

    success: Literal[True]
    code: Literal["SHOP_SUCCESS"]
    message: str
    data: T


class ErrorResult(BaseModel):
    """The envelope of a failure: `code` names the outcome (common/codes.py), `data` carries what the
    failure names (an order that was saved, the cart line that failed) or null."""

    success: Literal[False]
    code: str = Field(pattern=r"^SHOP_[A-Z_]+$", examples=["SHOP_REQUEST_PARAMETER_VALID"])
    message: str
    data: Any


# Why each status is given (API.md, Conventions and Limits).
ERRORS: dict[int, str] = {
    400: "malformed request (the body is not JSON)",
    401: "missing or bad credentials or signature",
    403: "authenticated but not allowed (not the caller's)",
    404: "unknown resource",
    409: "business conflict (stock, coupon, balance, state)",
    413: "request body over 64 KiB",
    422: "invalid input",
    429: "too many failed logins for that user name (see Retry-After)",
    500: "internal error",
    503: "a dependency is unavailable",
}


RETRY_AFTER = {"Retry-After": {"description": "seconds until the window passes", "schema": {"type": "integer"}}}


def refusals(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for the statuses a route's own rules give (404 of an id in the body, 403 of
    another's order, 409...); the envelope and the description are filled in by openapi()."""
    return {s: {"description": ERRORS[s]} for s in statuses}


def _error_statuses(op: dict[str, Any]) -> set[int]:
    statuses = {413, 500, 503} | {int(s) for s in op.get("responses", {}) if s != "200"}
    params = op.get("parameters", [])
    if "requestBody" in op:
        statuses |= {400, 422}
    if params:
        statuses.add(422)
    if any(p["in"] == "path" for p in params):
        statuses.add(404)
    if op.get("security"):
        statuses.add(401)
    return statuses


def install_openapi(app: FastAPI) -> None:
    """app.openapi(): FastAPI's document, with every error status's envelope. Built once, at the first
    GET /openapi.json, when every router has been included."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            # FastAPI's own 422 body (HTTPValidationError) is never sent: the envelope replaces it.
            schemas.pop("HTTPValidationError", None)
            schemas.pop("ValidationError", None)
            schemas["ErrorResult"] = ErrorResult.model_json_schema()
            envelope = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResult"}}}
            for path in doc["paths"].values():
                for op in path.values():
                    for status in sorted(_error_statuses(op)):
                        op["responses"][str(status)] = {"description": ERRORS[status], "content": envelope}
                        if status == 429:
                            op["responses"]["429"]["headers"] = RETRY_AFTER
                    op["responses"] = dict(sorted(op["responses"].items()))
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
