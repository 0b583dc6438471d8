"""Large bodies in files beside the database (HOOKSCOPE_BODY_FILE_BYTES, storage.sqlite.bodyfiles):
stored byte for byte, counted against the limits, removed with their captures however those go, and
swept when a crash left one behind."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from hookscope.main import create_app
from hookscope.models import Capture, new_capture_id, now_us
from hookscope.settings import Settings
from hookscope.storage import CaptureQuery
from hookscope.storage.sqlite import bodyfiles
from hookscope.storage.sqlite.bodyfiles import BodyFiles
from hookscope.storage.sqlite.store import SQLiteStore
from tests.conftest import stored_bytes

pytestmark = [pytest.mark.anyio, pytest.mark.sqlite_only("files beside the SQLite database")]

THRESHOLD = 1000
BIG = bytes(range(256)) * 20  # 5,120 bytes: over the threshold, and every byte value
SMALL = b"small body"


def _capture(endpoint, body: bytes) -> Capture:
    received = now_us()
    return Capture(id=new_capture_id(received), endpoint_id=endpoint.id,
                   endpoint_token=endpoint.token, received_at=received, method="POST",
                   path=f"/h/{endpoint.token}", query="", headers=[["x-a", "1"]],
                   remote_addr="127.0.0.1", content_type="application/octet-stream",
                   body_size=len(body), truncated=False, response_status=200,
                   parsed_kind="binary", body=body)


@pytest.fixture
async def files_store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "f.db", body_file_bytes=THRESHOLD)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def _folder(store: SQLiteStore) -> Path:
    return Path(store.path + ".bodies")


def _on_disk(store: SQLiteStore) -> set[str]:
    folder = _folder(store)
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


async def _endpoint(store: SQLiteStore, **fields):
    return await store.create_endpoint({"created_at": now_us(), "max_captures": 100, **fields})


async def _add(store: SQLiteStore, endpoint, body: bytes) -> Capture:
    capture = _capture(endpoint, body)
    await store.add_capture(capture)
    return capture


async def test_a_large_body_goes_to_a_file_and_a_small_one_into_its_row(files_store):
    endpoint = await _endpoint(files_store)
    big = await _add(files_store, endpoint, BIG)
    small = await _add(files_store, endpoint, SMALL)
    assert (_folder(files_store) / big.id).read_bytes() == BIG
    assert _on_disk(files_store) == {big.id}
    with sqlite3.connect(files_store.path) as conn:
        rows = dict((r[0], r[1:]) for r in conn.execute(
            "SELECT id, body, file_bytes FROM captures"))
    assert rows == {big.id: (b"", len(BIG)), small.id: (SMALL, 0)}
    assert (await files_store.get_capture(big.id)).body == BIG
    assert (await files_store.get_capture(small.id)).body == SMALL
    assert (await files_store.get_capture(big.id, body=False)).body is None
    again = await files_store.get_endpoint(endpoint.token)
    # Counted wherever the body is.
    assert again.stored_bytes == stored_bytes(big) + stored_bytes(small)


async def test_every_way_a_capture_goes_removes_its_file(files_store):
    endpoint = await _endpoint(files_store, max_captures=2)
    _first, second, third = [await _add(files_store, endpoint, BIG) for _ in range(3)]
    assert _on_disk(files_store) == {second.id, third.id}  # pruned past max_captures
    assert await files_store.delete_capture(second.id)
    assert _on_disk(files_store) == {third.id}
    assert (await files_store.get_endpoint(endpoint.token)).stored_bytes == stored_bytes(third)

    await files_store.clear_captures(endpoint)
    assert _on_disk(files_store) == set()

    doomed = await _endpoint(files_store)
    kept = await _endpoint(files_store)
    await _add(files_store, doomed, BIG)
    survivor = await _add(files_store, kept, BIG)
    await files_store.delete_endpoint(doomed)  # its captures go by ON DELETE CASCADE
    assert _on_disk(files_store) == {survivor.id}

    expiring = await _endpoint(files_store, expires_at=now_us() - 1)
    await _add(files_store, expiring, BIG)
    assert await files_store.delete_expired(now_us()) == [expiring.id]
    assert _on_disk(files_store) == {survivor.id}
    assert (await files_store.get_capture(survivor.id)).body == BIG


async def test_max_bytes_prunes_by_the_bytes_in_files(files_store):
    endpoint = await _endpoint(files_store)
    size = stored_bytes(_capture(endpoint, BIG))  # the same for every capture of BIG here
    await files_store.update_endpoint(endpoint, {"max_bytes": 2 * size})
    captures = [await _add(files_store, endpoint, BIG) for _ in range(4)]
    assert _on_disk(files_store) == {c.id for c in captures[2:]}
    assert (await files_store.get_endpoint(endpoint.token)).stored_bytes == 2 * size


async def test_a_clash_of_capture_ids_leaves_the_first_body_alone(files_store):
    endpoint = await _endpoint(files_store)
    first = await _add(files_store, endpoint, BIG)
    clash = _capture(endpoint, BIG[::-1])
    clash.id = first.id
    with pytest.raises(FileExistsError):
        await files_store.add_capture(clash)
    assert (await files_store.get_capture(first.id)).body == BIG
    assert _on_disk(files_store) == {first.id}


async def test_files_stay_readable_and_removable_once_the_setting_is_off(tmp_path):
    path = tmp_path / "off.db"
    store = SQLiteStore(path, body_file_bytes=THRESHOLD)
    await store.open()
    endpoint = await _endpoint(store)
    old, gone = await _add(store, endpoint, BIG), await _add(store, endpoint, BIG)
    await store.close()

    store = SQLiteStore(path)  # body_file_bytes=0: new bodies go into the database
    await store.open()
    try:
        new = await _add(store, endpoint, BIG)
        assert _on_disk(store) == {old.id, gone.id}
        assert (await store.get_capture(old.id)).body == BIG
        assert (await store.get_capture(new.id)).body == BIG
        await store.delete_capture(gone.id)
        assert _on_disk(store) == {old.id}
    finally:
        await store.close()


async def test_opening_sweeps_files_no_capture_points_at(tmp_path):
    path = tmp_path / "sweep.db"
    store = SQLiteStore(path, body_file_bytes=THRESHOLD)
    await store.open()
    endpoint = await _endpoint(store)
    kept = await _add(store, endpoint, BIG)
    await store.close()
    folder = Path(f"{path}.bodies")
    orphan = new_capture_id(now_us())  # a crash between writing a file and its commit
    (folder / orphan).write_bytes(b"never committed")
    (folder / "notes.txt").write_text("not ours to remove")

    store = SQLiteStore(path, body_file_bytes=THRESHOLD)
    await store.open()
    try:
        assert _on_disk(store) == {kept.id, "notes.txt"}
        assert (await store.get_capture(kept.id)).body == BIG
    finally:
        await store.close()


@pytest.mark.parametrize("synchronous", ["normal", "full"])
async def test_full_synchronous_syncs_each_file_and_its_folders(tmp_path, monkeypatch,
                                                                synchronous):
    synced: list[str] = []
    for name in ("fdatasync", "fsync"):
        real = getattr(os, name)
        monkeypatch.setattr(os, name, lambda fd, real=real: (
            synced.append(os.readlink(f"/proc/self/fd/{fd}")), real(fd))[1])
    store = SQLiteStore(tmp_path / "full.db", body_file_bytes=THRESHOLD, synchronous=synchronous)
    await store.open()
    try:
        endpoint = await _endpoint(store)
        captures = [await _add(store, endpoint, BIG + bytes([i])) for i in range(3)]
        for i, capture in enumerate(captures):
            assert (await store.get_capture(capture.id)).body == BIG + bytes([i])
    finally:
        await store.close()
    folder = store.path + ".bodies"
    if synchronous == "normal":
        assert synced == []
    else:
        assert sorted(synced) == sorted([str(tmp_path)] + [folder] * 3 + [
            os.path.join(folder, c.id) for c in captures])


async def test_max_total_bytes_prunes_by_the_bytes_in_files(tmp_path):
    # A capture of BIG, with its path and headers; endpoint tokens are all of one length.
    size = len(BIG) + 200
    store = SQLiteStore(tmp_path / "t.db", body_file_bytes=THRESHOLD,
                        max_total_bytes=3 * size)
    await store.open()
    try:
        one, two = await _endpoint(store), await _endpoint(store)
        added = [await _add(store, endpoint, BIG) for endpoint in (one, two, one, two, one)]
        assert _on_disk(store) == {c.id for c in added[2:]}
        assert (await store.get_capture(added[0].id)) is None
    finally:
        await store.close()


async def test_a_rolled_back_savepoint_in_a_batch_keeps_every_file(files_store):
    """An operation that deletes captures and then fails is rolled back alone: the files of
    the captures it deleted stay, and so does the file of a capture in the same batch."""
    endpoint = await _endpoint(files_store)
    before = await _add(files_store, endpoint, BIG)

    def delete_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM captures")
        raise RuntimeError("changed my mind")

    during = _capture(endpoint, BIG[::-1])
    results = await asyncio.gather(files_store.add_capture(during),
                                   files_store._writer.run(delete_then_fail),
                                   return_exceptions=True)
    assert isinstance(results[1], RuntimeError)
    assert _on_disk(files_store) == {before.id, during.id}
    assert (await files_store.get_capture(before.id)).body == BIG
    assert (await files_store.get_capture(during.id)).body == BIG[::-1]


async def test_a_capture_deleted_while_its_body_is_read_is_gone_not_empty(files_store,
                                                                          monkeypatch, caplog):
    endpoint = await _endpoint(files_store)
    raced, kept = await _add(files_store, endpoint, BIG), await _add(files_store, endpoint, BIG)
    real_read = files_store._files.read

    def read_after_a_delete(capture_id: str, size: int) -> bytes | None:
        # What the writer does if a delete commits between reading the row and the file.
        with sqlite3.connect(files_store.path, timeout=5) as conn:
            conn.execute("DELETE FROM captures WHERE id = ?", (capture_id,))
        os.unlink(files_store._files.path(capture_id))
        return real_read(capture_id, size)

    monkeypatch.setattr(files_store._files, "read", read_after_a_delete)
    assert await files_store.get_capture(raced.id) is None
    monkeypatch.setattr(files_store._files, "read", real_read)

    os.unlink(files_store._files.path(kept.id))  # removed by hand: the capture is still there
    assert (await files_store.get_capture(kept.id)).body == b""
    assert f"capture {kept.id}: its body file is missing" in caplog.text


@pytest.fixture
def bare(tmp_path: Path) -> Iterator[tuple[sqlite3.Connection, BodyFiles]]:
    """BodyFiles on a connection of its own, its transactions driven by hand."""
    conn = sqlite3.connect(tmp_path / "r.db", isolation_level=None)
    conn.execute("CREATE TABLE captures (id TEXT, body BLOB, file_bytes INTEGER)")
    files = BodyFiles(str(tmp_path / "r.db"), THRESHOLD)
    files.prepare(conn)
    yield conn, files
    conn.close()


def _insert(conn: sqlite3.Connection, files: BodyFiles) -> str:
    """A new capture's file and row, in the transaction under way."""
    capture_id = new_capture_id(now_us())
    files.write(capture_id, BIG)
    conn.execute("INSERT INTO captures VALUES (?, '', ?)", (capture_id, len(BIG)))
    return capture_id


def _committed(conn: sqlite3.Connection, files: BodyFiles) -> str:
    conn.execute("BEGIN")
    capture_id = _insert(conn, files)
    conn.execute("COMMIT")
    files.after_commit(conn)
    return capture_id


def test_a_rolled_back_transaction_leaves_no_file(bare):
    conn, files = bare
    conn.execute("BEGIN")
    capture_id = _insert(conn, files)
    assert os.path.exists(files.path(capture_id))
    conn.execute("ROLLBACK")
    files.after_rollback(conn)
    assert not os.path.exists(files.path(capture_id))


def test_a_commit_that_failed_late_keeps_its_new_files_and_removes_its_deleted_ones(bare):
    """A COMMIT that reported an error, yet reached the database."""
    conn, files = bare
    deleted = _committed(conn, files)
    conn.execute("BEGIN")
    late = _insert(conn, files)
    conn.execute("DELETE FROM captures WHERE id = ?", (deleted,))
    conn.execute("COMMIT")
    files.after_rollback(conn)
    assert files.read(late, len(BIG)) == BIG
    assert files.read(deleted, len(BIG)) is None


def test_a_row_deleted_in_a_savepoint_rolled_back_keeps_its_file(bare):
    conn, files = bare
    capture_id = _committed(conn, files)
    conn.execute("BEGIN")
    conn.execute("SAVEPOINT op")
    conn.execute("DELETE FROM captures")
    conn.execute("ROLLBACK TO op")
    conn.execute("RELEASE op")
    conn.execute("COMMIT")
    files.after_commit(conn)
    assert files.read(capture_id, len(BIG)) == BIG


async def test_q_searches_bodies_in_files_as_it_does_bodies_in_rows(files_store):
    endpoint = await _endpoint(files_store)
    filler = b"." * THRESHOLD
    in_file = await _add(files_store, endpoint, filler + b'{"Event": "Order_Placed"}')
    in_row = await _add(files_store, endpoint, b'{"event": "order_placed"}')
    other = await _add(files_store, endpoint, filler + b'{"event": "refund"}')
    unreadable = await _add(files_store, endpoint, filler + b"order_placed")
    os.unlink(files_store._files.path(unreadable.id))  # searched as holding nothing, no error

    async def found(q: str) -> list[str]:
        return [c.id for c in await files_store.list_captures(endpoint, CaptureQuery(q=q))]

    assert await found("ORDER_placed") == [in_row.id, in_file.id]  # newest first
    assert await found("refund") == [other.id]
    assert await found("100%_sure") == []
    assert await found(f"/h/{endpoint.token}") == [unreadable.id, other.id, in_row.id,
                                                   in_file.id]  # the path: every capture


def test_search_finds_text_across_the_chunks_it_reads(tmp_path, monkeypatch):
    monkeypatch.setattr(bodyfiles, "_SEARCH_CHUNK", 4)
    files = BodyFiles(str(tmp_path / "s.db"), THRESHOLD)
    capture_id = new_capture_id(now_us())
    files.write(capture_id, b"0123\x00ORDER_placed-9")  # the needle spans chunks 2 to 4
    assert files.contains(capture_id, "order_PLACED")
    assert files.contains(capture_id, "d-9")
    assert not files.contains(capture_id, "order placed")
    assert not files.contains(new_capture_id(now_us()), "0123")  # no file: nothing, no error


def test_paths_are_only_ever_capture_ids(tmp_path):
    files = BodyFiles(str(tmp_path / "p.db"), THRESHOLD)
    for name in ("../p.db", "c_" + "0" * 31 + "/", "c_" + "A" * 32, ""):
        with pytest.raises(ValueError):
            files.path(name)


async def test_the_api_serves_a_body_from_its_file(tmp_path):
    settings = Settings(db=str(tmp_path / "api.db"), body_file_bytes=THRESHOLD)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            token = (await client.post("/api/endpoints", json={})).json()["token"]
            sent = await client.post(f"/h/{token}", content=BIG,
                                     headers={"content-type": "application/octet-stream"})
            capture_id = sent.headers["x-hookscope-capture"]
            assert (await client.get(f"/api/captures/{capture_id}/body")).content == BIG
            detail = (await client.get(f"/api/captures/{capture_id}")).json()
            assert detail["body_size"] == len(BIG)
            assert Path(f"{settings.db}.bodies", capture_id).read_bytes() == BIG
