"""What every REST front end shares: the envelope response, the one place errors become
responses (the handlers, and FrontDoor for what they never see: a wrong method on a literal path,
a body too large, an exception nothing answered), and the request field types."""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Annotated, Any, Protocol, TypeVar

import orjson
from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import iter_route_contexts
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, PlainSerializer, WithJsonSchema
from pydantic.alias_generators import to_camel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shop.common import result
from shop.common.codes import ShopCode
from shop.common.errors import ShopError
from shop.common.ids import parse_id
from shop.common.money import parse_money, parse_signed_money
from shop.common.text import check_text
from shop.infra import metrics
from shop.infra.admission import Limiter
from shop.infra.failures import as_shop_error
from shop.infra.openapi import ID_IN_SCHEMA, MONEY_IN_SCHEMA, TEXT_PATTERN, Pattern

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
# WithJsonSchema: the document says what the validators accept (infra/openapi.py). A negative
# moneyPaid is documented as invalid, which it is (422), only with its own code.
IdIn = Annotated[int, BeforeValidator(valid(parse_id)), PlainSerializer(str), WithJsonSchema(ID_IN_SCHEMA)]
MoneyIn = Annotated[Decimal, BeforeValidator(valid(parse_money)), PlainSerializer(str), WithJsonSchema(MONEY_IN_SCHEMA)]
# moneyPaid: null is 0, a negative amount reaches the order rules (common/money.py).
SignedMoneyIn = Annotated[Decimal, BeforeValidator(valid(parse_signed_money)), PlainSerializer(str),
                          WithJsonSchema(MONEY_IN_SCHEMA)]
# A one-line text field: no control characters (NUL, newline, DEL, ...), no lone surrogates.
Text = Annotated[str, AfterValidator(valid(check_text)), Pattern(TEXT_PATTERN)]
# The Idempotency-Key request header (the IETF draft's): 1-255 visible ASCII characters, a UUID
# being the usual one. What it makes happen once is the route's to say.
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255,
                                              pattern=r"^[\x21-\x7e]+$")]


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
    """Starlette's own refusals (no route, wrong method, a body too large) in the envelope."""
    code = {404: ShopCode.SHOP_NOT_FOUND, 413: ShopCode.SHOP_REQUEST_TOO_LARGE}.get(
        status, ShopCode.SHOP_FAIL if status >= 500 else ShopCode.SHOP_REQUEST_PARAMETER_VALID)
    return Envelope(result.fail(code, detail), status_code=status, headers=headers)


def _error(exc: ShopError, headers: Mapping[str, str] | None = None) -> Envelope:
    return Envelope(result.fail(exc.code, exc.message, exc.data), status_code=exc.http_status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ShopError)
    async def shop_error(request: Request, exc: ShopError) -> Response:
        return _error(exc, error_headers(request, exc))

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


def error_headers(request: Request, exc: ShopError) -> dict[str, str] | None:
    return refusal_headers(exc, presented="authorization" in request.headers)


def refusal_headers(exc: ShopError, presented: bool) -> dict[str, str] | None:
    """The headers a refusal carries: on a 401 the bearer challenge RFC 6750 asks for (with
    `error="invalid_token"` when the caller did present credentials); Retry-After on one that
    says when to come back (retry_after below)."""
    if exc.http_status == 401:
        return {"WWW-Authenticate": 'Bearer realm="shop"' + (', error="invalid_token"' if presented else "")}
    return retry_after(exc)


def retry_after(exc: ShopError) -> dict[str, str] | None:
    """Retry-After for a refusal whose data says when to come back (retryAfter, in seconds, which
    crosses gRPC with the error where a header would not): a throttled login (429), a request the
    front door's admission control turned away (503)."""
    if exc.http_status in (429, 503) and isinstance(exc.data, dict) and isinstance(exc.data.get("retryAfter"), int):
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

# API.md, "Limits and formats": a request body over 64 KiB is a 413. The largest legitimate body (an
# order of 20 lines, a payment notification) is a few KiB.
MAX_BODY_BYTES = 64 * 1024


class BodyTooLarge(StarletteHTTPException):
    """Raised by FrontDoor's receive() once a body outgrows the limit. An HTTPException because
    FastAPI's body reading passes those on as they are (anything else it turns into a 400), to
    http_error above; a route that reads the body itself (the payment notification) gets it too.
    No "Connection: close": a server that closes a socket with the client's bytes still unread sends
    a reset, and the client may lose the 413 with it (seen over uvicorn in the cluster tests); kept
    open, the server drops the rest of the body unread and the client reads its answer."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is over {limit} bytes")


# A request refused by admission control (FrontDoor): not a dependency down, but the answer a client
# already retries later, which is what it should do. One instance: its data is never changed.
BUSY = ShopError(ShopCode.SHOP_SERVICE_UNAVAILABLE, "the shop is busy: too many orders in progress; retry later",
                 data={"retryAfter": 1})


class Shortcut(Protocol):
    """An answer FrontDoor gives a route's request itself, from its headers and whole body, before
    the framework routes it, resolves its dependencies or parses it (the order's sold-out refusal,
    services/order/api.py): a hot refusal then costs little more than GET /healthz. It makes every
    check the route makes before that answer, and on anything it is unsure of answers None: the
    route then answers as always, the body replayed to it."""

    def armed(self) -> bool:
        """Whether it may answer at all now (cheap): if not, the request goes on unread."""
        ...

    async def answer(self, scope: Scope, body: bytes) -> ShopError | None: ...


class Direct(Protocol):
    """A route's request answered by FrontDoor itself once admitted, from its headers and whole body,
    without the framework's routing and dependency solving, a third of an embedded order's CPU
    (POST /order/confirm: ConfirmDirect in services/order/api.py; POST /pay/callbackPayment:
    NotifyDirect in services/pay/api.py). It makes every check the route makes, with the same parts,
    and answers as the route would; on anything it is unsure of it answers None, and the route
    answers, the body replayed to it. A ShopError it raises is answered as the app's handler would
    answer it (tests/integration/test_direct.py compares the two)."""

    async def answer(self, scope: Scope, body: bytes) -> Response | None: ...


class FrontDoor:
    """Pure ASGI, around every HTTP role's app (app.py), before anything reads the body:

    - a path some route names literally (no parameters) answers 405 to a method none of its routes
      has, with `Allow`, even where a templated route would match the same text: GET /order/confirm
      is the wrong method for /order/confirm, not GET /order/{orderId} with an id "confirm" (Starlette
      prefers any full match, templated or not, to a literal path's partial one);
    - a body over `max_body` bytes is a 413, refused on its Content-Length before a byte of it is
      read, and counted as it streams when it has none (chunked), so no more than the limit is held;
    - an exception no handler answered becomes a ShopError (infra/failures.py: 503 for a dependency
      down, 500 for a bug, logged there once) in the envelope, rather than Starlette's plain-text 500
      and a second traceback from the server;
    - a (method, path) with an armed Shortcut gets its answer, if it has one, after the checks above;
    - a (method, path) under admission control (infra/admission.py) then waits for its turn, or is
      refused with a 503 and Retry-After (BUSY) having changed nothing: after the shortcut, so the
      cheap sold-out answers are never queued behind the orders that do the work;
    - a (method, path) with a Direct is then answered by it, if it answers."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute], max_body: int = MAX_BODY_BYTES,
                 shortcuts: Mapping[tuple[str, str], Shortcut] | None = None,
                 admission: Mapping[tuple[str, str], Limiter] | None = None,
                 direct: Mapping[tuple[str, str], Direct] | None = None) -> None:
        self.app = app
        self.routes = routes  # the app's own list: the routers included after this is made are in it
        self.max_body = max_body
        self.shortcuts = shortcuts if shortcuts is not None else {}  # the app's own dict, filled later too
        self.admission = admission if admission is not None else {}  # likewise
        self.direct = direct if direct is not None else {}  # likewise
        self._literal: dict[str, frozenset[str]] | None = None

    def literal_paths(self) -> dict[str, frozenset[str]]:
        """Each literal path's methods, read at the first request (every router is included by then)."""
        if self._literal is None:
            methods: dict[str, set[str]] = {}
            # iter_route_contexts: the routes of included routers too, with their full paths.
            for r in iter_route_contexts(self.routes):
                if r.path and r.methods and "{" not in r.path:
                    methods.setdefault(r.path, set()).update(r.methods)
            self._literal = {path: frozenset(m) for path, m in methods.items()}
        return self._literal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        allowed = self.literal_paths().get(scope["path"])
        if allowed is not None and scope["method"] not in allowed:
            allow = ", ".join(sorted(allowed))
            await _http_error(405, "Method Not Allowed", {"Allow": allow})(scope, receive, send)
            return
        # Straight from the raw headers (lower-case bytes in ASGI): this runs on every request.
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None and not length.isdigit():  # bytes: ASCII digits only
            await _http_error(400, "bad Content-Length")(scope, receive, send)
            return
        if length is not None and (len(length) > 18 or int(length) > self.max_body):  # no int() of 5000 digits
            too_large = BodyTooLarge(self.max_body)
            await _http_error(413, too_large.detail, too_large.headers)(scope, receive, send)
            return

        limit, received, started = self.max_body, 0, False

        async def receive_counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def send_noting_start(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            key = (scope["method"], scope["path"])
            shortcut = self.shortcuts.get(key) if self.shortcuts else None
            direct = self.direct.get(key) if self.direct else None
            receive_app: Receive = receive_counted
            body: bytes | None = None
            if (shortcut is not None and shortcut.armed()) or direct is not None:
                body, left = await _whole_body(receive_counted)
                if left is not None:  # the client left mid-body: the app hears it as it would have
                    shortcut = direct = None
                receive_app = _replay(body, left, receive_counted)
            if shortcut is not None and body is not None and shortcut.armed():
                refusal = await shortcut.answer(scope, body)
                if refusal is not None:
                    await _error(refusal)(scope, receive, send_noting_start)
                    return
            limiter = self.admission.get(key) if self.admission else None
            if limiter is not None and not await limiter.admit():
                metrics.admission_refused(scope["path"])
                await _error(BUSY, retry_after(BUSY))(scope, receive, send_noting_start)
                return
            begun = time.monotonic()
            try:
                response = None
                if direct is not None and body is not None:
                    try:
                        response = await direct.answer(scope, body)
                    except ShopError as exc:  # answered as install_error_handlers' shop_error answers it
                        presented = any(k == b"authorization" for k, _ in scope["headers"])
                        response = _error(exc, refusal_headers(exc, presented))
                if response is not None:
                    await response(scope, receive, send_noting_start)
                else:
                    await self.app(scope, receive_app, send_noting_start)
            finally:
                if limiter is not None:
                    limiter.release(time.monotonic() - begun)
        except Exception as exc:
            if started:  # too late for an answer: the server ends the response and says why
                raise
            if isinstance(exc, StarletteHTTPException):
                response = _http_error(exc.status_code, str(exc.detail), exc.headers)
            else:
                response = _error(as_shop_error(exc, f"{scope['method']} {scope['path']}"))
            await response(scope, receive, send)


async def _whole_body(receive: Receive) -> tuple[bytes, Message | None]:
    """The request's body, and the message that ended it early if the client left meanwhile."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), message
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), None


def _replay(body: bytes, left: Message | None, receive: Receive) -> Receive:
    """A receive that hands the app the body read already, then goes on as `receive`."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
    if left is not None:
        pending.append(left)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


def install_front_door(app: FastAPI) -> None:
    """What every HTTP role's app gets (app.py): the error handlers, and FrontDoor around them.
    app.state.shortcuts and app.state.admission: the Shortcuts and the admission Limiters FrontDoor
    takes, by (method, path), filled in by create_app; app.state.direct likewise, its Directs."""
    install_error_handlers(app)
    app.state.shortcuts = {}
    app.state.admission = {}
    app.state.direct = {}
    app.add_middleware(FrontDoor, routes=app.router.routes, shortcuts=app.state.shortcuts,
                       admission=app.state.admission, direct=app.state.direct)
