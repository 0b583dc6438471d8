"""The single SQLite writer: group commit, on the event loop when that is cheap.

Why this shape: a COMMIT per request caps the capture rate at what the commits cost; committing
everything asked for since the last commit as one transaction (no artificial wait, so an idle
server commits a lone request at once) shares that cost among them. Each event loop gathers
what it asked for during one turn and, at the end of that turn, commits it itself when the turn
asked only for quick operations (captures) of at most INLINE_MAX_BYTES together and no other
commit of this process is under way; otherwise it hands the turn to the writer thread as one
item. Committing on
the loop saves the hand-over: a thread that shares the GIL with the loop cost it more CPU than
SQLite's own work did. Large bodies and long operations (deleting an endpoint with its captures)
go to the thread, whose SQLite calls overlap with the loop reading the next requests. The
figures behind both choices are in docs/performance.md (bench/ingest, bench/large).

The promise is the same on both paths: an operation's future resolves only after the COMMIT that
contains it returned, so a capture is acknowledged only once it is durable. By default that means
in the WAL (synchronous=NORMAL: safe against a killed process; a power cut may lose the last
commits). With synchronous "full" every commit is also synced to disk, and every commit runs on
the thread, so the loop never waits for the disk.

Each operation runs inside its own SAVEPOINT, so one failing operation (a duplicate alias, a
vanished endpoint) fails alone and the rest of the batch commits. If the COMMIT itself fails,
every operation in the batch fails and nothing is acknowledged.

Hookscope is the only process that writes its database (storage.sqlite.lock), but a person's
sqlite3 shell may hold the write lock for a while: a loop that finds it taken hands its turn to
the thread, which waits for it up to BUSY_TIMEOUT_S.

Checkpoints are checkpointer.py's job, on a connection and a thread of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from hookscope.storage.sqlite.checkpointer import Checkpointer
from hookscope.storage.sqlite.migrations import migrate

T = TypeVar("T")
log = logging.getLogger("hookscope.writer")

MAX_BATCH = 1024
# A turn of quick operations writing at most this many bytes is committed on its event loop.
INLINE_MAX_BYTES = 256 * 1024
_STOP = object()
# How long the writer thread waits for the write lock another connection holds, polling from
# BUSY_POLL_MIN_S up to BUSY_POLL_MAX_S between tries.
BUSY_TIMEOUT_S = 30.0
BUSY_POLL_MIN_S = 0.0001
BUSY_POLL_MAX_S = 0.002


@dataclass
class _Turn:
    """What one event loop asked for during one turn of it."""

    items: list[Any] = field(default_factory=list)
    quick: bool = True  # every operation is quick
    size: int = 0  # the bytes they write


class BatchHooks(Protocol):
    """What the store keeps in step with the writer's transactions (retention.py,
    bodyfiles.py), called on the writer's connection in the order given."""

    def prepare(self, conn: sqlite3.Connection) -> None: ...
    def others_wrote(self, conn: sqlite3.Connection) -> None: ...
    def before_commit(self, conn: sqlite3.Connection) -> None: ...
    def after_commit(self, conn: sqlite3.Connection) -> None: ...
    def after_rollback(self, conn: sqlite3.Connection) -> None: ...


# The store's `synchronous` setting, as SQLite's PRAGMAs. fullfsync asks macOS to flush the
# drive's cache too (its plain fsync does not); elsewhere SQLite ignores it.
SYNCHRONOUS = {
    "normal": ("PRAGMA synchronous = NORMAL",),
    "full": ("PRAGMA synchronous = FULL", "PRAGMA fullfsync = ON",
             "PRAGMA checkpoint_fullfsync = ON"),
}


def connect(path: str, synchronous: str = "normal") -> sqlite3.Connection:
    # sqlite3 looks for an adapter for every parameter that is not an int, float, str or
    # bytearray, NULL and BLOB included; finding none costs two failed attribute lookups, each
    # formatting an AttributeError it then drops, for two or three parameters of every capture.
    # With identity adapters (`{}.get` gives None for any key, in C) it is one dict lookup and
    # no value changes. Sqlite3's adapters are the whole process's (the pytest plugin
    # runs in the user's), so they are set when a database is opened, not on import, and one
    # registered by someone else is left alone.
    identities: tuple[tuple[type[Any], Callable[[Any], Any]], ...] = (
        (bytes, bytes), (type(None), {}.get))
    for kind, identity in identities:
        if (kind, sqlite3.PrepareProtocol) not in sqlite3.adapters:
            sqlite3.register_adapter(kind, identity)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    # For a new database only (an existing one keeps its size). Every commit writes each page
    # it touched whole to the WAL (a capture touches four: the table's, two indexes', its
    # endpoint's), so small pages suit small captures and large ones large bodies: 8 KiB is the
    # middle that bench/steady and bench/large agreed on (docs/performance.md).
    conn.execute("PRAGMA page_size = 8192")
    conn.execute("PRAGMA journal_mode = WAL")
    # NORMAL syncs the WAL only at checkpoints; FULL at every commit too. Either way one commit
    # serves a whole batch of captures, so FULL costs one sync per batch, not per capture.
    for pragma in SYNCHRONOUS[synchronous]:
        conn.execute(pragma)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


class Writer:
    def __init__(self, path: str, hooks: Sequence[BatchHooks],
                 synchronous: str = "normal") -> None:
        if synchronous not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {sorted(SYNCHRONOUS)}, "
                             f"got {synchronous!r}")
        self._path = path
        self._synchronous = synchronous
        # A commit under synchronous=FULL waits for the disk, so it runs on the thread, not the
        # event loop, which goes on serving meanwhile (tail latency, docs/performance.md).
        self._inline = synchronous != "full"
        self._hooks = tuple(hooks)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._stopping.set()  # until start()
        self._gate = threading.Lock()
        # Held by the writer for each transaction; the checkpointer takes it to reset the WAL.
        self._transaction = threading.Lock()
        self._checkpointer = Checkpointer(path, lambda: connect(path, synchronous),
                                          self._transaction)
        self._data_version: int | None = None  # as of our last transaction
        self._conn: sqlite3.Connection | None = None
        # Operations asked for during the current turn of each event loop (see run()).
        self._pending: dict[asyncio.AbstractEventLoop, _Turn] = {}

    @property
    def commits(self) -> int:
        """How many transactions this writer committed."""
        return self._checkpointer.commits

    def start(self) -> None:
        conn = connect(self._path, self._synchronous)
        try:
            migrate(conn)
            # Checkpoints are the background thread's job, not the commit path's.
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            # Never cut the WAL file when it starts over: freeing its pages holds up that commit.
            # The checkpointer truncates it once the writer is idle.
            conn.execute("PRAGMA journal_size_limit = -1")
            # SQLite's own busy wait sleeps in steps: on the event loop that would stall
            # every request. The loop tries the write lock again on later turns (see
            # _try_again_later), the thread waits its way.
            conn.execute("PRAGMA busy_timeout = 0")
            for hook in self._hooks:
                hook.prepare(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._stopping.clear()
        # The checkpointer first: a writer thread that dies at once stops it, not before it.
        self._checkpointer.start()
        self._thread = threading.Thread(target=self._run, args=(conn,), name="hookscope-writer",
                                        daemon=True)
        self._thread.start()

    async def run(self, op: Callable[[sqlite3.Connection], T], *, single: bool = False,
                  quick: bool = False, size: int = 0) -> T:
        """Run `op(conn)` in a write transaction; return its result once it is committed.

        `single=True` says the op changes the database with at most one statement, which SQLite
        applies whole or not at all, so it needs no savepoint of its own (captures: the hot path).
        `quick=True` says it takes a bounded, short time (no scan, no mass delete) and writes
        about `size` bytes, so it may be committed on the event loop's own thread.
        Called from event loops; stop() from the thread of the loop that used the store.
        """
        if self._stopping.is_set():
            raise _closed()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        # Committed once per turn of the event loop, not once per operation (see the module's
        # docstring).
        turn = self._pending.get(loop)
        if turn is None:
            turn = self._pending[loop] = _Turn()
            loop.call_soon(self._end_turn, loop)
        turn.items.append((op, single, future, loop))
        turn.quick = turn.quick and quick
        turn.size += size
        return await future

    def _end_turn(self, loop: asyncio.AbstractEventLoop) -> None:
        """Commit what `loop` asked for since its last turn, here or on the writer thread."""
        turn = self._pending.pop(loop, None)
        if turn is None:
            return
        with self._gate:  # so nothing is queued after the thread's last drain
            closed = self._stopping.is_set()
            # Never wait here for another commit (the checkpointer's, or the thread's): the
            # thread can wait for it while this loop goes on serving. (Handing turns to the
            # thread while a checkpoint ran, too, cost throughput and tail latency once
            # checkpoints came often.)
            here = (not closed and self._inline and turn.quick and turn.size <= INLINE_MAX_BYTES
                    and self._transaction.acquire(blocking=False))
            if not closed and not here:
                self._queue.put(turn.items)
                return
        if closed:
            _resolve_all([(future, None, _closed()) for _, _, future, _ in turn.items])
            return
        try:
            conn = self._conn
            assert conn is not None  # opened by start(), before any turn
            try:
                begun = _begin_now(conn)
            except Exception:  # the thread tries again, and fails the batch cleanly if it must
                self._queue.put(turn.items)
                return
            if not begun:  # another connection holds the write lock: the thread waits for it
                self._queue.put(turn.items)
                return
            outcomes = self._commit_batch(conn, turn.items, begun=True)
        finally:
            self._transaction.release()
        _resolve_all([(future, result, exc) for future, _, result, exc in outcomes])

    def stop(self) -> None:
        """Commit everything already queued, then close. Safe to call twice."""
        if self._thread is None:
            return
        with self._gate:
            # What was asked for before stop() is committed, even if its loop has not handed it
            # over yet (should stop() run before that hand-over) - unless the thread is gone.
            for loop in list(self._pending):
                turn = self._pending.pop(loop, None)
                if turn is not None:
                    self._queue.put(turn.items)
            self._stopping.set()
            self._checkpointer.stop()
            self._queue.put(_STOP)
        self._thread.join()
        self._thread = None
        self._conn = None
        _fail_queued(self._queue)  # what reached the queue after a dying thread's last drain
        self._checkpointer.join()

    # -- the writer thread ------------------------------------------------------------------

    def _run(self, conn: sqlite3.Connection) -> None:
        try:
            self._loop(conn)
        finally:
            # Whatever ended this thread, nobody may wait forever on an operation it will
            # never run: refuse new work, fail what is still queued, and close the connection
            # once a commit on an event loop that began before is done.
            with self._gate:
                self._stopping.set()
                self._checkpointer.stop()
            with self._transaction:
                conn.close()
            _fail_queued(self._queue)

    def _loop(self, conn: sqlite3.Connection) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = list(first)
            stop_after = False
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop_after = True
                    break
                batch.extend(item)
            with self._transaction:
                outcomes = self._commit_batch(conn, batch)
            _deliver(outcomes)
            if stop_after:
                return

    def _commit_batch(self, conn: sqlite3.Connection, batch: list[Any], begun: bool = False
                      ) -> list[tuple[asyncio.Future[Any], asyncio.AbstractEventLoop, Any, Any]]:
        """Commit `batch` as one transaction (the caller holds the transaction lock); each
        operation's (future, loop, result, exception)."""
        outcomes: list[tuple[asyncio.Future[Any], asyncio.AbstractEventLoop, Any, Any]] = []
        try:
            if not begun:
                _begin_waiting(conn)
            # Changed when another connection committed since our last transaction: a hand on
            # the file (a sqlite3 shell), whose changes the counters must not overwrite.
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            if version != self._data_version:
                if self._data_version is not None:
                    for hook in self._hooks:
                        hook.others_wrote(conn)
                self._data_version = version
            for op, single, future, loop in batch:
                if not single:
                    conn.execute("SAVEPOINT op")
                try:
                    result = op(conn)
                except Exception as exc:
                    if not conn.in_transaction:
                        # SQLITE_FULL, IOERR and the like roll back the whole transaction, not
                        # just the statement: nothing before this point will be committed.
                        raise
                    if not single:
                        conn.execute("ROLLBACK TO op")
                        conn.execute("RELEASE op")
                    outcomes.append((future, loop, None, exc))
                else:
                    if not single:
                        conn.execute("RELEASE op")
                    outcomes.append((future, loop, result, None))
            for hook in self._hooks:
                hook.before_commit(conn)
            conn.execute("COMMIT")
            self._checkpointer.committed()
        except BaseException as exc:
            log.error("commit failed, %d operations not stored: %r", len(batch), exc)
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            for hook in self._hooks:
                try:
                    hook.after_rollback(conn)
                except Exception:
                    log.exception("after a rollback")
            if isinstance(exc, Exception):
                return [(future, loop, None, exc) for _, _, future, loop in batch]
            # KeyboardInterrupt and the like go on up, but nobody may wait forever for what
            # this batch held, nor find its transaction still open.
            interrupted = RuntimeError("the commit was interrupted; nothing in it was stored")
            _deliver([(future, loop, None, interrupted) for _, _, future, loop in batch])
            raise
        for hook in self._hooks:
            try:
                hook.after_commit(conn)
            except Exception:  # committed all the same: tidying up failed, say so
                log.exception("after a commit")
        return outcomes

def _closed() -> RuntimeError:
    return RuntimeError("the store is closed")


def _fail_queued(queued: queue.SimpleQueue[Any]) -> None:
    while True:
        try:
            item = queued.get_nowait()
        except queue.Empty:
            return
        if item is not _STOP:
            _deliver([(future, loop, None, _closed()) for _, _, future, loop in item])


def _deliver(outcomes: list[tuple[asyncio.Future[Any], asyncio.AbstractEventLoop, Any, Any]]
             ) -> None:
    """Hand results to their event loops: one wake-up per loop per batch."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
    for future, loop, result, exc in outcomes:
        by_loop.setdefault(loop, []).append((future, result, exc))
    for loop, items in by_loop.items():
        # RuntimeError: that loop has closed, so nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_resolve_all, items)


def _resolve_all(items: list[tuple[asyncio.Future[Any], Any, Any]]) -> None:
    for future, result, exc in items:
        if future.cancelled():
            continue
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)


def _begin_now(conn: sqlite3.Connection) -> bool:
    """BEGIN IMMEDIATE if the write lock is free now; False if another connection holds it."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:  # BUSY_RECOVERY and the like too
            return False
        raise
    return True


def _begin_waiting(conn: sqlite3.Connection) -> None:
    """BEGIN IMMEDIATE, waiting up to BUSY_TIMEOUT_S for another connection's transaction."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    pause = BUSY_POLL_MIN_S
    while not _begin_now(conn):
        if time.monotonic() > deadline:
            raise sqlite3.OperationalError("database is locked")
        time.sleep(pause)
        pause = min(pause * 2, BUSY_POLL_MAX_S)
