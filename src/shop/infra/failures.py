"""What an unexpected exception means, decided once for every boundary (the in-process RPC client,
the gRPC server, the saga, the HTTP front door): a dependency that is down or too slow is
ServiceUnavailable (503: the step may or may not have happened, and may work if tried again);
anything else is a bug, InternalError (500 "internal error"), logged here with its traceback, once:
past this point it is a ShopError, and every later boundary passes ShopErrors through untouched.

The drivers are recognised by their exceptions' module and class names, so that this module imports
none of them (a process loads only the drivers its databases use)."""
from __future__ import annotations

import asyncio
import logging
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from shop.common.errors import InternalError, ServiceUnavailable, ShopError
from shop.infra.faults import InjectedFault

log = logging.getLogger("shop.failures")
T = TypeVar("T")

# SQLSTATE classes (PostgreSQL; asyncpg's exceptions carry `sqlstate`) of a server that cannot serve
# now: 08 connection exception, 53 insufficient resources (too many connections, disk full), 57
# operator intervention (shutting down, cannot connect now, a statement timeout), 40 transaction
# rollback (deadlock, serialization failure: the same request may pass if tried again), 55P03 lock
# not available (lock_timeout).
_PG_UNAVAILABLE = ("08", "53", "57", "40", "55P03")

# MySQL / MariaDB error numbers (asyncmy's exceptions carry them in args[0]) of the same kinds: every
# client-side error (2000-2999: cannot connect, server gone away, lost connection), too many
# connections, shutdown, network errors, lock wait timeout, deadlock, interrupted, connection killed,
# statement timeouts. asyncmy raises OperationalError for every server error it has no class for
# (an unknown column as much as a lost connection), so its class alone says nothing.
_MYSQL_UNAVAILABLE = frozenset({1040, 1053, 1152, 1158, 1159, 1160, 1161, 1205, 1213, 1317, 1927, 1969, 3024, 4031})

# SQLite result codes of a database file that cannot be used now (locked by another writer, a full
# disk, an I/O error, a file that cannot be opened). SQLite reports its SQL errors (no such table, a
# syntax error) as OperationalError too, so the class alone says nothing here either.
_SQLITE_UNAVAILABLE = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR", "SQLITE_FULL", "SQLITE_CANTOPEN",
                       "SQLITE_NOMEM", "SQLITE_PROTOCOL", "SQLITE_READONLY")

# Other clients' exceptions that mean their server is away: Zookeeper's connection and session,
# a RabbitMQ channel that was closed under us, an HTTP call that never got an answer.
_UNAVAILABLE_BY_NAME = {
    "kazoo.exceptions": {"ConnectionLoss", "SessionExpiredError", "ConnectionClosedError", "ConnectionDropped"},
    "aiormq.exceptions": {"ChannelInvalidStateError", "AMQPConnectionError", "ConnectionClosed"},
    "httpx": {"TransportError"},
}

_GRPC_UNAVAILABLE = {"UNAVAILABLE", "DEADLINE_EXCEEDED"}


def is_unavailable(exc: BaseException) -> bool:
    """Whether `exc` says a dependency is down or too slow, rather than that the shop has a bug."""
    if isinstance(exc, ServiceUnavailable):  # said so already, by a boundary further down
        return not isinstance(exc, InjectedFault)
    if isinstance(exc, (OSError, TimeoutError)):  # ConnectionRefusedError, a reset, a timeout, a full disk
        return True
    module = type(exc).__module__
    names = {c.__name__ for c in type(exc).__mro__}
    if module.startswith("asyncpg"):
        state = getattr(exc, "sqlstate", None)
        if isinstance(state, str) and state.startswith(_PG_UNAVAILABLE):
            return True
        # InternalClientError: the connection's protocol state is broken, as when the server ends
        # the connection (a restart, pg_terminate_backend) just as a query goes out ("cannot switch
        # to state 11; another operation (2) is in progress", seen in tests/integration/
        # test_front_door.py): that connection is done, another may work.
        if "InternalClientError" in names:
            return True
        # asyncpg's InterfaceError is also its answer to misuse; only these messages mean the
        # connection or the pool is gone (closed under us, or the process is shutting down).
        return "InterfaceError" in names and any(w in str(exc) for w in ("is closed", "is closing"))
    if module.startswith("asyncmy"):
        if "InterfaceError" in names:  # asyncmy's: "Not connected", a closed connection
            return True
        errno = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        return errno is not None and (2000 <= errno < 3000 or errno in _MYSQL_UNAVAILABLE)
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", None) or ""
        return name.startswith(_SQLITE_UNAVAILABLE) or "closed database" in str(exc)
    if module.startswith("sqlalchemy"):
        # Raised through SQLAlchemy (the migrations): its own wrapper says whether the connection
        # was lost; otherwise the driver's exception it wraps decides.
        if getattr(exc, "connection_invalidated", False) or "TimeoutError" in names:  # the pool's timeout
            return True
        orig = getattr(exc, "orig", None)
        return isinstance(orig, BaseException) and orig is not exc and is_unavailable(orig)
    grpc = sys.modules.get("grpc")
    if grpc is not None and isinstance(exc, grpc.RpcError):  # a raw call's failure, not through our client
        code = getattr(exc, "code", None)
        return callable(code) and getattr(code(), "name", None) in _GRPC_UNAVAILABLE
    for prefix, unavailable_names in _UNAVAILABLE_BY_NAME.items():
        if module.startswith(prefix) and names & unavailable_names:
            return True
    return False


def as_shop_error(exc: BaseException, where: str) -> ShopError:
    """The ShopError `exc` crosses a boundary as (a ShopError as it is). `where` names the call or
    request for the log line: the client hears only the code and a plain message."""
    if isinstance(exc, ShopError):
        return exc
    if is_unavailable(exc):
        # A dependency's trouble: one line is enough (its own logs say why); no stack of ours.
        log.warning("%s: a dependency is unavailable: %r", where, exc)
        what = "timed out" if isinstance(exc, TimeoutError) else "is unavailable"
        return ServiceUnavailable(f"{where} {what}")
    log.error("%s failed", where, exc_info=exc)
    return InternalError()


async def while_unavailable(call: Callable[[], Awaitable[T]], within_s: float) -> T:
    """`call()`, made again while it fails because its dependency is away, for up to `within_s`
    (pauses from 50 ms doubling to 500 ms): for a request that must learn an outcome, or make one
    true, before it answers. Its error as it is if it is not one of those, or once time is up."""
    give_up, pause = time.monotonic() + within_s, 0.05
    while True:
        try:
            return await call()
        except Exception as exc:
            if not is_unavailable(exc) or time.monotonic() + pause > give_up:
                raise
        await asyncio.sleep(pause)
        pause = min(2 * pause, 0.5)
