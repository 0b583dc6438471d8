"""`hookscope serve --db postgresql://...` as a real process on a fresh database: the same API,
captures that survive a restart and a SIGKILL under load, and what is not built yet refused
plainly. The store's own promises are in test_store_contract.py, on both backends."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.pg import drop_database, fresh_database
from tests.serverproc import ServerProcess

pytestmark = pytest.mark.postgresql


@pytest.fixture
def database() -> Iterator[str]:
    url = asyncio.run(fresh_database())
    yield url
    asyncio.run(drop_database(url))


def _serve(database: str, folder: Path, name: str) -> ServerProcess:
    server = ServerProcess(database, folder / f"{name}.log")  # type: ignore[arg-type]
    server.start()
    return server


def test_a_server_on_postgresql_captures_streams_and_keeps_after_a_restart(database, tmp_path):
    server = _serve(database, tmp_path, "first")
    try:
        endpoint = httpx.post(server.url + "/api/endpoints", json={"alias": "on-pg"}).json()
        body = bytes(range(256))
        for i in range(3):
            reply = httpx.post(f"{server.url}/h/on-pg/n{i}?q={i}", content=body,
                               headers={"X-Dup": "1", "x-dup": "2"})
            assert reply.status_code == 200
        with httpx.stream("GET", f"{server.url}/api/endpoints/on-pg/stream?after=1") as stream:
            lines = []
            for line in stream.iter_lines():
                lines.append(line)
                if line.startswith("id: 3"):
                    break
        assert [line for line in lines if line.startswith("id:")] == ["id: 2", "id: 3"]
        found = httpx.get(f"{server.url}/api/endpoints/on-pg/captures?q=n1").json()["captures"]
        assert [c["seq"] for c in found] == [2]
    finally:
        server.stop()
    assert "Application shutdown complete" in server.output()  # the store closed cleanly
    again = _serve(database, tmp_path, "second")
    try:
        captures = httpx.get(f"{again.url}/api/endpoints/on-pg/captures").json()["captures"]
        assert [c["seq"] for c in captures] == [3, 2, 1]
        first = httpx.get(f"{again.url}/api/captures/{captures[2]['id']}/body")
        assert first.content == body
        full = httpx.get(f"{again.url}/api/captures/{captures[2]['id']}").json()
        assert [h for h in full["headers"] if h[0] == "x-dup"] == [["x-dup", "1"], ["x-dup", "2"]]
        assert httpx.post(f"{again.url}/h/{endpoint['token']}", content=b"x").status_code == 200
        assert httpx.get(f"{again.url}/api/endpoints/on-pg").json()["last_seq"] == 4
    finally:
        again.stop()


@pytest.mark.slow
def test_no_acknowledged_capture_is_lost_when_the_server_is_killed(database, tmp_path):
    server = _serve(database, tmp_path, "killed")
    token = httpx.post(server.url + "/api/endpoints", json={}).json()["token"]
    acknowledged: list[str] = []
    stop = threading.Event()

    def send() -> None:
        with httpx.Client(timeout=5) as client:
            while not stop.is_set():
                try:
                    reply = client.post(f"{server.url}/h/{token}", content=b'{"n": 1}')
                except httpx.HTTPError:
                    return
                if reply.status_code == 200:
                    acknowledged.append(reply.headers["x-hookscope-capture"])

    senders = [threading.Thread(target=send) for _ in range(16)]
    for thread in senders:
        thread.start()
    try:
        while len(acknowledged) < 300:
            threading.Event().wait(0.05)
        server.kill()
    finally:
        stop.set()
        for thread in senders:
            thread.join(10)

    async def stored() -> tuple[set[str], list[int]]:
        conn = await asyncpg.connect(database)
        try:
            rows = await conn.fetch("SELECT id, seq FROM captures ORDER BY seq")
        finally:
            await conn.close()
        return {row["id"] for row in rows}, [row["seq"] for row in rows]

    ids, seqs = asyncio.run(stored())
    assert set(acknowledged) <= ids, f"{len(set(acknowledged) - ids)} acknowledged, not stored"
    assert seqs == list(range(1, len(seqs) + 1))  # gap-free


def test_several_workers_on_postgresql_are_refused_plainly(database, tmp_path):
    done = subprocess.run([sys.executable, "-m", "hookscope", "serve", "--port", "0", "--db",
                           database, "--workers", "2"], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 1
    assert "on PostgreSQL start several `hookscope serve` processes instead" in done.stderr


def test_the_startup_line_leaves_the_password_out(database, tmp_path):
    with_password = database.replace("postgresql://postgres@",
                                     "postgresql://postgres:not-printed@")
    server = _serve(with_password, tmp_path, "password")
    try:
        assert "not-printed" not in server.output()
        assert "postgres:***@" in server.output()
    finally:
        server.stop()


def test_two_servers_on_one_database_see_each_others_captures_and_changes(database, tmp_path):
    a = _serve(database, tmp_path, "a")
    b = _serve(database, tmp_path, "b")
    try:
        token = httpx.post(a.url + "/api/endpoints", json={"alias": "shared"}).json()["token"]
        assert httpx.post(f"{b.url}/h/shared", content=b"warm").status_code == 200  # B knows it
        seen: list[str] = []
        ready = threading.Event()

        def watch() -> None:
            with httpx.stream("GET", f"{b.url}/api/endpoints/shared/stream", timeout=10) as s:
                ready.set()
                for line in s.iter_lines():
                    if line.startswith("id:"):
                        seen.append(line)
                        if len(seen) == 3:
                            return

        watcher = threading.Thread(target=watch)
        watcher.start()
        assert ready.wait(10)
        threading.Event().wait(0.3)  # the stream is subscribed once its head is sent
        for _ in range(3):
            assert httpx.post(f"{a.url}/h/{token}", content=b"from A").status_code == 200
        watcher.join(10)
        assert seen == ["id: 2", "id: 3", "id: 4"]
        # A change made through A is in force on B, which had the endpoint in memory.
        patched = httpx.patch(f"{a.url}/api/endpoints/shared",
                              json={"response": {"status": 202}})
        assert patched.status_code == 200
        for _ in range(50):
            if httpx.post(f"{b.url}/h/shared", content=b"x").status_code == 202:
                break
            threading.Event().wait(0.05)
        else:
            raise AssertionError("B kept the old reply")
        # A long-poll on B wakes for a capture taken by A.
        waited: list[httpx.Response] = []
        last = httpx.get(f"{b.url}/api/endpoints/shared").json()["last_seq"]
        poll = threading.Thread(target=lambda: waited.append(httpx.get(
            f"{b.url}/api/endpoints/shared/captures?after={last}&wait=10", timeout=15)))
        poll.start()
        threading.Event().wait(0.3)
        httpx.post(f"{a.url}/h/shared", content=b"wake")
        poll.join(15)
        assert [c["seq"] for c in waited[0].json()["captures"]] == [last + 1]
    finally:
        a.stop()
        b.stop()


def test_deleting_an_endpoint_through_one_server_ends_its_streams_on_another(database, tmp_path):
    a = _serve(database, tmp_path, "a")
    b = _serve(database, tmp_path, "b")
    try:
        httpx.post(a.url + "/api/endpoints", json={"alias": "doomed"})
        ended = threading.Event()
        opened = threading.Event()

        def watch() -> None:
            with httpx.stream("GET", f"{b.url}/api/endpoints/doomed/stream", timeout=20) as s:
                opened.set()
                for _ in s.iter_lines():
                    pass
            ended.set()  # the server ended it

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        assert opened.wait(10)
        threading.Event().wait(0.3)
        assert httpx.delete(f"{a.url}/api/endpoints/doomed").status_code == 200
        assert ended.wait(10), "B kept the deleted endpoint's stream open"
        assert httpx.get(f"{b.url}/api/endpoints/doomed").status_code == 404
        assert httpx.post(f"{b.url}/h/doomed", content=b"x").status_code == 404
    finally:
        a.stop()
        b.stop()
