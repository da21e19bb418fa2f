"""Snowflake ids, as the original's IDWorker: 41 bits of milliseconds since the Twitter epoch,
5 bits of datacenter, 5 bits of worker, 12 bits of sequence."""
import threading
import time
from collections.abc import Callable

from shop.common.errors import invalid

TWEPOCH = 1288834974657
WORKER_BITS = 5
DATACENTER_BITS = 5
SEQUENCE_BITS = 12
MAX_WORKER = (1 << WORKER_BITS) - 1
MAX_DATACENTER = (1 << DATACENTER_BITS) - 1
SEQUENCE_MASK = (1 << SEQUENCE_BITS) - 1
MAX_ID = (1 << 63) - 1  # ids are signed 64-bit keys on every backend
WORKER_SHIFT = SEQUENCE_BITS
DATACENTER_SHIFT = SEQUENCE_BITS + WORKER_BITS
TIMESTAMP_SHIFT = SEQUENCE_BITS + WORKER_BITS + DATACENTER_BITS


class IdWorker:
    def __init__(self, worker_id: int = 0, datacenter_id: int = 0, clock: Callable[[], int] | None = None) -> None:
        if not 0 <= worker_id <= MAX_WORKER:
            raise ValueError(f"worker id must be 0..{MAX_WORKER}")
        if not 0 <= datacenter_id <= MAX_DATACENTER:
            raise ValueError(f"datacenter id must be 0..{MAX_DATACENTER}")
        self.worker_id = worker_id
        self.datacenter_id = datacenter_id
        self._clock = clock or (lambda: time.time_ns() // 1_000_000)
        self._last = -1
        self._sequence = 0
        # Ids may be taken from threads (migrations, the CLI) as well as the event loop.
        self._lock = threading.Lock()

    def next_id(self) -> int:
        with self._lock:
            now = self._clock()
            if now < self._last:
                # The clock stepped back (NTP): waiting is safe, issuing would risk a duplicate.
                if self._last - now > 5000:
                    raise RuntimeError(f"clock moved backwards by {self._last - now} ms")
                while now < self._last:
                    time.sleep((self._last - now) / 1000)
                    now = self._clock()
            if now == self._last:
                self._sequence = (self._sequence + 1) & SEQUENCE_MASK
                if self._sequence == 0:  # 4096 ids in this millisecond: wait for the next one
                    while now <= self._last:
                        now = self._clock()
            else:
                self._sequence = 0
            self._last = now
            return (
                ((now - TWEPOCH) << TIMESTAMP_SHIFT)
                | (self.datacenter_id << DATACENTER_SHIFT)
                | (self.worker_id << WORKER_SHIFT)
                | self._sequence
            )


MAX_ID = (1 << 63) - 1  # BIGINT: every database stores ids as signed 64-bit integers
_MAX_ID_DIGITS = len(str(MAX_ID))


def parse_id(value: object, field: str = "id") -> int:
    """An id from a request (a body, a path, a query): a JSON integer, or a string of ASCII digits
    (JSON clients above 2^53 must use strings), from 1 to 2^63 - 1. Nothing else: no sign, no
    spaces, no other script's digits (str.isdigit takes "１２" and "²"), so an id has one spelling
    and every one that passes fits the databases' BIGINT."""
    if isinstance(value, bool):
        raise invalid(f"{field} must be an id")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str) and value.isascii() and value.isdigit():
        # Length first: int() of a long enough string is slow, or refused outright (ValueError).
        if len(value.lstrip("0")) > _MAX_ID_DIGITS:
            raise invalid(f"{field} is out of range")
        n = int(value)
    else:
        raise invalid(f"{field} must be an id (a string of digits or an integer)")
    if not 0 < n <= MAX_ID:
        raise invalid(f"{field} is out of range")
    return n


def first_id_at(at_ms: int) -> int:
    """The smallest id any worker makes at this instant (epoch milliseconds): ids grow with their
    creation time, so a time range is also an id range. A time past the ids' range (year 2300 and
    later) gives the largest id: a bound beyond it is no bound, and a database refuses the number."""
    return min(max(0, at_ms - TWEPOCH) << TIMESTAMP_SHIFT, MAX_ID)


# An id's minute on the wall clock, in whole numbers: ids of one minute are one range of
# MINUTE_IDS, shifted by MINUTE_ALIGN because the Twitter epoch falls mid-minute. The low 22 bits
# (datacenter, worker, sequence) stay below one millisecond, so the division is exact; SQL can do
# the same arithmetic on the key alone (services/order/repository.py: the overview).
MINUTE_MS = 60_000
MINUTE_IDS = MINUTE_MS << TIMESTAMP_SHIFT
MINUTE_ALIGN = (TWEPOCH % MINUTE_MS) << TIMESTAMP_SHIFT
_FIRST_MINUTE = TWEPOCH // MINUTE_MS


def id_minute(bucket: int) -> int:
    """Epoch minutes of `(id + MINUTE_ALIGN) // MINUTE_IDS` (a bucket as SQL computes it)."""
    return bucket + _FIRST_MINUTE


def minute_of(any_id: int) -> int:
    """The epoch minute (minutes since 1970, UTC) an id was made in."""
    return id_minute((any_id + MINUTE_ALIGN) // MINUTE_IDS)
