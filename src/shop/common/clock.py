"""Time in one place, so tests can reason about deadlines: naive UTC datetimes, epoch milliseconds."""
import time
from datetime import UTC, datetime


def utcnow() -> datetime:
    # Naive UTC: what TIMESTAMP WITHOUT TIME ZONE / DATETIME columns store on every backend.
    # Milliseconds only: the precision every backend keeps (DATETIME(3) on MySQL).
    now = datetime.now(UTC)
    return now.replace(tzinfo=None, microsecond=now.microsecond // 1000 * 1000)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return dt.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def epoch_ms(at: datetime) -> int:
    """Epoch milliseconds of a naive UTC time (the shop's convention, see utcnow)."""
    return int(at.replace(tzinfo=UTC).timestamp() * 1000)


def from_epoch_ms(ms: int) -> datetime:
    """The naive UTC time of epoch milliseconds (the inverse of epoch_ms)."""
    return datetime.fromtimestamp(ms / 1000, UTC).replace(tzinfo=None)
