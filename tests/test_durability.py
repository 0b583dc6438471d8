"""A 2xx is a promise: kill the server mid-load and every acknowledged capture must be there."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from hookscope.storage.sqlite.lock import LEFTOVER_WAIT_S
from hookscope.storage.sqlite.store import SQLiteStore
from tests.serverproc import ServerProcess, wait_until

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
@pytest.mark.parametrize(("synchronous", "body_files", "workers"),
                         [("normal", False, 1), ("full", False, 1), ("normal", True, 1),
                          ("full", True, 1), ("normal", False, 2)],
                         ids=["normal", "full", "files-normal", "files-full", "two-processes"])
def test_every_acknowledged_capture_survives_sigkill(tmp_path: Path, synchronous: str,
                                                     body_files: bool, workers: int):
    db = tmp_path / "durable.db"
    # HOOKSCOPE_BODY_FILE_BYTES=1: every body with a byte in it goes to a file; under full
    # they are written on the writer thread, otherwise (small turns) on the event loop.
    env = {"HOOKSCOPE_BODY_FILE_BYTES": "1"} if body_files else {}
    # With two processes only the first is killed here; the worker, which writes to the same
    # database itself, stops once it finds the first gone, and what it acknowledged counts too.
    first = ServerProcess(db, tmp_path / "first.log", env=env,
                          args=("--synchronous", synchronous, "--workers", str(workers)))
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
SLOW_REPLY_MS = 2000


async def _slow_captures(url: str, token: str, count: int) -> dict[str, bytes]:
    """`count` captures at once, each on a connection of its own, to an endpoint that answers
    SLOW_REPLY_MS after storing: the acknowledged ones."""
    host, port = url.removeprefix("http://").split(":")
    acknowledged: dict[str, bytes] = {}

    async def one(n: int) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            body = f"slow {n} ".encode() + os.urandom(16)
            status, headers = await _post(reader, writer, f"/h/{token}", body)
            if 200 <= status < 300:
                acknowledged[headers["x-hookscope-capture"]] = body
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass  # on the killed process: never acknowledged
        finally:
            writer.close()

    await asyncio.gather(*(one(n) for n in range(count)))
    return acknowledged


async def _kill_and_restart(url: str, tokens: tuple[str, str], server: ServerProcess,
                            again: ServerProcess) -> dict[str, bytes]:
    """Load `server`, with slow captures in flight, SIGKILL it and start `again` at once, while
    the worker is still answering the slow ones; every capture acknowledged meanwhile."""
    load = asyncio.create_task(_load(url, tokens[0], server, seconds=0.5))
    # The slow ones go late in the load, stored just before its kill: the worker then holds
    # the database for most of their reply delay, time enough for `again` to start and find it
    # held even on a loaded machine.
    await asyncio.sleep(0.3)
    slow = asyncio.create_task(_slow_captures(url, tokens[1], 8))
    acknowledged, _ = await load
    await asyncio.to_thread(again.start, LEFTOVER_WAIT_S + 20)
    acknowledged.update(await slow)
    return acknowledged


def _both_serve(server: ServerProcess) -> None:
    """Wait for the worker to serve too: its socket takes connections only from then on."""
    assert wait_until(lambda: server.output().count("Application startup complete") == 2,
                      20), server.output()


@pytest.mark.slow
def test_a_restart_at_once_after_sigkill_of_the_main_process_always_starts(tmp_path: Path):
    # docs/running.md: "after a crash or SIGKILL, just start again", as systemd does at once. The
    # killed main process's worker holds the database until it has answered what it was answering
    # (here captures whose endpoint replies 2 s after storing) and stopped; the new server waits
    # for it rather than refusing. The other core is kept busy, as on a loaded machine.
    db = tmp_path / "restart.db"
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    server = ServerProcess(db, tmp_path / "round-0.log", args=("--workers", "2"))
    try:
        url = server.start()
        _both_serve(server)
        tokens = tuple(httpx.post(url + "/api/endpoints", json=fields).json()["token"]
                       for fields in ({"max_captures": 1_000_000},
                                      {"response": {"delay_ms": SLOW_REPLY_MS}}))
        acknowledged: dict[str, bytes] = {}
        slow_from_orphans = waited = 0
        for round_ in range(1, RESTART_ROUNDS + 1):
            again = ServerProcess(db, tmp_path / f"round-{round_}.log", args=("--workers", "2"))
            this_round = asyncio.run(_kill_and_restart(url, tokens, server, again))
            server, url = again, again.url
            _both_serve(server)
            assert len(this_round) >= 100, f"round {round_}: too little load to prove anything"
            slow_from_orphans += sum(body.startswith(b"slow ") for body in this_round.values())
            waited += "is gone; waiting up to" in again.output()
            acknowledged.update(this_round)
        # The worker answered slow captures after its main process was killed, in some rounds
        # at least, and the new server said it waited for it: the restart did happen while it
        # held the database.
        assert slow_from_orphans >= 1
        assert waited >= 1
    finally:
        busy.kill()
        busy.wait()
        server.stop()
    slow = {k: v for k, v in acknowledged.items() if v.startswith(b"slow ")}
    _assert_kept({k: v for k, v in acknowledged.items() if k not in slow},
                 _stored_bodies(db, tokens[0]))
    _assert_kept(slow, _stored_bodies(db, tokens[1]))
