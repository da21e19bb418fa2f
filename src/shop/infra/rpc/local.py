"""RPC between services, transport-neutral.

A service exposes a typed interface (its contracts.Protocol); a caller holds a client for it.
In the embedded mode the client calls the implementation directly through `LocalClient`, with
the same deadline and error rules a network transport will have: ShopErrors cross as they are
(they are codes), anything else becomes the ShopError infra/failures.py says it is (a dependency
down: SHOP_SERVICE_UNAVAILABLE; a bug: SHOP_FAIL, logged there), and a call past its deadline is
abandoned as unavailable. Each call is timed (metrics) and, given the service's `rpc` declaration,
gets a span named as its gRPC call would be (infra/tracing.py), so a trace has one shape in both modes.
"""
from __future__ import annotations

import asyncio
import functools
import time
from typing import TYPE_CHECKING, Any, TypeVar

from shop.common.errors import ServiceUnavailable, ShopError
from shop.infra import metrics
from shop.infra.failures import as_shop_error
from shop.infra.tracing import Tracing

if TYPE_CHECKING:
    from shop.infra.rpc.server import Service

T = TypeVar("T")


class LocalClient:
    """deadline_s None: the callee runs inline and cannot wait on anything (a service on SQLite),
    so a deadline could never fire and its timer is not worth setting."""

    def __init__(self, impl: Any, service: str, deadline_s: float | None = 5.0, *, rpc: Service | None = None,
                 tracing: Tracing = Tracing.OFF) -> None:
        self._impl = impl
        self._service = service
        self._deadline_s = deadline_s
        self._rpc = rpc  # the service's methods on the wire: the names its calls' spans take
        self._tracing = tracing

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._impl, name)
        if name.startswith("_") or not asyncio.iscoroutinefunction(target):
            raise AttributeError(name)

        observe = metrics.rpc_observer(f"{self._service}.{name}")
        method = self._rpc.methods.get(name) if self._rpc is not None else None
        local = self._tracing.local_call(self._service, self._rpc.full_name, method.rpc) \
            if self._rpc is not None and method is not None else None

        service, deadline_s = self._service, self._deadline_s

        # Bound once per method. One coroutine per call, whatever is on: the span, the timing and
        # the boundary's rules are steps here rather than coroutines wrapped around each other
        # (each awaited layer costs every call between services a few microseconds).
        async def call(*args: Any, **kwargs: Any) -> Any:
            span = local.start() if local is not None else None
            start = time.perf_counter() if observe is not None else 0.0
            error: BaseException | None = None
            try:
                if deadline_s is None:
                    return await target(*args, **kwargs)
                async with asyncio.timeout(deadline_s):
                    return await target(*args, **kwargs)
            except ShopError as exc:
                error = exc
                raise
            except TimeoutError:
                error = ServiceUnavailable(f"{service}.{name} timed out")
                raise error from None
            except Exception as exc:  # noqa: BLE001 - the boundary: only codes cross it
                error = as_shop_error(exc, f"{service}.{name}")
                raise error from exc
            except BaseException as exc:  # cancelled: timed and traced as such, then on its way
                error = exc
                raise
            finally:
                if observe is not None:
                    observe(time.perf_counter() - start, error)
                if span is not None:
                    local.end(span, error)  # type: ignore[union-attr]

        call = functools.wraps(target)(call)
        setattr(self, name, call)  # bind once; later calls skip __getattr__
        return call


def local_client(impl: T, service: str, deadline_s: float | None = 5.0, *, rpc: Service | None = None,
                 tracing: Tracing = Tracing.OFF) -> T:
    return LocalClient(impl, service, deadline_s, rpc=rpc, tracing=tracing)  # type: ignore[return-value]
