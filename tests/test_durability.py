"""A 2xx is a promise: kill the server mid-load and every acknowledged capture must be there."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from hookscope.storage.sqlite.store import SQLiteStore
from tests.serverproc import ServerProcess

# Killed with SIGKILL on an SQLite file, whose WAL it reads after; a server on PostgreSQL is
# killed under load in test_postgres_server.py.
pytestmark = pytest.mark.sqlite_only("SQLite's WAL and lock file after a SIGKILL")

SENDERS = 48
LOAD_SECONDS = 1.5


async def _post(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str,
                body: bytes) -> tuple[int, dict[str, str]]:
    """One keep-alive HTTP/1.1 POST on an open connection; a minimal, independent client."""
    writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if line)
    await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers


async def _load(url: str, token: str, proc: ServerProcess, seconds: float = LOAD_SECONDS,
                at_least: int = 0) -> tuple[dict[str, bytes], int]:
    """Load the server from SENDERS connections for `seconds`, and on until `at_least`
    captures were acknowledged (a busy machine serves fewer a second), then SIGKILL it."""
    host, port = url.removeprefix("http://").split(":")
    acknowledged: dict[str, bytes] = {}
    failures = 0
    stop = asyncio.Event()

    async def sender(n: int) -> None:
        nonlocal failures
        i = 0
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(host, int(port))
            except OSError:
                failures += 1
                return
            try:
                while not stop.is_set():
                    body = f"sender {n} request {i} ".encode() + os.urandom(64)
                    i += 1
                    status, headers = await _post(reader, writer, f"/h/{token}/load", body)
                    if 200 <= status < 300:
                        acknowledged[headers["x-hookscope-capture"]] = body
            except (OSError, asyncio.IncompleteReadError, ValueError):
                failures += 1  # the kill cut this request off: it was never acknowledged
            finally:
                writer.close()

    async def killer() -> None:
        await asyncio.sleep(seconds)
        deadline = time.monotonic() + 60
        while len(acknowledged) < at_least and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        proc.kill()  # SIGKILL while senders are mid-request
        stop.set()

    await asyncio.gather(killer(), *(sender(n) for n in range(SENDERS)))
    return acknowledged, failures


@pytest.mark.slow
@pytest.mark.parametrize(("synchronous", "body_files"),
                         [("normal", False), ("full", False), ("normal", True), ("full", True)],
                         ids=["normal", "full", "files-normal", "files-full"])
def test_every_acknowledged_capture_survives_sigkill(tmp_path: Path, synchronous: str,
                                                     body_files: bool):
    db = tmp_path / "durable.db"
    # HOOKSCOPE_BODY_FILE_BYTES=1: every body with a byte in it goes to a file; under full
    # they are written on the writer thread, otherwise (small turns) on the event loop.
    env = {"HOOKSCOPE_BODY_FILE_BYTES": "1"} if body_files else {}
    first = ServerProcess(db, tmp_path / "first.log", env=env,
                          args=("--synchronous", synchronous))
    url = first.start()
    token = httpx.post(url + "/api/endpoints", json={"max_captures": 1_000_000}).json()["token"]
    # Enough captures to prove something, however busy the machine: the load goes on until
    # this many were acknowledged (a file per capture, synced under full, is the slowest).
    enough = 300 if body_files else 1000
    acknowledged, failures = asyncio.run(_load(url, token, first, at_least=enough))
    assert first.proc is not None and first.proc.returncode == -9
    assert len(acknowledged) >= enough, f"too little load to prove anything ({len(acknowledged)})"
    assert failures >= 1, "the kill should have interrupted in-flight requests"

    stored = _stored_bodies(db, token)
    _assert_kept(acknowledged, stored)
    if body_files:
        # What the kill cut off between a file and its commit is swept when the store opens.
        files = {p.name for p in Path(f"{db}.bodies").iterdir()}
        assert files == stored.keys(), f"{len(files - stored.keys())} files without a capture"


def _stored_bodies(db: Path, token: str) -> dict[str, bytes]:
    """Every capture of the endpoint `token` in the database, id to body. The store opens the
    file first, as a restart does: it waits for a worker still answering, and sweeps the body
    files the kill left without a committed row. Then the file is read directly, read-only,
    rather than through the API one request at a time."""

    async def reopen() -> None:
        store = SQLiteStore(db)
        await store.open()
        await store.close()

    asyncio.run(reopen())
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT c.id, c.body, c.file_bytes FROM captures c "
                            "JOIN endpoints e ON e.id = c.endpoint_id WHERE e.token = ?",
                            (token,)).fetchall()
    assert rows, f"endpoint {token} has no captures"
    bodies: dict[str, bytes] = {}
    for capture_id, body, file_bytes in rows:
        if file_bytes:  # HOOKSCOPE_BODY_FILE_BYTES: the body is a file beside the database
            body = Path(f"{db}.bodies", capture_id).read_bytes()
            assert len(body) == file_bytes, capture_id
        bodies[capture_id] = body
    return bodies


def _assert_kept(acknowledged: dict[str, bytes], stored: dict[str, bytes]) -> None:
    """Every acknowledged capture is stored, with its exact body."""
    missing = acknowledged.keys() - stored.keys()
    assert not missing, f"{len(missing)} acknowledged captures lost: {sorted(missing)[:3]}"
    changed = [capture_id for capture_id, body in acknowledged.items()
               if stored[capture_id] != body]
    assert not changed, f"{len(changed)} bodies changed: {changed[:3]}"


RESTART_ROUNDS = 3


@pytest.mark.slow
def test_a_restart_at_once_after_sigkill_always_starts(tmp_path: Path):
    # docs/running.md: "after a crash or SIGKILL, just start again", as systemd does at once: the
    # kernel released the lock file with the killed process, so the new one never waits.
    db = tmp_path / "restart.db"
    server = ServerProcess(db, tmp_path / "round-0.log")
    try:
        url = server.start()
        token = httpx.post(url + "/api/endpoints", json={"max_captures": 1_000_000}).json()["token"]
        acknowledged: dict[str, bytes] = {}
        for round_ in range(1, RESTART_ROUNDS + 1):
            this_round, _ = asyncio.run(_load(url, token, server, seconds=0.3, at_least=100))
            server = ServerProcess(db, tmp_path / f"round-{round_}.log")
            url = server.start()
            acknowledged.update(this_round)
    finally:
        server.stop()
    _assert_kept(acknowledged, _stored_bodies(db, token))
