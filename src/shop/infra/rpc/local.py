"""RPC between services, transport-neutral.

A service exposes a typed interface (its contracts.Protocol); a caller holds a client for it.
In the embedded mode the client calls the implementation directly through `LocalClient`, with
the same deadline and error rules a network transport will have: ShopErrors cross as they are
(they are codes), anything else becomes SHOP_SERVICE_UNAVAILABLE, and a call past its deadline
is abandoned as unavailable.
"""
from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any, TypeVar

from shop.common.errors import ServiceUnavailable, ShopError
from shop.infra import metrics

log = logging.getLogger("shop.rpc")
T = TypeVar("T")


class LocalClient:
    """deadline_s None: the callee runs inline and cannot wait on anything (a service on SQLite),
    so a deadline could never fire and its timer is not worth setting."""

    def __init__(self, impl: Any, service: str, deadline_s: float | None = 5.0) -> None:
        self._impl = impl
        self._service = service
        self._deadline_s = deadline_s

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._impl, name)
        if name.startswith("_") or not asyncio.iscoroutinefunction(target):
            raise AttributeError(name)

        observe = metrics.rpc_observer(f"{self._service}.{name}")

        @functools.wraps(target)
        async def call(*args: Any, **kwargs: Any) -> Any:
            return await metrics.timed(observe, self._call(target, name, args, kwargs))

        setattr(self, name, call)  # bind once; later calls skip __getattr__
        return call

    async def _call(self, target: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            if self._deadline_s is None:
                return await target(*args, **kwargs)
            async with asyncio.timeout(self._deadline_s):
                return await target(*args, **kwargs)
        except ShopError:
            raise
        except TimeoutError:
            raise ServiceUnavailable(f"{self._service}.{name} timed out") from None
        except Exception as exc:  # noqa: BLE001 - the boundary: only codes cross it
            log.exception("%s.%s failed", self._service, name)
            raise ServiceUnavailable(f"{self._service}.{name} failed: {exc.__class__.__name__}") from exc


def local_client(impl: T, service: str, deadline_s: float | None = 5.0) -> T:
    return LocalClient(impl, service, deadline_s)  # type: ignore[return-value]
