"""A dependency down is a 503, a bug is a 500 "internal error" logged once with its traceback
(infra/failures.py), at every boundary: here the in-process RPC client and the saga."""
from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import asyncmy.errors
import asyncpg
import grpc
import pytest
import sqlalchemy.exc

from shop.common.codes import ShopCode
from shop.common.errors import InternalError, ServiceUnavailable, ShopError
from shop.infra.failures import as_shop_error, is_unavailable
from shop.infra.faults import InjectedFault
from shop.infra.rpc.local import local_client
from tests.support import tracebacks


def _sqlite_busy(tmp: Path) -> sqlite3.OperationalError:
    """A real "database is locked": another connection holds the write lock."""
    path = tmp / "busy.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(path, timeout=0)
    try:
        other.execute("INSERT INTO t VALUES (1)")
    except sqlite3.OperationalError as exc:
        return exc
    finally:
        other.close()
        holder.close()
    raise AssertionError("the second writer was not refused")


def _sqlite_error(sql: str) -> sqlite3.Error:
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute(sql)
    except sqlite3.Error as exc:
        return exc
    finally:
        conn.close()
    raise AssertionError(sql)


def _closed_sqlite() -> sqlite3.Error:
    conn = sqlite3.connect(":memory:")
    conn.close()
    try:
        conn.execute("SELECT 1")
    except sqlite3.Error as exc:
        return exc
    raise AssertionError("a closed connection answered")


class _Rpc(grpc.aio.AioRpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="x")


def test_a_dependency_down_is_unavailable(tmp_path: Path) -> None:
    down = [
        ConnectionRefusedError(111, "Connection refused"), ConnectionResetError(), BrokenPipeError(), TimeoutError(),
        OSError(28, "No space left on device"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),
        asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout"),
        asyncpg.exceptions.InterfaceError("connection is closed"), asyncpg.exceptions.InterfaceError("pool is closing"),
        asyncpg.exceptions.InternalClientError("cannot switch to state 11; another operation (2) is in progress"),
        asyncmy.errors.OperationalError(2013, "Lost connection to server during query"),
        asyncmy.errors.OperationalError(2003, "Can't connect to MySQL server"),
        asyncmy.errors.OperationalError(1205, "Lock wait timeout exceeded"),
        asyncmy.errors.OperationalError(1213, "Deadlock found when trying to get lock"),
        asyncmy.errors.InterfaceError(0, "Not connected"),
        _sqlite_busy(tmp_path), _closed_sqlite(),
        sqlalchemy.exc.OperationalError("SELECT 1", {}, ConnectionRefusedError()),
        sqlalchemy.exc.DBAPIError("SELECT 1", {}, Exception("gone"), connection_invalidated=True),
        _Rpc(grpc.StatusCode.UNAVAILABLE), _Rpc(grpc.StatusCode.DEADLINE_EXCEEDED),
        ServiceUnavailable("the payment platform failed"),  # a boundary further down said so
    ]
    for exc in down:
        assert is_unavailable(exc), repr(exc)


def test_a_bug_is_not() -> None:
    bugs = [
        RuntimeError("boom"), KeyError("payId"), TypeError("x"), ValueError("x"), ZeroDivisionError(),
        AttributeError("'NoneType' object has no attribute 'acquire'"), OverflowError("int too big to convert"),
        UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"),
        asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence for encoding UTF8: 0x00"),
        asyncpg.exceptions.UndefinedTableError('relation "x" does not exist'),
        asyncpg.exceptions.InterfaceError("cannot perform operation: another operation is in progress"),
        asyncpg.exceptions.DataError("invalid input for query argument $1"),
        asyncmy.errors.OperationalError(1054, "Unknown column 'x' in 'field list'"),  # asyncmy's default class
        asyncmy.errors.ProgrammingError(1146, "Table 'x' doesn't exist"),
        asyncmy.errors.IntegrityError(1062, "Duplicate entry"),
        _sqlite_error("SELECT * FROM no_such_table"), _sqlite_error("SELEKT 1"),
        sqlalchemy.exc.ProgrammingError("SELECT 1", {}, Exception("syntax")),
        _Rpc(grpc.StatusCode.INTERNAL), _Rpc(grpc.StatusCode.INVALID_ARGUMENT),
        InjectedFault("injected fault at goods.on_order_cancel"),  # the step's own failure, armed
    ]
    for exc in bugs:
        assert not is_unavailable(exc), repr(exc)


def test_a_bug_is_an_internal_error_logged_once_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    exc = RuntimeError("the secret detail")
    try:
        raise exc
    except RuntimeError:
        with caplog.at_level(logging.DEBUG, logger="shop"):
            error = as_shop_error(exc, "user.find_user")
    assert isinstance(error, InternalError)
    assert (error.code, error.http_status, error.message) == (ShopCode.SHOP_FAIL, 500, "internal error")
    [record] = caplog.records
    assert record.levelno == logging.ERROR and record.exc_info and record.exc_info[1] is exc
    assert "user.find_user" in record.getMessage()


def test_a_dependency_down_is_unavailable_in_one_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="shop"):
        error = as_shop_error(ConnectionRefusedError(111, "Connection refused"), "goods.find_goods")
        timed_out = as_shop_error(TimeoutError(), "goods.find_goods")
    assert isinstance(error, ServiceUnavailable) and error.http_status == 503
    assert error.message == "goods.find_goods is unavailable" and timed_out.message == "goods.find_goods timed out"
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.WARNING]
    assert not any(r.exc_info for r in caplog.records)


def test_a_shop_error_passes_as_it_is(caplog: pytest.LogCaptureFixture) -> None:
    refusal = ShopError(ShopCode.SHOP_GOODS_NUM_NOT_ENOUGH)
    with caplog.at_level(logging.DEBUG, logger="shop"):
        assert as_shop_error(refusal, "x") is refusal
    assert caplog.records == []


class _Service:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    async def find_goods(self, goods_id: int) -> None:
        raise self.exc


@pytest.mark.parametrize("deadline_s", [None, 5.0])
async def test_the_local_client_makes_a_bug_a_500_and_a_dependency_down_a_503(
    caplog: pytest.LogCaptureFixture, deadline_s: float | None
) -> None:
    with caplog.at_level(logging.DEBUG, logger="shop"):
        with pytest.raises(ShopError) as bug:
            await local_client(_Service(KeyError("goods_number")), "goods", deadline_s).find_goods(1)
    assert (bug.value.code, bug.value.http_status, bug.value.message) == (ShopCode.SHOP_FAIL, 500, "internal error")
    assert "KeyError" not in bug.value.message  # the class name is for the log, not the client
    logged = tracebacks(caplog.records)
    assert len(logged) == 1 and isinstance(logged[0].exc_info[1], KeyError)  # type: ignore[index]

    with pytest.raises(ServiceUnavailable) as down:
        await local_client(_Service(ConnectionResetError()), "goods", deadline_s).find_goods(1)
    assert down.value.http_status == 503 and down.value.message == "goods.find_goods is unavailable"

    refusal = ShopError(ShopCode.SHOP_GOODS_NO_EXIST)
    with pytest.raises(ShopError) as refused:
        await local_client(_Service(refusal), "goods", deadline_s).find_goods(1)
    assert refused.value is refusal
