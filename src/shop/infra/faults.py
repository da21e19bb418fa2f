"""Fault injection at named points, so tests and operators on staging can prove the guarantee.

Armed through POST /admin/faults only when SHOP_FAULTS=1. Armed faults live in memory: a
restart clears them. "crash" ends the process at once, without clean-up, as a kill would.
"""
from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from shop.common.errors import ServiceUnavailable


class InjectedFault(ServiceUnavailable):
    """What an armed "error" raises: a 503 where it crosses a boundary, as a dependency's failure
    would be, but the failure of the step it is armed at, not news that a dependency is down: a
    consumer counts it against the delivery's retries (infra/failures.is_unavailable)."""


ACTIONS = ("error", "crash", "delay")
# Bounds on what an operator may arm: a count or a delay past these is a typo, and an unbounded one
# (2^64) would not even cross to the other processes (the admin calls carry 64-bit JSON integers).
MAX_TIMES = 1_000_000
MAX_DELAY_MS = 60_000
T = TypeVar("T")


@dataclass
class Fault:
    action: str
    times: int | None  # None: every time until the process restarts
    delay_ms: int = 0


class Faults:
    def __init__(self, enabled: bool = False) -> None:
        self.enabled = enabled
        self.armed: dict[str, Fault] = {}

    def arm(self, point: str, action: str, times: int | None = None, delay_ms: int = 0) -> None:
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}")
        if times is not None and not 1 <= times <= MAX_TIMES:
            raise ValueError(f"times must be 1 to {MAX_TIMES}")
        if not 0 <= delay_ms <= MAX_DELAY_MS:
            raise ValueError(f"delayMs must be 0 to {MAX_DELAY_MS}")
        self.armed[point] = Fault(action, times, delay_ms)

    def clear(self) -> None:
        self.armed.clear()

    async def hit(self, point: str) -> None:
        if not self.armed:  # the hot path: nothing armed, nothing to look up
            return
        fault = self.armed.get(point)
        if fault is None:
            return
        if fault.times is not None:
            fault.times -= 1
            if fault.times <= 0:
                del self.armed[point]
        if fault.action == "delay":
            await asyncio.sleep(fault.delay_ms / 1000)
        elif fault.action == "error":
            raise InjectedFault(f"injected fault at {point}")
        elif fault.action == "crash":
            os._exit(86)


class _Faulty:
    """An object whose named coroutine methods hit fault points before and after they run."""

    def __init__(self, inner: object, faults: Faults, before: Mapping[str, Sequence[str]],
                 after: Mapping[str, Sequence[str]]) -> None:
        self._inner = inner
        self._faults = faults
        self._before = before
        self._after = after

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        before, after = self._before.get(name, ()), self._after.get(name, ())
        if not (before or after):
            return target
        faults = self._faults

        async def call(*args: Any, **kwargs: Any) -> Any:
            for point in before:
                await faults.hit(point)
            result = await target(*args, **kwargs)
            for point in after:
                await faults.hit(point)
            return result

        setattr(self, name, call)  # bind once; later calls skip __getattr__
        return call


def with_faults(inner: T, faults: Faults, *, before: Mapping[str, Sequence[str]],
                after: Mapping[str, Sequence[str]]) -> T:
    """`inner`, with fault points hit before and after the named methods: how a caller's steps are
    made to fail, crash or stall for tests and drills, without hooks in the caller's code."""
    return cast(T, _Faulty(inner, faults, before, after))
