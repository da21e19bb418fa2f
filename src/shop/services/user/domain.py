"""The user service's pure rules: when a login is throttled (API.md "Limits and formats")."""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LoginLimits:
    """After `max_failures` failed logins for one user name within `window_ms` (a window that
    starts at the name's first attempt), further attempts wait until the window passes."""

    max_failures: int = 5
    window_ms: int = 300_000


def expired(window_start_ms: int, now_ms: int, limits: LoginLimits) -> bool:
    return window_start_ms + limits.window_ms <= now_ms


def retry_after_s(attempts: int, window_start_ms: int, now_ms: int, limits: LoginLimits) -> int | None:
    """None if this attempt (the `attempts`-th of its window, counted before its password is
    checked) may go ahead; else the whole seconds until the window passes (at least 1), for
    Retry-After. Counted before the check, so that attempts arriving together cannot get more
    than `max_failures` guesses between them; a successful login forgets the count."""
    if attempts <= limits.max_failures or expired(window_start_ms, now_ms, limits):
        return None
    return max(1, math.ceil((window_start_ms + limits.window_ms - now_ms) / 1000))
