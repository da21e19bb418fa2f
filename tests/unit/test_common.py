"""Snowflake ids and money parsing."""
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shop.common.errors import ShopError
from shop.common.ids import TIMESTAMP_SHIFT, TWEPOCH, WORKER_SHIFT, IdWorker, parse_id
from shop.common.money import fmt, parse_money


def test_ids_are_unique_and_increasing_within_one_worker():
    w = IdWorker(worker_id=3, datacenter_id=1)
    ids = [w.next_id() for _ in range(20000)]  # more than 4096 per millisecond: the sequence wraps
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)


def test_id_layout_carries_time_worker_and_datacenter():
    w = IdWorker(worker_id=7, datacenter_id=2, clock=lambda: TWEPOCH + 1000)
    i = w.next_id()
    assert i >> TIMESTAMP_SHIFT == 1000
    assert (i >> WORKER_SHIFT) & 31 == 7
    assert (i >> (WORKER_SHIFT + 5)) & 31 == 2
    assert w.next_id() == i + 1


def test_two_workers_never_collide_in_the_same_millisecond():
    clock = lambda: TWEPOCH + 5  # noqa: E731
    a, b = IdWorker(1, 0, clock), IdWorker(2, 0, clock)
    assert not {a.next_id() for _ in range(100)} & {b.next_id() for _ in range(100)}


def test_clock_far_backwards_is_refused():
    t = [TWEPOCH + 100_000]
    w = IdWorker(0, 0, lambda: t[0])
    w.next_id()
    t[0] -= 10_000
    with pytest.raises(RuntimeError):
        w.next_id()


@pytest.mark.parametrize("bad", [-1, 32])
def test_worker_id_range(bad):
    with pytest.raises(ValueError):
        IdWorker(worker_id=bad)


@pytest.mark.parametrize("value,expected", [("346321587315814400", 346321587315814400), (42, 42), (" 7 ", 7)])
def test_parse_id_accepts_strings_and_integers(value, expected):
    assert parse_id(value) == expected


@pytest.mark.parametrize("value", ["abc", "", "-5", 0, -1, 2**63, True, None, 1.5, "1e5"])
def test_parse_id_refuses(value):
    with pytest.raises(ShopError):
        parse_id(value)


@pytest.mark.parametrize(
    "value,expected",
    [("4800", "4800.00"), (4800, "4800.00"), (0.1, "0.10"), ("0.10", "0.10"), (99.99, "99.99"), ("-0", "0.00")],
)
def test_parse_money(value, expected):
    assert fmt(parse_money(value)) == expected


@pytest.mark.parametrize(
    "value", ["0.001", 0.30000000000000004, "NaN", "Infinity", "-1", -0.01, "abc", "", None, True, "1e30", [1]]
)
def test_parse_money_refuses(value):
    with pytest.raises(ShopError):
        parse_money(value)


@given(st.decimals(min_value=0, max_value=Decimal("99999999.99"), places=2, allow_nan=False, allow_infinity=False))
def test_money_round_trips_through_its_json_string(d):
    assert parse_money(fmt(d)) == d
    assert parse_money(str(d)) == d


def test_an_ids_minute_is_the_minute_it_was_made_in() -> None:
    from shop.common.ids import MINUTE_ALIGN, MINUTE_IDS, first_id_at, id_minute, minute_of

    for ms in (1288834974657, 1288834979999, 1288834980000, 1764471599999, 1764471600000):
        lowest, highest = first_id_at(ms), first_id_at(ms) | ((1 << 22) - 1)  # every worker, every sequence
        assert minute_of(lowest) == minute_of(highest) == ms // 60_000
        assert id_minute((lowest + MINUTE_ALIGN) // MINUTE_IDS) == ms // 60_000
