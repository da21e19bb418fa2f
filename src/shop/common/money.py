"""Money is Decimal with two places; it crosses JSON as a string."""
from decimal import ROUND_FLOOR, Decimal, InvalidOperation

from shop.common.errors import invalid

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
MAX = Decimal("99999999.99")  # DECIMAL(10,2)


def parse_money(value: object, field: str = "amount") -> Decimal:
    """Accept a JSON number or a string; refuse floats' noise, >2 places, NaN, infinities, negatives."""
    if isinstance(value, bool) or value is None:
        raise invalid(f"{field} must be a decimal amount")
    if isinstance(value, float):
        value = repr(value)  # the shortest text that reads back as this float: what the client wrote
    try:
        d = Decimal(str(value).strip()) if not isinstance(value, Decimal) else value
    except (InvalidOperation, ValueError):
        raise invalid(f"{field} must be a decimal amount") from None
    if not d.is_finite():
        raise invalid(f"{field} must be finite")
    if d < 0:
        raise invalid(f"{field} must not be negative")
    # Range first: quantizing a huge value (1e30) overflows the context and raises InvalidOperation.
    if d > MAX:
        raise invalid(f"{field} is too large")
    if d.as_tuple().exponent < -2 and d != d.quantize(CENT):  # type: ignore[operator]
        raise invalid(f"{field} has more than 2 decimal places")
    # abs: "-0" passes the sign check above and would otherwise come back as "-0.00".
    return abs(d.quantize(CENT))


def money(value: Decimal | int | str) -> Decimal:
    """Trusted values (from our own database) to two places."""
    return Decimal(value).quantize(CENT)


def fmt(value: Decimal | None) -> str | None:
    return None if value is None else str(value.quantize(CENT))


def floor_points(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_FLOOR))
