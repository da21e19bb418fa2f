"""Money is Decimal with two places; it crosses JSON as a string."""
import re
from decimal import ROUND_FLOOR, Decimal, InvalidOperation

from shop.common.errors import invalid

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
MAX = Decimal("99999999.99")  # DECIMAL(10,2)


# The one spelling of an amount in a string (API.md, "Limits and formats"): ASCII digits, at most
# two decimals. Decimal() alone would also take "1_000", "１２", "1e2", " 50 ", "NaN": each a second
# spelling of a number, and a way round any rule written against the first.
_AMOUNT = re.compile(r"[0-9]{1,10}(?:\.[0-9]{1,2})?")


def parse_money(value: object, field: str = "amount") -> Decimal:
    """An amount from a request: a JSON number (an int, or a float with at most 2 places) or a string
    of the form above; refuse floats' noise, NaN, infinities, negatives and more than 2 places."""
    if isinstance(value, bool) or value is None:
        raise invalid(f"{field} must be a decimal amount")
    if isinstance(value, str):
        if not _AMOUNT.fullmatch(value):
            raise invalid(f"{field} must be digits with at most 2 decimals, like 4800.00")
    elif isinstance(value, float):
        value = repr(value)  # the shortest text that reads back as this float: what the client wrote
    elif not isinstance(value, (int, Decimal)):
        raise invalid(f"{field} must be a decimal amount")
    try:
        d = value if isinstance(value, Decimal) else Decimal(value)
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
    # abs: a float's "-0.0" passes the sign check above and would otherwise come back as "-0.00".
    return abs(d.quantize(CENT))


def parse_signed_money(value: object, field: str = "amount") -> Decimal:
    """moneyPaid: null (the original's Java clients send it) is 0, and a negative amount ("-" and an
    amount, or a negative number) passes, so that the order rules answer SHOP_MONEY_PAID_LESS_ZERO
    rather than a generic 422. Negative zero is zero."""
    if value is None:
        return ZERO
    if isinstance(value, str) and value.startswith("-"):
        return -parse_money(value[1:], field) or ZERO
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
        return -parse_money(-value, field)
    return parse_money(value, field)


def money(value: Decimal | int | str) -> Decimal:
    """Trusted values (from our own database) to two places."""
    return Decimal(value).quantize(CENT)


def fmt(value: Decimal | None) -> str | None:
    return None if value is None else str(value.quantize(CENT))


def floor_points(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_FLOOR))
