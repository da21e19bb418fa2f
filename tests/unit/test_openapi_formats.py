"""The request patterns of the OpenAPI document accept exactly what the shop accepts."""
from __future__ import annotations

import re

from shop.common.ids import parse_id
from shop.infra.openapi import ID_IN_SCHEMA, MAX_ID, MONEY_IN_SCHEMA, _digits_up_to


def test_digits_up_to_n_match_exactly_1_to_n() -> None:
    for n in (1, 9, 10, 99, 100, 205, 1000, 7301, 90210):
        pattern = re.compile(f"^({_digits_up_to(n)})$")
        for k in range(0, 2 * n + 2):
            assert bool(pattern.match(str(k))) == (1 <= k <= n), (n, k)
        assert not pattern.match("01")


def test_an_id_string_is_what_parse_id_takes() -> None:
    pattern = re.compile(ID_IN_SCHEMA["anyOf"][0]["pattern"])
    for ok in ("1", "346321587315814400", str(MAX_ID), str(MAX_ID - 1), "9" * 18):
        assert pattern.match(ok) and parse_id(ok) == int(ok), ok
    for bad in ("0", "", "-1", "1.5", str(MAX_ID + 1), "9" * 19, "1" + "0" * 19):
        assert not pattern.match(bad), bad


def test_a_money_string_stays_below_the_largest_amount() -> None:
    pattern = re.compile(MONEY_IN_SCHEMA["anyOf"][0]["pattern"])
    for ok in ("0", "0.5", "4800.00", "99999999.99"):
        assert pattern.match(ok), ok
    for bad in ("100000000", "1.001", "-1", "1e3", ".5", ""):
        assert not pattern.match(bad), bad
