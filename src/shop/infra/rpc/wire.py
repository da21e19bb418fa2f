"""Values on the wire, the same for every service's messages: money crosses as a decimal string
and ids as int64, so "4800.00" and a snowflake id past 2^53 arrive exactly as they left; times as
ISO 8601 UTC strings. The audit's facts cross as JSON, rebuilt into their dataclasses by pydantic."""
from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any, TypeVar

from pydantic import TypeAdapter

from shop.common.errors import invalid

T = TypeVar("T")


def money_out(value: Decimal) -> str:
    # Fixed-point, never exponent form ("4800.00", not "4.8E+3"): other languages parse it too.
    return format(value, "f")


def money_in(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise invalid(f"not an amount of money: {text!r}") from None
    if not value.is_finite():
        raise invalid(f"not an amount of money: {text!r}")
    return value


def time_out(value: datetime) -> str:
    # Naive datetimes are UTC throughout the shop (common/clock.py); the Z says so on the wire.
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(timespec="microseconds") + "Z"


def time_in(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise invalid(f"not a time: {text!r}") from None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def opt(msg: Any, name: str) -> Any:
    return getattr(msg, name) if msg.HasField(name) else None


def time_out_opt(value: datetime | None) -> str | None:
    return time_out(value) if value is not None else None


def time_in_opt(m: Any, name: str) -> datetime | None:
    text = opt(m, name)
    return time_in(text) if text else None


def build(make: Callable[[], T]) -> T:
    """A request message. A value the wire cannot carry (an id past int64, a None where a number
    goes) is the caller's mistake: said as such, not as a transport failure."""
    try:
        return make()
    except (TypeError, ValueError) as exc:
        raise invalid(f"cannot encode the request: {exc}") from None


@cache
def _adapter(cls: type[Any]) -> TypeAdapter[Any]:
    return TypeAdapter(cls)


def facts_out(value: Any) -> bytes:
    return _adapter(type(value)).dump_json(value)


def facts_in(cls: type[T], data: bytes) -> T:
    result: T = _adapter(cls).validate_json(data)
    return result
