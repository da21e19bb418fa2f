"""Short text fields from requests (names, a mobile number, an address, a description, a password)."""
import re

from shop.common.errors import invalid

# C0 and C1 control characters (NUL, tab, newline, escape, DEL, ...) and lone surrogates. None belongs
# in a one-line field, and each breaks something downstream: PostgreSQL refuses NUL in text (asyncpg's
# CharacterNotInRepertoireError), a surrogate cannot be encoded as UTF-8 for any database, and a
# newline or an escape in a name forges log lines and terminal output.
_REFUSED = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def check_text(value: str, field: str = "text") -> str:
    if _REFUSED.search(value):
        raise invalid(f"{field} must not contain control characters")
    return value
