"""Fault injection at named points, so tests and operators on staging can prove the guarantee.

Armed through POST /admin/faults only when SHOP_FAULTS=1. Armed faults live in memory: a
restart clears them. "crash" ends the process at once, without clean-up, as a kill would.
"""
from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from shop.common.errors import ServiceUnavailable

ACTIONS = ("error", "crash", "delay")


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
            raise ServiceUnavailable(f"injected fault at {point}")
        elif fault.action == "crash":
            os._exit(86)
