"""A lock file beside the database (`<db>.lock`, flock) makes sure two Hookscopes never write one
file; the kernel releases it when the process dies, so a restart after SIGKILL needs no manual step.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path

from hookscope.storage import SchemaTooNew, StoreLocked
from hookscope.storage.sqlite.migrations import LATEST


def take_lock(path: str) -> int:
    """Take the database's lock file; raise StoreLocked if another Hookscope holds it."""
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise StoreLocked(
            f"{path} is already in use by another Hookscope process (pid {holder}); an SQLite "
            "database is served by one process: stop it, choose another --db, or use a "
            "PostgreSQL --db for several processes") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def create_private(path: str) -> None:
    """The database's folder (0700) and file (0600), when they are not there yet: the file holds
    the endpoints' signing secrets. SQLite gives its -wal and -shm files the database file's
    mode, and the lock file and body files are made 0600 too."""
    Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))


def check_writable(path: str) -> None:
    """Fail early, with a message rather than a traceback, if `path` cannot be served: another
    process holds it, or a newer Hookscope wrote it."""
    create_private(path)
    fd = take_lock(path)
    try:
        conn = sqlite3.connect(path)
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        finally:
            conn.close()
        if version > LATEST:
            raise SchemaTooNew(f"{path} was written by a newer Hookscope (schema {version}, "
                               f"this one knows {LATEST}); upgrade Hookscope or use another --db")
    finally:
        os.close(fd)
