"""What only the SQLite store does: its writer and group commit, checkpoints, the lock file,
migrations and pages. What every store promises is in test_store_contract.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import stat
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hookscope import models
from hookscope.main import create_app
from hookscope.models import Capture, new_capture_id, now_us
from hookscope.settings import Settings
from hookscope.storage import SchemaTooNew, StoreLocked, json_column
from hookscope.storage.sqlite import checkpointer, writer
from hookscope.storage.sqlite.lock import check_writable, take_lock
from hookscope.storage.sqlite.migrations import LATEST, MIGRATIONS, migrate
from hookscope.storage.sqlite.retention import Retention
from hookscope.storage.sqlite.store import SQLiteStore

pytestmark = [pytest.mark.anyio,
              pytest.mark.sqlite_only("the SQLite store's own writer, files, lock and migrations")]


def test_random_pool_hands_out_each_byte_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Capture ids take their random part from a pool: no two takes may share bytes, across
    refills too."""
    fetched = []

    def urandom(n: int) -> bytes:
        start = sum(map(len, fetched))
        fetched.append(bytes(range(start, start + n)))  # every byte ever drawn is distinct
        return fetched[-1]

    monkeypatch.setattr(models.os, "urandom", urandom)
    pool = models._RandomPool(size=25)
    taken = [pool.take(10) for _ in range(7)]
    assert all(len(chunk) == 10 for chunk in taken)
    assert len(set(b"".join(taken))) == 70  # nothing handed out twice
    assert len(fetched) == 4  # two takes per 25-byte buffer; the last 5 bytes are dropped
    assert taken[2] == fetched[1][:10]
    assert pool.take(40) == fetched[4]  # more than the pool's size: a buffer of its own


def _capture(endpoint_id: int, token: str, body: bytes) -> Capture:
    received = now_us()
    return Capture(id=new_capture_id(received), endpoint_id=endpoint_id, endpoint_token=token,
                   received_at=received, method="POST", path=f"/h/{token}", query="",
                   headers=[["content-type", "text/plain"]], remote_addr="127.0.0.1",
                   content_type="text/plain", body_size=len(body), truncated=False,
                   response_status=200, parsed_kind="text", body=body)


async def _endpoint(store: SQLiteStore, **fields):
    return await store.create_endpoint({"created_at": now_us(), "max_captures": 100, **fields})


async def test_bodies_are_blobs_and_unchecked_verdicts_null(store):
    """The writer binds bytes and None through identity adapters (storage.sqlite.writer): the
    columns must still hold a BLOB and NULLs."""
    endpoint = await _endpoint(store)
    await store.add_capture(_capture(endpoint.id, endpoint.token, b"\x00\xffraw"))
    with sqlite3.connect(store.path) as conn:
        row = conn.execute("SELECT typeof(body), body, typeof(signature), typeof(parsed_error), "
                           "typeof(validation) FROM captures").fetchone()
    assert row == ("blob", b"\x00\xffraw", "null", "null", "null")


async def test_a_commit_by_another_connection_is_counted_from_the_database(store, tmp_path):
    """A hand on the file (a sqlite3 shell) commits behind the writer's back: its next
    transaction takes the counters from the database, not its own copy."""
    endpoint = await _endpoint(store, max_captures=3)
    first = _capture(endpoint.id, endpoint.token, b"a")
    assert await store.add_capture(first) == 1
    other = sqlite3.connect(store.path, isolation_level=None)
    try:  # as another writer would: one more capture, counted on the endpoint row
        other.execute("UPDATE endpoints SET last_seq = 41, capture_count = 3, stored_bytes = 3 "
                      "WHERE id = ?", (endpoint.id,))
    finally:
        other.close()
    assert await store.add_capture(_capture(endpoint.id, endpoint.token, b"b")) == 42
    current = await store.get_endpoint(endpoint.token)
    # Over max_captures by the database's count (4 > 3): the oldest row went.
    assert (current.last_seq, current.capture_count, current.stored_bytes) == (42, 3, 3)
    assert await store.get_capture(first.id) is None


async def test_concurrent_captures_get_distinct_growing_sequence_numbers(store):
    endpoint = await _endpoint(store, max_captures=10_000)
    captures = [_capture(endpoint.id, endpoint.token, str(i).encode()) for i in range(500)]
    seqs = await asyncio.gather(*(store.add_capture(c) for c in captures))
    assert sorted(seqs) == list(range(1, 501))
    # Committed: a separate connection sees every one of them.
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM captures").fetchone()[0] == 500


def test_the_headers_column_is_json_with_non_ascii_as_it_is():
    headers = [["x-a", "plain"], ["x-b", "quote \" backslash \\ nul \x00 tab \t"],
               ["x-c", "caf\xe9 \xff"]]
    text = json_column(headers)
    assert json.loads(text) == headers
    assert "caf\xe9 \xff" in text  # so `q` finds it


@pytest.mark.parametrize("key", ["caf\u00e9 \u2028 \U0001f600", "lone \ud800"],
                         ids=["text", "lone-surrogate"])
def test_the_verdict_column_holds_any_verdict_as_json(key):
    value = {"format": "custom", "status": "invalid",
             "errors": [{"path": f"/{key}/0", "message": "0 is not of type 'string'"}],
             "n": [0, -1, 2.5, 1e300, True, False, None]}
    text = json_column(value)
    assert json.loads(text) == value
    text.encode()  # SQLite stores text as UTF-8: no lone surrogate may be left in it


async def test_what_one_turn_of_the_loop_asks_for_is_one_commit(store):
    endpoint = await _endpoint(store, max_captures=10_000)
    before = store._writer.commits

    def add() -> asyncio.Future[int]:
        return asyncio.ensure_future(store.add_capture(_capture(endpoint.id, endpoint.token,
                                                                b"x")))

    adds = [add()]
    # Mid-turn, the writer thread gets the GIL for a while: it must find nothing to commit yet.
    asyncio.get_running_loop().call_soon(time.sleep, 0.05)
    adds += [add() for _ in range(199)]
    seqs = await asyncio.gather(*adds)
    assert sorted(seqs) == list(range(1, 201))
    assert store._writer.commits == before + 1


@pytest.fixture
async def bare_writer(tmp_path, request) -> AsyncIterator[writer.Writer]:
    """A writer on its own file, with one table `t`; stop() it to read the file. Parametrize it
    indirectly with a `synchronous` setting; "normal" otherwise."""
    w = writer.Writer(str(tmp_path / "w.db"), [Retention()], getattr(request, "param", "normal"))
    w.start()
    try:
        await w.run(lambda conn: conn.execute("CREATE TABLE t (x)"))
        yield w
    finally:
        w.stop()


def _rows_in_t(tmp_path) -> int:
    with sqlite3.connect(tmp_path / "w.db") as conn:
        return int(conn.execute("SELECT COUNT(*) FROM t").fetchone()[0])


def _where_committed(conn: sqlite3.Connection) -> threading.Thread:
    conn.execute("INSERT INTO t VALUES (1)")
    return threading.current_thread()


async def test_quick_small_writes_commit_on_the_event_loop_and_the_rest_on_the_thread(
        bare_writer, tmp_path):
    w = bare_writer
    here = threading.current_thread()
    assert await w.run(_where_committed, quick=True, size=1024) is here
    assert await w.run(_where_committed, quick=True,
                       size=writer.INLINE_MAX_BYTES + 1) is w._thread
    assert await w.run(_where_committed) is w._thread
    # One slow operation in a turn sends the whole turn to the thread.
    assert await asyncio.gather(w.run(_where_committed, quick=True),
                                w.run(_where_committed)) == [w._thread, w._thread]
    # So do quick ones that together write too much.
    half = writer.INLINE_MAX_BYTES // 2 + 1
    assert await asyncio.gather(*(w.run(_where_committed, quick=True, size=half)
                                  for _ in range(2))) == [w._thread, w._thread]
    w.stop()
    assert _rows_in_t(tmp_path) == 7


@pytest.mark.parametrize(("bare_writer", "level", "on_the_loop"),
                         [("normal", 1, True), ("full", 2, False)], indirect=["bare_writer"])
async def test_synchronous_full_syncs_every_commit_and_commits_on_the_thread(
        bare_writer, tmp_path, level, on_the_loop):
    """FULL makes each commit wait for the disk, so none may hold the event loop."""
    w = bare_writer
    assert await w.run(lambda conn: conn.execute("PRAGMA synchronous").fetchone()[0],
                       quick=True) == level
    where = await w.run(_where_committed, quick=True, size=1024)
    assert (where is threading.current_thread()) is on_the_loop
    w.stop()
    assert _rows_in_t(tmp_path) == 1


async def test_the_synchronous_setting_reaches_every_connection_the_writer_opens(
        tmp_path, monkeypatch):
    opened = []
    real_connect = writer.connect

    def recording(path: str, synchronous: str = "normal") -> sqlite3.Connection:
        opened.append(synchronous)
        return real_connect(path, synchronous)

    monkeypatch.setattr(writer, "connect", recording)
    app = create_app(Settings(db=str(tmp_path / "full.db"), synchronous="full"))
    async with app.router.lifespan_context(app):
        pass
    assert opened == ["full", "full"]  # the writer's and the checkpointer's


def test_an_unknown_synchronous_setting_is_refused(tmp_path):
    with pytest.raises(ValueError, match="synchronous must be one of"):
        SQLiteStore(tmp_path / "x.db", synchronous="FULL")


@contextlib.asynccontextmanager
async def _ticking() -> AsyncIterator[list[int]]:
    """Counts the event loop's 10 ms ticks while the block runs, in [count]: it goes on
    serving only if they keep coming."""
    ticks = [0]

    async def tick() -> None:
        while True:
            await asyncio.sleep(0.01)
            ticks[0] += 1

    ticker = asyncio.ensure_future(tick())
    try:
        yield ticks
    finally:
        ticker.cancel()


async def test_the_event_loop_never_waits_for_another_commit(bare_writer):
    """While the checkpointer holds the writer (a WAL reset), a quick write goes to the thread,
    which waits for it; the event loop goes on serving."""
    w = bare_writer
    w._transaction.acquire()
    threading.Timer(0.3, w._transaction.release).start()
    async with _ticking() as ticks:
        assert await w.run(_where_committed, quick=True) is w._thread
    assert ticks[0] >= 10


async def test_a_write_lock_another_connection_holds_is_waited_for_on_the_thread(
        bare_writer, tmp_path):
    """Another connection (a sqlite3 shell) holds SQLite's write lock: the loop hands its turn
    to the thread, which commits once the lock is free, and the loop goes on serving."""
    w = bare_writer
    other = sqlite3.connect(tmp_path / "w.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        asyncio.get_running_loop().call_later(0.3, other.execute, "COMMIT")
        async with _ticking() as ticks:
            assert await w.run(_where_committed, quick=True) is w._thread
        assert ticks[0] >= 10
    finally:
        other.close()
    w.stop()
    assert _rows_in_t(tmp_path) == 1


class _Interrupt(BaseException):
    """Not an Exception: like KeyboardInterrupt, it goes on up."""


async def test_an_interrupted_commit_fails_its_writes_and_leaves_no_transaction_open(
        bare_writer, tmp_path):
    def interrupted(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t VALUES (1)")
        raise _Interrupt

    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda loop, context: None)  # the callback's _Interrupt
    with pytest.raises(RuntimeError, match="interrupted"):
        await asyncio.wait_for(bare_writer.run(interrupted, quick=True), 5)
    assert await bare_writer.run(_where_committed, quick=True) is threading.current_thread()
    bare_writer.stop()
    assert _rows_in_t(tmp_path) == 1


async def test_stopping_commits_what_was_asked_for_before_the_hand_over(tmp_path):
    store = SQLiteStore(tmp_path / "closing.db")
    await store.open()
    endpoint = await _endpoint(store)
    # The task asks for its write, and the writer stops before the loop hands that write over.
    adding = asyncio.create_task(store.add_capture(_capture(endpoint.id, endpoint.token, b"k")))
    await asyncio.sleep(0)
    store._writer.stop()
    assert await asyncio.wait_for(adding, 5) == 1
    await store.close()
    with sqlite3.connect(tmp_path / "closing.db") as conn:
        assert conn.execute("SELECT body FROM captures").fetchall() == [(b"k",)]


async def test_a_second_store_on_the_same_file_is_refused(store):
    second = SQLiteStore(store.path)
    with pytest.raises(StoreLocked, match="already in use by another Hookscope process"):
        await second.open()
    with pytest.raises(StoreLocked):
        check_writable(store.path)


async def test_the_lock_is_released_on_close(tmp_path):
    path = str(tmp_path / "lock.db")
    first = SQLiteStore(path)
    await first.open()
    await first.close()
    check_writable(path)
    second = SQLiteStore(path)
    await second.open()
    await second.close()


async def test_the_database_and_its_companions_are_private_to_their_owner(tmp_path):
    # They hold the endpoints' signing secrets in plain text.
    folder = tmp_path / "data"
    path = folder / "private.db"
    check_writable(str(path))  # what `hookscope serve` does first
    store = SQLiteStore(path, body_file_bytes=100)
    await store.open()
    try:
        endpoint = await _endpoint(store, verify={"scheme": "github", "secrets": ["s3cret"]})
        small = _capture(endpoint.id, endpoint.token, b"small")
        large = _capture(endpoint.id, endpoint.token, b"x" * 1000)
        await store.add_capture(small)
        await store.add_capture(large)
        files = [path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}.lock"),
                 Path(f"{path}.bodies") / large.id]
        assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {
            f.name: 0o600 for f in files}
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert stat.S_IMODE(Path(f"{path}.bodies").stat().st_mode) == 0o700
    finally:
        await store.close()


def test_a_lock_another_process_holds_is_refused_at_once_and_names_it(tmp_path):
    path = str(tmp_path / "held.db")
    fd = take_lock(path)
    try:
        started = time.monotonic()
        with pytest.raises(StoreLocked, match=f"pid {os.getpid()}\\);.*PostgreSQL --db"):
            check_writable(path)
        assert time.monotonic() - started < 5
    finally:
        os.close(fd)
    check_writable(path)  # free again once its holder let go


def test_fresh_database_gets_the_latest_schema(tmp_path):
    conn = sqlite3.connect(tmp_path / "fresh.db", isolation_level=None)
    assert migrate(conn) == 0
    assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"endpoints", "captures"} <= tables
    assert migrate(conn) == LATEST  # idempotent


@pytest.mark.parametrize("start", range(1, LATEST + 1))
async def test_a_database_at_each_schema_version_opens_and_keeps_its_rows(tmp_path, start):
    # With one migration so far this covers opening a current database written earlier;
    # each migration added later makes it cover one more upgrade path.
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=start)
    conn.execute("INSERT INTO endpoints (token, created_at, max_captures, config) "
                 "VALUES ('oldtoken', 1, 10, ?)",
                 ('{"verify": null, "format": "auto", "schema": null, "response": '
                  '{"status": 200, "headers": {}, "body": null, "delay_ms": 0}, "reject": '
                  '{"bad_signature": false, "invalid_payload": false}}',))
    conn.close()
    store = SQLiteStore(path)
    await store.open()
    try:
        assert (await store.get_endpoint("oldtoken")).max_captures == 10
        with sqlite3.connect(path) as check:
            assert check.execute("PRAGMA user_version").fetchone()[0] == LATEST == len(MIGRATIONS)
    finally:
        await store.close()


async def test_a_newer_schema_is_refused_with_a_clear_message(tmp_path):
    path = tmp_path / "future.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {LATEST + 1}")
    conn.close()
    with pytest.raises(SchemaTooNew, match="newer Hookscope"):
        check_writable(str(path))
    store = SQLiteStore(path)
    with pytest.raises(SchemaTooNew):
        await store.open()
    check_writable_after_failure = SQLiteStore(path)  # the failed open released its lock
    with pytest.raises(SchemaTooNew):
        await check_writable_after_failure.open()


async def test_wal_mode_is_on(store):
    rows = await store._rows("PRAGMA journal_mode")
    assert rows[0][0] == "wal"


async def test_a_new_database_uses_8k_pages_and_an_old_one_keeps_its_own(tmp_path):
    old = tmp_path / "old.db"  # as the versions before 8 KiB pages made them
    conn = sqlite3.connect(old)
    conn.execute("PRAGMA page_size = 16384")
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    for path, size in ((tmp_path / "new.db", 8192), (old, 16384)):
        store = SQLiteStore(path)
        await store.open()
        await store.close()
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA page_size").fetchone()[0] == size
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()


async def _truncated(wal: Path) -> bool:
    """Whether the WAL file is emptied within 5 seconds."""
    deadline = time.monotonic() + 5
    while wal.stat().st_size > 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return wal.stat().st_size == 0


@pytest.mark.parametrize("backing_off", [False, True], ids=["resets", "backing-off-to-the-limit"])
async def test_the_wal_stays_bounded_under_sustained_writes(tmp_path, monkeypatch, backing_off):
    # With only PASSIVE checkpoints, a writer that never pauses keeps the WAL growing: SQLite
    # starts it over only after a checkpoint has caught up, which never happens.
    monkeypatch.setattr(checkpointer, "CHECKPOINT_EVERY_S", 0.02)
    monkeypatch.setattr(checkpointer, "WAL_RESET_BYTES", 1024 * 1024)
    # Every reset counts as slow (backing off) or none does, whatever this machine's disk does.
    monkeypatch.setattr(checkpointer, "RESET_SLOW_S", -1 if backing_off else 60)
    if backing_off:
        # After the first reset, only the hard limit starts the WAL over.
        monkeypatch.setattr(checkpointer, "RESET_BACKOFF_S", 10**9)
        monkeypatch.setattr(checkpointer, "WAL_LIMIT_BYTES", 4 * 1024 * 1024)
        monkeypatch.setattr(checkpointer, "WAL_LIMIT_DB_RATIO", 0)
    store = SQLiteStore(tmp_path / "busy.db")
    await store.open()
    try:
        endpoint = await _endpoint(store, max_captures=1_000_000)
        wal = tmp_path / "busy.db-wal"

        async def write(n: int) -> None:
            for _ in range(n):
                await store.add_capture(_capture(endpoint.id, endpoint.token, b"x" * 4096))

        # A restarted WAL is written over from its beginning, so once the first checkpoints
        # have run, its file stops growing. Without the reset it keeps every commit's pages,
        # 65-150 KB each: every round below would add 30+ MB.
        growth = []
        while len(growth) < 20 and growth[-2:] != [True, True]:
            before = wal.stat().st_size
            await write(500)
            growth.append(wal.stat().st_size - before < 500 * 16 * 1024)
        assert growth[-2:] == [True, True], growth
        # Once the writes stop, the file itself is given back.
        assert await _truncated(wal)
    finally:
        await store.close()
    with sqlite3.connect(tmp_path / "busy.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM captures").fetchone()[0] == 500 * len(growth)


async def test_the_wal_file_is_truncated_only_after_a_whole_idle_interval(tmp_path, monkeypatch):
    # Checkpoints come every few milliseconds; truncating a big WAL takes 100+ ms with the
    # writer waiting, so a short pause in the traffic must not set it off.
    monkeypatch.setattr(checkpointer, "CHECKPOINT_EVERY_S", 0.01)
    monkeypatch.setattr(checkpointer, "IDLE_TRUNCATE_S", 3600)
    store = SQLiteStore(tmp_path / "idle.db")
    await store.open()
    try:
        endpoint = await _endpoint(store)
        wal = tmp_path / "idle.db-wal"
        await store.add_capture(_capture(endpoint.id, endpoint.token, b"x" * 4096))
        await asyncio.sleep(0.3)  # thirty checkpoint intervals without a commit
        assert wal.stat().st_size > 0
        monkeypatch.setattr(checkpointer, "IDLE_TRUNCATE_S", 0.1)
        assert await _truncated(wal)
    finally:
        await store.close()
    with sqlite3.connect(tmp_path / "idle.db") as conn:
        assert conn.execute("SELECT body FROM captures").fetchall() == [(b"x" * 4096,)]


async def test_an_idle_checkpointer_sleeps_until_the_next_commit(tmp_path, monkeypatch):
    # It looks at the WAL's size every interval while there is work; not once asleep.
    looks = []
    real_size = checkpointer._size
    monkeypatch.setattr(checkpointer, "_size",
                        lambda path: (looks.append(path), real_size(path))[1])
    monkeypatch.setattr(checkpointer, "CHECKPOINT_EVERY_S", 0.01)
    monkeypatch.setattr(checkpointer, "IDLE_TRUNCATE_S", 0.05)
    store = SQLiteStore(tmp_path / "sleep.db")
    await store.open()
    try:
        endpoint = await _endpoint(store)
        wal = tmp_path / "sleep.db-wal"
        for body in (b"first", b"second"):
            await store.add_capture(_capture(endpoint.id, endpoint.token, body))
            assert wal.stat().st_size > 0
            assert await _truncated(wal)  # woken by the commit, truncated once idle again
            await asyncio.sleep(0.1)
            seen = len(looks)
            await asyncio.sleep(0.3)  # thirty intervals
            assert len(looks) == seen, "the checkpointer kept waking while idle"
    finally:
        await store.close()
    with sqlite3.connect(tmp_path / "sleep.db") as conn:
        assert conn.execute("SELECT body FROM captures ORDER BY seq").fetchall() == [
            (b"first",), (b"second",)]


async def test_a_truncation_a_reader_holds_up_is_tried_again_only_after_an_idle_interval(
        tmp_path, monkeypatch):
    # Each try holds the writer up to the checkpointer's busy timeout (100 ms).
    tries = []
    real_connect = writer.connect

    class Watched:
        def __init__(self, conn: sqlite3.Connection) -> None:
            self._conn = conn

        def __getattr__(self, name: str):
            return getattr(self._conn, name)

        def execute(self, sql: str, *args):
            if "wal_checkpoint(TRUNCATE)" in sql:
                tries.append(time.monotonic())
            return self._conn.execute(sql, *args)

    monkeypatch.setattr(writer, "connect", lambda *args: Watched(real_connect(*args)))
    monkeypatch.setattr(checkpointer, "CHECKPOINT_EVERY_S", 0.01)
    monkeypatch.setattr(checkpointer, "IDLE_TRUNCATE_S", 0.4)
    store = SQLiteStore(tmp_path / "held.db")
    await store.open()
    reader = sqlite3.connect(tmp_path / "held.db", isolation_level=None)
    try:
        endpoint = await _endpoint(store)
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM captures").fetchone()  # a read on the WAL
        await store.add_capture(_capture(endpoint.id, endpoint.token, b"x"))
        await asyncio.sleep(1.5)
        # Without the wait, a try every interval: about 14 in that time.
        assert 1 <= len(tries) <= 4, tries
    finally:
        reader.close()
        await store.close()
