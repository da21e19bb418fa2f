"""The power-cut shim (synced_only.c) from Python: built once per run, checked, and pointed at a data dir.

`shim_env(shim, watched, shadow)` is the environment that makes a process keep in `shadow` only what
it synced of the files in `watched`; `restartable(shadow)` is that shadow as the disk after the cut.
"""
from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

SOURCE = Path(__file__).with_name("synced_only.c")

# Checks the shim sees SQLite's own syncs (libsqlite3's fdatasync) and Python's os.fsync, and that a
# file keeps only what was synced: a FULL commit survives, a NORMAL one (never synced) does not.
PROBE = """
import os, sqlite3, sys
for name, sync in (("full", "FULL"), ("normal", "NORMAL")):
    c = sqlite3.connect(os.path.join(sys.argv[1], name + ".db"), isolation_level=None)
    c.execute("PRAGMA synchronous=" + sync)
    c.execute("INSERT INTO t VALUES (1)")
with open(os.path.join(sys.argv[1], "probe.txt"), "w") as f:
    f.write("synced")
    f.flush()
    os.fsync(f.fileno())
    f.write(" and more")
    f.flush()
os._exit(0)  # no close: the WAL files stay as a power cut finds them
"""


def build(gcc: str, out: Path) -> Path:
    """Compile the shim into `out` and check it does what it says on this machine."""
    subprocess.run([gcc, "-O2", "-Wall", "-Wno-format-truncation", "-Werror", "-shared", "-fPIC", "-o", str(out),
                    str(SOURCE), "-ldl"], check=True, capture_output=True)
    _probe(out, out.parent / "probe")
    return out


def _probe(shim: Path, where: Path) -> None:
    watched, shadow = where / "watched", where / "shadow"
    watched.mkdir(parents=True)
    for name in ("full", "normal"):
        c = sqlite3.connect(watched / f"{name}.db")
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("CREATE TABLE t (x)")
        c.close()
    (watched / "probe.txt").write_text("old")
    shutil.copytree(watched, shadow)
    subprocess.run([sys.executable, "-c", PROBE, str(watched)], check=True, timeout=30,
                   env={**os.environ, **shim_env(shim, watched, shadow)})
    survived = restartable(shadow)
    rows = {n: sqlite3.connect(survived / f"{n}.db").execute("SELECT count(*) FROM t").fetchone()[0]
            for n in ("full", "normal")}
    text = (survived / "probe.txt").read_text()
    assert (rows, text) == ({"full": 1, "normal": 0}, "synced"), (
        f"the power-cut shim does not keep exactly what was synced here: {rows}, {text!r}")


def shim_env(shim: Path, watched: Path, shadow: Path) -> dict[str, str]:
    return {"LD_PRELOAD": str(shim), "SYNCED_ONLY_DIR": str(watched), "SYNCED_ONLY_SHADOW": str(shadow)}


def restartable(shadow: Path) -> Path:
    """The shadow as a machine finds its disk after the cut: the shim's own files gone, and the -shm
    files too (shared memory, rebuilt from the WAL on the next open; never synced)."""
    shutil.rmtree(shadow / ".pending", ignore_errors=True)
    for f in shadow.iterdir():
        if f.name.startswith(".tmp-") or f.name.endswith("-shm"):
            f.unlink()
    return shadow
