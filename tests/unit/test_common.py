"""Snowflake ids and money parsing."""
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shop.common.errors import ShopError
from shop.common.ids import TIMESTAMP_SHIFT, TWEPOCH, WORKER_SHIFT, IdWorker, parse_id
from shop.common.money import fmt, parse_money, parse_signed_money
from shop.common.text import check_text


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


@pytest.mark.parametrize("value,expected", [
    ("346321587315814400", 346321587315814400), (42, 42), ("007", 7), (2**63 - 1, 2**63 - 1),
    (str(2**63 - 1), 2**63 - 1), ("0" * 30 + "5", 5),
])
def test_parse_id_accepts_strings_and_integers(value, expected):
    assert parse_id(value) == expected


# An id has one spelling: ASCII digits, no sign, no spaces, no other script's digits, below 2^63.
@pytest.mark.parametrize("value", [
    "abc", "", "-5", "+5", 0, "0", -1, 2**63, str(2**63), str(2**64), "9" * 5000, True, None, 1.5, "1e5", " 7 ", "7 ",
    "7\n", "１２", "²", "٥", "1_000", [1], {"a": 1},
])
def test_parse_id_refuses(value):
    with pytest.raises(ShopError):
        parse_id(value)


@pytest.mark.parametrize(
    "value,expected",
    [("4800", "4800.00"), (4800, "4800.00"), (0.1, "0.10"), ("0.10", "0.10"), (99.99, "99.99"), ("0", "0.00"),
     (-0.0, "0.00"), (1e2, "100.00"), ("0000000001.5", "1.50"), (Decimal("12.3"), "12.30")],
)
def test_parse_money(value, expected):
    assert fmt(parse_money(value)) == expected


@pytest.mark.parametrize(
    "value", ["0.001", 0.30000000000000004, "NaN", "Infinity", "-1", -0.01, "abc", "", None, True, "1e30", [1],
              # a string has one spelling: ASCII digits and at most 2 decimals, nothing around them
              "1_000", "１２", "٥٠", "1e2", " 50 ", "50\n", "-0", "+5", ".5", "5.", "0x10", "12345678901",
              "99999999.999", float("nan"), float("inf"), 1e300, {"a": 1}]
)
def test_parse_money_refuses(value):
    with pytest.raises(ShopError):
        parse_money(value)


@pytest.mark.parametrize("value,expected", [
    (None, "0.00"), ("-1.00", "-1.00"), (-0.5, "-0.50"), (-3, "-3.00"), ("-0.00", "0.00"), ("-0", "0.00"),
    ("12.5", "12.50"), (0, "0.00"),
])
def test_parse_signed_money(value, expected):
    """moneyPaid: null is 0; a negative amount passes for the order rules to refuse by its own code."""
    assert fmt(parse_signed_money(value)) == expected


@pytest.mark.parametrize("value", ["--1", "- 1", "-1e2", "-１", "-", float("-inf"), -0.001, "-NaN", True])
def test_parse_signed_money_refuses(value):
    with pytest.raises(ShopError):
        parse_signed_money(value)


@pytest.mark.parametrize("value", ["北京 朝阳区 1号", "O'Brien & Söhne", "张三", "😀", "a" * 300])
def test_text_takes_any_printable_text(value):
    assert check_text(value) == value


@pytest.mark.parametrize("value", ["a\x00b", "a\tb", "a\nb", "\r", "\x1b[31m", "a\x7f", "\x85", "\x9f", "\ud800"])
def test_text_refuses_control_characters_and_lone_surrogates(value):
    with pytest.raises(ShopError):
        check_text(value)


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
