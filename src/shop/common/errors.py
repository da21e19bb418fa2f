"""Typed errors: each carries its ShopCode (and so its HTTP status); mapped to responses once, in the web layer."""
from typing import Any

from shop.common.codes import ShopCode


class ShopError(Exception):
    def __init__(
        self,
        code: ShopCode,
        message: str | None = None,
        *,
        http_status: int | None = None,
        data: Any = None,
    ) -> None:
        self.code = code
        self.message = message or code.message
        self.http_status = http_status or code.http_status
        self.data = data
        super().__init__(f"{code.name}: {self.message}")

    def with_data(self, data: Any) -> "ShopError":
        """More for the caller: merged into what the error says already when both are mappings (a
        refused line's goods, then the order it failed), else in its place."""
        self.data = {**self.data, **data} if isinstance(self.data, dict) and isinstance(data, dict) else data
        return self


class ServiceUnavailable(ShopError):
    """A dependency failed or timed out: the step may or may not have happened on the other side."""

    def __init__(self, message: str = "a dependency is unavailable") -> None:
        super().__init__(ShopCode.SHOP_SERVICE_UNAVAILABLE, message)


class InternalError(ShopError):
    """A bug, not a dependency: 500. The caller learns only that (the traceback is in the log)."""

    def __init__(self, message: str = "internal error") -> None:
        super().__init__(ShopCode.SHOP_FAIL, message)


def invalid(message: str) -> ShopError:
    return ShopError(ShopCode.SHOP_REQUEST_PARAMETER_VALID, message)


def from_wire(name: str, message: str, *, http_status: int | None = None, data: Any = None) -> ShopError:
    """The ShopError another process sent as its code's name (over gRPC, or in an HTTP envelope)."""
    try:
        code = ShopCode[name]
    except KeyError:
        # A newer peer's code: keep its name in the message rather than lose it.
        return ShopError(ShopCode.SHOP_FAIL, f"{name}: {message}", data=data)
    if code is ShopCode.SHOP_SERVICE_UNAVAILABLE:
        return ServiceUnavailable(message or code.message).with_data(data)
    return ShopError(code, message or None, http_status=http_status, data=data)
