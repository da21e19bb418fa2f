"""What a SQLite unit of work wrote or saw is on the disk when the unit of work is left (issue 11,
point 3): checked against what was really synced, kept by the power-cut shim (tests/synced_only.c).

A process under the shim writes and reads concurrently through SqliteDatabase, and after leaving
each unit of work looks at what a power cut would leave at that instant. With the barrier (the
default) or synchronous=FULL, everything a writer committed and a reader saw is there: readers too,
since a reader may act on another coroutine's commit whose flush has not returned yet. With plain
NORMAL nothing is (no checkpoint syncs the WAL this early): the control that shows the check can tell.
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.synced_only import shim_env

SCRIPT = """
import asyncio, json, os, shutil, sqlite3, sys, tempfile
import sqlalchemy as sa
from shop.infra.db import Query, SqliteDatabase

path, shadow, durability = sys.argv[1:]
t = sa.table("t", sa.column("x"))
INSERT = Query(sa.insert(t).values(x=sa.bindparam("x")))
COUNT = Query(sa.select(sa.func.count().label("n")).select_from(t))


def synced():
    # The rows a power cut now would leave: the shadow without the shim's own files and the -shm.
    with tempfile.TemporaryDirectory() as d:
        for f in os.listdir(shadow):
            if not f.startswith(".") and not f.endswith("-shm"):
                shutil.copy(os.path.join(shadow, f), d)
        c = sqlite3.connect(os.path.join(d, "t.db"))
        try:
            return {r[0] for r in c.execute("SELECT x FROM t")}
        finally:
            c.close()


async def main():
    db = SqliteDatabase(path, durability)
    lost = []

    async def write(i):
        async with db.unit_of_work() as uow:
            await uow.execute(INSERT, x=i)
            await uow.commit()
        if i not in synced():
            lost.append(f"wrote {i}")

    async def read(i):
        async with db.unit_of_work(readonly=True) as uow:
            n = (await uow.fetchone(COUNT))["n"]
        if len(synced()) < n:
            lost.append(f"read {n} rows after write {i}")

    # Each reader runs while the writer before it waits for its flush: it sees a commit not yet synced.
    await asyncio.gather(*(f(i) for i in range(20) for f in (write, read)))
    print(json.dumps(lost))
    sys.stdout.flush()
    os._exit(0)  # no close (it would checkpoint): the files as a power cut finds them


asyncio.run(main())
"""


@pytest.mark.parametrize(("durability", "durable"), [("barrier", True), ("full", True), ("normal", False)])
def test_a_unit_of_work_is_left_only_once_what_it_wrote_or_saw_is_synced(
    synced_only: Path, tmp_path: Path, durability: str, durable: bool,
) -> None:
    watched, shadow = tmp_path / "data", tmp_path / "shadow"
    watched.mkdir()
    c = sqlite3.connect(watched / "t.db")
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("CREATE TABLE t (x INTEGER)")
    c.close()  # its WAL checkpointed and removed: the file starts synced, its -wal new
    shutil.copytree(watched, shadow)
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(watched / "t.db"), str(shadow), durability],
                         env={**os.environ, **shim_env(synced_only, watched, shadow)}, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    lost = json.loads(run.stdout)
    if durable:
        assert lost == []
    else:
        assert len(lost) == 40, lost
