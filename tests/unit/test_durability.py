"""The durability settings the distributed mode needs, judged on what a server reports."""
from __future__ import annotations

import pytest

from shop.infra.db.durability import durability_warnings, judge

PG_DEFAULTS = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
# What asyncmy hands back for SELECT @@...: numbers for the boolean ones.
MARIADB_DEFAULTS = {"innodb_flush_log_at_trx_commit": 1, "sync_binlog": 0, "log_bin": 0, "innodb_doublewrite": 1}


def weak(dialect: str, **changed: object) -> list[str]:
    base = PG_DEFAULTS if dialect == "postgresql" else MARIADB_DEFAULTS
    return [w.setting for w in judge(dialect, {**base, **changed})]


def test_the_servers_defaults_are_durable():
    assert weak("postgresql") == []
    assert weak("mysql") == []  # sync_binlog 0 does not matter while the binary log is off


@pytest.mark.parametrize("value", ["on", "local", "remote_write", "remote_apply"])
def test_postgresql_flushes_its_own_wal_before_answering_unless_synchronous_commit_is_off(value):
    assert weak("postgresql", synchronous_commit=value) == []


def test_postgresql_weak_settings_each_named():
    assert weak("postgresql", synchronous_commit="off") == ["synchronous_commit"]
    assert weak("postgresql", fsync="off") == ["fsync"]
    assert weak("postgresql", full_page_writes="off") == ["full_page_writes"]
    assert weak("postgresql", fsync="off", synchronous_commit="off", full_page_writes="off") == [
        "fsync", "synchronous_commit", "full_page_writes"]


@pytest.mark.parametrize("value,is_weak", [(1, False), ("1", False), (3, False), (0, True), (2, True), ("2", True)])
def test_innodb_flushes_at_each_commit_only_with_1_or_mariadbs_3(value, is_weak):
    expected = ["innodb_flush_log_at_trx_commit"] if is_weak else []
    assert weak("mysql", innodb_flush_log_at_trx_commit=value) == expected


@pytest.mark.parametrize("log_bin,sync_binlog,is_weak", [
    (1, 0, True), ("ON", 0, True), ("ON", 100, True), (1, 1, False), (0, 0, False), ("OFF", 7, False),
])
def test_sync_binlog_must_be_1_when_the_binary_log_is_on(log_bin, sync_binlog, is_weak):
    assert weak("mysql", log_bin=log_bin, sync_binlog=sync_binlog) == (["sync_binlog"] if is_weak else [])


@pytest.mark.parametrize("value,is_weak", [(1, False), ("ON", False), ("fast", False), ("DETECT_AND_RECOVER", False),
                                           (0, True), ("OFF", True), ("DETECT_ONLY", True)])
def test_innodb_doublewrite(value, is_weak):
    assert weak("mysql", innodb_doublewrite=value) == (["innodb_doublewrite"] if is_weak else [])


def test_a_setting_the_server_did_not_report_is_not_judged():
    assert judge("postgresql", {}) == []
    assert judge("mysql", {}) == []
    assert judge("sqlite", {"synchronous_commit": "off"}) == []


def test_one_warning_per_weak_setting_naming_the_databases_it_weakens():
    seen = {"shop_order": {**PG_DEFAULTS, "synchronous_commit": "off"}, "shop_pay": PG_DEFAULTS,
            "shop_goods": {**PG_DEFAULTS, "synchronous_commit": "off"}}
    [warning] = durability_warnings("db1:5432", "postgresql", seen)
    assert warning.startswith("postgresql server db1:5432: synchronous_commit is off (in shop_order, shop_goods)")
    assert "should be on" in warning and "OS crash or power cut" in warning and "last commits" in warning
    assert "shop_pay" not in warning
    assert durability_warnings("db1:5432", "postgresql", {"shop_pay": PG_DEFAULTS}) == []


def test_every_weak_setting_of_a_server_is_a_warning_of_its_own():
    seen = {"shop_user": {**MARIADB_DEFAULTS, "innodb_flush_log_at_trx_commit": 2, "log_bin": 1}}
    warnings = durability_warnings("db2:3306", "mysql", seen)
    assert [w.split(":")[2].split(" is ")[0].strip() for w in warnings] == [
        "innodb_flush_log_at_trx_commit", "sync_binlog"]
    assert "it should be 1 (the binary log is on)" in warnings[1]
