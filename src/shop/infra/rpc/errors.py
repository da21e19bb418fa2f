"""ShopErrors on the wire: the server turns one into a gRPC status (NOT_FOUND, FAILED_PRECONDITION,
...) with the ShopCode's name, message and HTTP status in the trailing metadata, and the client
raises the same ShopError again, with its data (JSON in "shop-data": a failed order's
{"orderId": ...}, which the HTTP layer hands back). A handler that broke answers as
infra/failures.py classes it (SHOP_FAIL for a bug, SHOP_SERVICE_UNAVAILABLE for its own dependency
down), with a code like any other. A status without a code - a deadline, a refused connection - never
reached a handler, and becomes ServiceUnavailable: the step may or may not have happened there."""
from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import quote, unquote

import grpc

from shop.common.codes import ShopCode
from shop.common.errors import ServiceUnavailable, ShopError, from_wire

log = logging.getLogger("shop.rpc.grpc")

MD_CODE = "shop-code"
MD_MESSAGE = "shop-message"
MD_HTTP_STATUS = "shop-http-status"
MD_DATA = "shop-data"

# The status a ShopError travels under. The code itself rides in the metadata; the status is for
# what sits in between (proxies, dashboards, other languages' clients) and for retry decisions:
# nothing here is UNAVAILABLE unless the service really is, so a refusal is never retried.
_STATUS_BY_CODE: dict[ShopCode, grpc.StatusCode] = {
    ShopCode.SHOP_USER_NAME_TAKEN: grpc.StatusCode.ALREADY_EXISTS,
    ShopCode.SHOP_SERVICE_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ShopCode.SHOP_FAIL: grpc.StatusCode.INTERNAL,
}
_STATUS_BY_HTTP: dict[int, grpc.StatusCode] = {
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.FAILED_PRECONDITION,  # stock, balance, coupon, order state: the state refuses
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,  # a throttled login: never retried
    503: grpc.StatusCode.UNAVAILABLE,
}

# Metadata values must be printable ASCII: '%' and anything else is percent-encoded.
_MD_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def status_for(code: ShopCode) -> grpc.StatusCode:
    return _STATUS_BY_CODE.get(code) or _STATUS_BY_HTTP.get(code.http_status, grpc.StatusCode.UNKNOWN)


def _data_out(data: Any) -> str | None:
    """The error's data as compact JSON, percent-encoded like the message; None if it has none
    or it is not JSON (then it stays behind: the code and message still cross)."""
    if data is None:
        return None
    try:
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        log.warning("ShopError data %r is not JSON; not sent", data)
        return None
    return quote(text, safe=_MD_SAFE)


def _data_in(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(unquote(text))
    except ValueError:
        return None


def error_metadata(exc: ShopError) -> tuple[tuple[str, str], ...]:
    md: tuple[tuple[str, str], ...] = (
        (MD_CODE, exc.code.name),
        (MD_MESSAGE, quote(exc.message, safe=_MD_SAFE)),
        (MD_HTTP_STATUS, str(exc.http_status)),
    )
    data = _data_out(exc.data)
    return md if data is None else (*md, (MD_DATA, data))


def error_result(exc: ShopError) -> dict[str, Any]:
    """A ShopError as one item of a batch answers it (proto/shop/v1/batch.proto's BatchResult):
    the fields a lone call's trailing metadata carries."""
    return {"code": exc.code.name, "message": exc.message, "http_status": exc.http_status,
            "data": _data_out(exc.data) or ""}


def error_from_result(result: Any) -> ShopError:
    """The ShopError a batch's item was refused with (error_result's fields)."""
    return from_wire(result.code, result.message, http_status=result.http_status or None,
                     data=_data_in(result.data or None))


def error_from_rpc(exc: grpc.aio.AioRpcError, where: str) -> ShopError:
    """The ShopError a failed call stands for: the server's own, or ServiceUnavailable."""
    md = {k: v for k, v in (exc.trailing_metadata() or ()) if isinstance(v, str)}
    name = md.get(MD_CODE)
    if name is None:
        # No code: the call never reached a handler, or the handler broke. Either way the caller
        # cannot know whether the step happened.
        if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return ServiceUnavailable(f"{where} timed out")
        return ServiceUnavailable(f"{where} failed: {exc.code().name} {exc.details() or ''}".rstrip())
    try:
        http_status = int(md[MD_HTTP_STATUS])
    except (KeyError, ValueError):
        http_status = None
    return from_wire(name, unquote(md.get(MD_MESSAGE, "")), http_status=http_status, data=_data_in(md.get(MD_DATA)))


def has_code(exc: grpc.aio.AioRpcError) -> bool:
    """Whether a handler answered (it puts its ShopCode in the trailing metadata)."""
    return any(k == MD_CODE for k, _ in (exc.trailing_metadata() or ()))


# gRPC core's words when a channel could not connect at all (refused, no route): the request never
# left this process.
_NOT_CONNECTED = "failed to connect to all addresses"


def never_connected(exc: grpc.aio.AioRpcError) -> bool:
    """Whether the call failed before reaching the other process: nothing happened there."""
    return exc.code() == grpc.StatusCode.UNAVAILABLE and not has_code(exc) and _NOT_CONNECTED in (exc.details() or "")
