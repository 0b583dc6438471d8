"""A lock file beside the database (`<db>.lock`, flock) makes sure two Hookscopes never write one
file; the kernel releases it when the process dies, so a restart after SIGKILL needs no manual step.
The workers of HOOKSCOPE_WORKERS hold it with their main process (hookscope.cluster): one whose
main process was killed finishes what it is answering and stops, and a Hookscope started
meanwhile waits for that rather than refusing (`take_lock`).
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import time
from pathlib import Path

from hookscope.storage import SchemaTooNew, StoreLocked
from hookscope.storage.sqlite.migrations import LATEST

log = logging.getLogger("hookscope.store")

# How long a new Hookscope waits for the lock while the process that took it is gone: its
# workers, which hold the lock too, answer what they have in flight (uvicorn's grace period,
# hookscope.server) and stop, and only then may another Hookscope write the file.
LEFTOVER_WAIT_S = 60.0


def take_lock(path: str, wait: float = LEFTOVER_WAIT_S) -> int:
    """Take the database's lock file; raise StoreLocked if another Hookscope holds it, at once
    when the process that took it is alive, after `wait` seconds when only its workers are."""
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + wait
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            gone = not _alive(holder)
            if not gone or time.monotonic() >= deadline:
                os.close(fd)
                still = " (its workers have not stopped)" if gone else ""
                raise StoreLocked(
                    f"{path} is already in use by another Hookscope process (pid {holder}){still}; "
                    "stop it or choose another --db") from None
            if not told:
                log.warning("%s: Hookscope process %s is gone; waiting up to %g s for its workers "
                            "to stop", path, holder, wait)
                told = True
            time.sleep(0.05)
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def _alive(pid: str) -> bool:
    """Whether the process `pid` (a lock file's content) exists."""
    if not pid.isdigit():
        return False  # a lock taken a moment ago, or by a Hookscope that died before writing it
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


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
