"""The writer's checkpointer: a connection and a thread of their own that fold the WAL into the
database off the request path.

After each commit, within CHECKPOINT_EVERY_S, a PASSIVE checkpoint copies what it can without
ever blocking the writer. Under sustained load that alone never lets SQLite start the WAL over,
so past WAL_RESET_BYTES the checkpointer also copies the rest while the writer waits between two
transactions, and the WAL starts over; the file is truncated once the writer has been idle for
IDLE_TRUNCATE_S. Then the checkpointer sleeps until the next commit rather than waking 20 times
a second for nothing (uvicorn's own 0.1 s tick still wakes the event loop).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable

log = logging.getLogger("hookscope.checkpointer")

# Small, frequent checkpoints: each one's disk syncs hold WAL writes up for less time, which
# keeps the tail latency of a steady load down (bench/steady; docs/performance.md).
CHECKPOINT_EVERY_S = 0.05
# The WAL file is truncated once no commit came for this long.
IDLE_TRUNCATE_S = 1.0
# Then the checkpointer sleeps until a commit or stop() wakes it; this is only a backstop.
IDLE_SLEEP_MAX_S = 60.0
# Past WAL_RESET_BYTES the WAL is checkpointed to its end and started over (see _reset_wal);
# after a reset that held the writer over RESET_SLOW_S, or could not catch up, only once
# RESET_BACKOFF_S have passed or the WAL is past both WAL_LIMIT_BYTES and WAL_LIMIT_DB_RATIO
# times the database's size.
WAL_RESET_BYTES = 64 * 1024 * 1024
WAL_LIMIT_BYTES = 4 * 1024 * 1024 * 1024
WAL_LIMIT_DB_RATIO = 1
RESET_RESIDUAL_BYTES = 8 * 1024 * 1024
RESET_MAX_PASSES = 4
RESET_SLOW_S = 0.05
RESET_BACKOFF_S = 30.0


class Checkpointer:
    """Checkpoints the database at `path` on a connection from `connect`, holding `writer_lock`
    (the writer's, taken around each of its transactions) whenever the writer must wait. The
    writer calls committed() after each commit."""

    def __init__(self, path: str, connect: Callable[[], sqlite3.Connection],
                 writer_lock: threading.Lock) -> None:
        self._path = path
        self._connect = connect
        self._writer_lock = writer_lock
        self.commits = 0  # the writer's, counted by committed()
        self._stopping = threading.Event()
        # Set by a commit or stop() when the checkpointer sleeps (see _sleep_until_a_commit).
        self._wake = threading.Event()
        self._asleep = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="hookscope-checkpoint",
                                        daemon=True)
        self._thread.start()

    def committed(self) -> None:
        """Called by the writer after each commit (on whichever thread made it)."""
        self.commits += 1
        if self._asleep:
            self._wake.set()

    def stop(self) -> None:
        """Have the thread end within an interval; join() waits for it."""
        self._stopping.set()
        self._wake.set()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        conn = self._connect()
        # Only RESTART and TRUNCATE wait for anything (readers still on the WAL), and they do so
        # while the writer waits for them: not for long.
        conn.execute("PRAGMA busy_timeout = 100")
        frame_bytes = conn.execute("PRAGMA page_size").fetchone()[0] + 24
        wal = f"{self._path}-wal"
        seen = 0
        idle_since = time.monotonic()  # the last commit seen, or the last refused truncation
        backoff_until = 0.0
        # Moves when another connection commits (a sqlite3 shell, say), whose commits mean the
        # database is not idle either.
        others = conn.execute("PRAGMA data_version").fetchone()[0]
        try:
            while not self._stopping.wait(CHECKPOINT_EVERY_S):
                try:
                    if self.commits == seen:
                        version = conn.execute("PRAGMA data_version").fetchone()[0]
                        if version != others:
                            others = version
                            idle_since = time.monotonic()
                        elif not _size(wal):
                            self._sleep_until_a_commit(seen)
                        elif time.monotonic() - idle_since >= IDLE_TRUNCATE_S:
                            # No commit for a while: give the disk space back. Truncating a
                            # big WAL takes a while, which a busy writer must not wait for; an
                            # idle one hardly notices.
                            with self._writer_lock:
                                busy = conn.execute(
                                    "PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
                            if busy:  # a reader kept the WAL: not again every interval
                                idle_since = time.monotonic()
                        continue
                    seen = self.commits
                    idle_since = time.monotonic()
                    row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    # The WAL's length in use, not its file: a restarted WAL keeps its file.
                    length = row[1] * frame_bytes
                    if length <= WAL_RESET_BYTES:
                        continue
                    force = length > max(WAL_LIMIT_BYTES,
                                         WAL_LIMIT_DB_RATIO * _size(self._path))
                    if time.monotonic() < backoff_until and not force:
                        continue
                    held = self._reset_wal(conn, row, frame_bytes, force=force)
                    if held is None or held > RESET_SLOW_S:
                        backoff_until = time.monotonic() + RESET_BACKOFF_S
                except sqlite3.Error as exc:  # a full disk, say: try again next interval
                    log.warning("background checkpoint failed: %s", exc)
        finally:
            conn.close()

    def _sleep_until_a_commit(self, seen: int) -> None:
        """Nothing to checkpoint and no WAL to truncate: wait for the next commit (or stop())
        rather than waking every CHECKPOINT_EVERY_S, so an idle server stays asleep. The flag
        goes up before the last look at the count, and a commit counts before it reads the
        flag, so a commit in between is never missed."""
        self._wake.clear()
        self._asleep = True
        try:
            # stop() sets _stopping before _wake: a stop that came before the clear() above is
            # seen here, one that comes after it sets _wake again.
            if self.commits == seen and not self._stopping.is_set():
                self._wake.wait(IDLE_SLEEP_MAX_S)
        finally:
            self._asleep = False

    def _reset_wal(self, conn: sqlite3.Connection, row: tuple[int, int, int],
                   frame_bytes: int, *, force: bool = False) -> float | None:
        """Checkpoint the WAL to its end and have the next transaction start it over.

        SQLite starts the WAL over only when a transaction begins after a checkpoint has copied
        all of it. Under sustained load the writer always commits more while a PASSIVE
        checkpoint runs, so the WAL grew without bound (tests/test_sqlite_store.py holds it bounded;
        docs/performance.md has the figures). More PASSIVE passes copy what
        came during the one before, until at most RESET_RESIDUAL_BYTES are left; then RESTART,
        while the writer waits, copies the rest and makes the next transaction write from the
        WAL's beginning, over the same file, which keeps its size until the writer is idle.
        With small captures that holds the writer briefly (bench/steady). With large bodies at
        full speed (bench/large) the disk is busy and every sync slow: the passes do not catch
        up, and a RESTART held the writer for long. So when RESET_MAX_PASSES do not catch up
        there is no RESTART unless `force`, and the checkpointer leaves the WAL to grow for a
        while (RESET_BACKOFF_S), up to the limit; so too after a slow RESTART.

        `row`: what the last PASSIVE pass returned, (busy, frames in the WAL, frames copied).
        Returns how long the writer was held, in seconds (0 when a reader kept the WAL: that
        is not the disk being slow), or None when there was no RESTART.
        """
        for _ in range(RESET_MAX_PASSES):
            before = row[1]
            started = time.monotonic()
            row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            # Left for RESTART: what came during this pass (about as much as during the one
            # before; negative if the WAL restarted) and what a reader kept from being copied.
            left = max(row[1] - before, 0) + row[1] - row[2]
            # A pass this small that still took long says the disk is busy: RESTART would be
            # as slow, with the writer waiting.
            if (left * frame_bytes <= RESET_RESIDUAL_BYTES
                    and time.monotonic() - started <= RESET_SLOW_S):
                break
        else:
            if not force:
                return None
        with self._writer_lock:
            started = time.monotonic()
            busy = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()[0]
            held = time.monotonic() - started
        return 0.0 if busy else held


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
