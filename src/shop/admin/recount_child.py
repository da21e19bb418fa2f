"""The embedded shop's full recount, in a process of its own.

Why a process: in the embedded mode one process serves every request and holds every service's
database. A recount reads every order, goods and user; even with its SQL on worker threads, turning
a million rows into facts and checking them is Python work, and while it runs it holds the GIL
that the event loop needs: /healthz's p99 went from 4 ms to 78 ms during a recount at a million
orders. A child process reads the same databases (SQLite's WAL lets readers work beside the writer;
a server database is a server) with its own interpreter, at a lower CPU priority, and streams its
progress back as JSON lines. In the distributed mode nothing of this is needed: each service reads
its facts in its own process already.

The parent side (`recount_in_child`) and the child's (`child`, run by the hidden `shop recount-child`,
which bootstraps the shop: this module does not, so bootstrap can import it) are both here: they
speak one format.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from typing import Any

from shop.admin.audit import Finding
from shop.admin.auditor import Auditor, Recount
from shop.infra.config import Settings

log = logging.getLogger("shop.audit")

CHUNK = 20_000  # orders per reading: the child serves nobody, so it reads in the offline audit's ranges
PROGRESS_S = 0.5  # how often the child tells its progress
NICENESS = 10  # the child yields the CPU to the serving process when both want it


def _line(recount: Recount, **more: Any) -> bytes:
    out = {"orders": recount.orders, "entities": recount.entities, **more}
    return json.dumps(out).encode() + b"\n"


async def recount_in_child(settings: Settings, recount: Recount) -> None:
    """Run a recount in a child process, filling `recount` as it reports. The settings reach it on
    its stdin (they hold the admin token and the database URLs: not for argv or the environment)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shop", "recount-child",  # cli.py: bootstrap, then child() here
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    recount.process = proc.pid
    try:
        proc.stdin.write(settings.model_dump_json().encode())
        await proc.stdin.drain()
        proc.stdin.close()
        async for raw in proc.stdout:
            msg = json.loads(raw)
            recount.orders = msg["orders"]
            recount.entities.update(msg["entities"])
            if "violations" in msg:  # the last line: what it found
                recount.violations = [Finding(v["text"], v["orderId"]) for v in msg["violations"]]
                recount.wrong_orders = set(msg["wrongOrders"])
        code = await proc.wait()
        if code != 0:
            raise RuntimeError(f"the recount's process exited with {code} (its log is this process's)")
    finally:
        if proc.returncode is None:  # cancelled (the shop stopping): the child goes too
            proc.kill()
            await proc.wait()


async def child(auditor: Auditor, runtime: Any) -> None:
    """The child's side, handed a shop that `shop recount-child` bootstrapped (without migrations:
    the serving process ran them, and the child only reads) from the settings on its stdin."""
    await runtime.connect()
    out = sys.stdout.buffer
    recount = Recount()

    async def progress() -> None:
        while True:
            await asyncio.sleep(PROGRESS_S)
            out.write(_line(recount))
            out.flush()

    reporter = asyncio.create_task(progress())
    try:
        await auditor.recount_all(recount, CHUNK, pause_s=0)
    finally:
        reporter.cancel()
        await runtime.close()
    found = [{"text": f.text, "orderId": f.order_id} for f in recount.violations]
    out.write(_line(recount, violations=found, wrongOrders=sorted(recount.wrong_orders)))
    out.flush()


def child_settings() -> Settings:
    """The child's settings (its parent's, from stdin), its CPU priority lowered and its log to stderr."""
    os.nice(NICENESS)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s [recount] %(name)s: %(message)s")
    return Settings.model_validate_json(sys.stdin.buffer.read())
