"""A SQLite file's commits made durable without blocking the event loop: group commit on its WAL.

Each COMMIT runs under synchronous=NORMAL: its frames are appended to the -wal file (in the page
cache) and nothing waits for the disk. A process killed now loses nothing, a power cut may lose the
file's latest commits. `durable()` then waits until one fdatasync of the -wal file, begun after the
caller's commit, has returned: the fdatasync runs on a thread of its own (the GIL released, the
file's lock not held), and every commit written before it began shares it, so a hundred orders in
flight pay for one disk flush, not a hundred.

The WAL is append-only between checkpoints, and SQLite under NORMAL syncs it itself before each
checkpoint and the database file after: what a power cut leaves of one file is always a prefix of
its commits, and after `durable()` that prefix includes the caller's.
"""
from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from shop.infra.files import sync_dir


class WalSyncer:
    """The durability barrier of one SQLite file in WAL mode (see the module's docstring)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.wal = f"{path}-wal"
        self.directory = Path(path).parent
        self.written = 0  # commits made so far on the file's writing connection
        self._synced = 0  # of those, the ones a finished fdatasync covered
        self._round: asyncio.Task[None] | None = None
        # The -wal file whose directory entry is durable: SQLite creates a new one when a file is first
        # opened (and after the last connection removed it), and a new file's name survives a power cut
        # only once its directory is synced too. SQLite does that itself when it first syncs a new
        # WAL's header, unless built with SQLITE_DISABLE_DIRSYNC; once per WAL file, this holds anyway.
        self._inode: int | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"sqlite-sync-{Path(path).stem}")

    async def durable(self) -> None:
        """Return once every commit made before this call is on the disk."""
        target = self.written
        while self._synced < target:
            if self._round is None:
                self._round = asyncio.get_running_loop().create_task(self._sync_round())
            # Shielded: a caller cancelled while it waits does not cancel the flush the others share.
            await asyncio.shield(self._round)

    async def _sync_round(self) -> None:
        covers = self.written  # every commit so far is in the page cache before the flush begins
        try:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._sync)
        finally:
            self._round = None
        self._synced = max(self._synced, covers)

    def _sync(self) -> None:
        try:
            fd = os.open(self.wal, os.O_RDONLY)
        except FileNotFoundError:  # no WAL (a checkpoint on close removed it): all is in the main file
            fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            inode = os.fstat(fd).st_ino
        finally:
            os.close(fd)
        if inode != self._inode:
            sync_dir(self.directory)
            self._inode = inode

    def close(self) -> None:
        self._thread.shutdown(wait=True)
