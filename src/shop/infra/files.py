"""The data dir is private: password hashes, balances, the token secret and the platform's keys
live there, so other local users may read none of it. The dir is 0700 and what the shop writes in
it 0600, set where each is made (not only by the command line's umask: a library caller, a test,
a data dir made by an older version, or one another tool made world-readable, are covered too)."""
from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Make the dir (and its parents) if missing, and make it 0700, also when it was there already."""
    path.mkdir(parents=True, exist_ok=True)
    if path.stat().st_mode & 0o777 != DIR_MODE:
        path.chmod(DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Create the file empty if missing (0600 from the start: no moment where others may open it),
    or make an existing one 0600."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE))
    except FileExistsError:
        if path.stat().st_mode & 0o777 != FILE_MODE:
            path.chmod(FILE_MODE)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write the whole file or leave the old one, and on the disk before returning: a secret made at
    first start and used at once (a token signed with it) must not come back from a crash or a power
    cut empty (a new file written and never synced can), nor half written."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # one a crash left behind may have another mode
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    sync_dir(path.parent)  # the new name survives a power cut only once its directory is synced


def sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
