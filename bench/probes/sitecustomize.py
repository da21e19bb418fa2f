"""Probes for a shop process, loaded by Python at its start when this folder is on its PYTHONPATH:
what stops its event loop, and for how long. They report to /tmp/shop-probe-<pid>.log.

    .venv/bin/python bench/notify.py --mode embedded --env PYTHONPATH=bench/probes --env SHOP_PROBE_GC=1
    .venv/bin/python bench/orders_http.py --wrk --env PYTHONPATH=bench/probes --env SHOP_PROBE_STALLS_MS=4

- SHOP_PROBE_GC=1: every collection of generation 2, and any other over 2 ms, with its time and
  how many objects the collector still tracks. This found the 90-120 ms full collections that
  runtime.freeze_the_lasting now avoids (issue 13).
- SHOP_PROBE_STALLS_MS=N: every event-loop callback that ran longer than N ms, with the task's
  coroutine and where it waits now; for one that runs past 4N ms, the main thread's stack while it
  runs. It times asyncio's own loop, so it keeps uvloop out (uvloop's callbacks cannot be timed from
  Python): the process is slower, the stops' causes the same.

A probe, not a test or a benchmark: it changes the process it watches, and what it writes is read
by a person. Why by hand: the libraries that watch an event loop (aiodebug, asyncio's debug mode)
name the callback but not the code a stop was in, and slow everything down while on.
"""
from __future__ import annotations

import asyncio
import gc
import os
import sys
import threading
import time
import traceback
from typing import Any

_LOG = None


def _log(text: str) -> None:
    global _LOG
    if _LOG is None:
        _LOG = open(f"/tmp/shop-probe-{os.getpid()}.log", "a")  # noqa: SIM115 - open for the process's life
    _LOG.write(text + "\n")
    _LOG.flush()


def _watch_gc() -> None:
    started = [0.0]

    def timed(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        ms = (time.perf_counter() - started[0]) * 1000
        if info["generation"] == 2 or ms > 2:
            _log(f"{time.time():.3f} gc gen{info['generation']} {ms:.1f} ms, collected {info['collected']}, "
                 f"tracked {len(gc.get_objects())}, frozen {gc.get_freeze_count()}")

    gc.callbacks.append(timed)


def _watch_stalls(limit_s: float) -> None:
    sys.modules["uvloop"] = None  # type: ignore[assignment] - find_spec then says it is not there
    run = asyncio.events.Handle._run
    now: dict[str, Any] = {"since": None, "shown": False, "thread": None}

    def timed_run(self: asyncio.events.Handle) -> None:
        now.update(since=time.perf_counter(), shown=False, thread=threading.get_ident())
        try:
            run(self)
        finally:
            ms = (time.perf_counter() - now["since"]) * 1000
            now["since"] = None
            if ms > limit_s * 1000:
                task = getattr(self._callback, "__self__", None)
                what = repr(self)[:150]
                if isinstance(task, asyncio.Task):
                    frames = task.get_stack()[-4:]
                    what = task.get_coro().__qualname__ + " waiting at " + " < ".join(
                        f"{f.f_code.co_qualname}:{f.f_lineno}" for f in frames)
                _log(f"{time.time():.3f} callback {ms:.1f} ms: {what}")

    def show_long_ones() -> None:  # on a thread of its own: the main thread is the one stopped
        while True:
            time.sleep(limit_s)
            since = now["since"]
            if since is None or now["shown"] or time.perf_counter() - since < 4 * limit_s:
                continue
            now["shown"] = True
            frame = sys._current_frames().get(now["thread"])
            if frame is not None:
                _log(f"{time.time():.3f} still running after {4 * limit_s * 1000:.0f} ms:\n"
                     + "".join(traceback.format_stack(frame)[-10:]))

    asyncio.events.Handle._run = timed_run  # type: ignore[method-assign]
    threading.Thread(target=show_long_ones, name="probe-stalls", daemon=True).start()


if os.environ.get("SHOP_PROBE_GC"):
    _watch_gc()
if os.environ.get("SHOP_PROBE_STALLS_MS"):
    _watch_stalls(float(os.environ["SHOP_PROBE_STALLS_MS"]) / 1000)
