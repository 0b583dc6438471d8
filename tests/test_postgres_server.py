"""`hookscope serve --db postgresql://...` as a real process on a fresh database: the same API,
captures that survive a restart and a SIGKILL under load, and what is not built yet refused
plainly; two processes on one database as two hosts would run them (docs/running.md, "On
PostgreSQL"), one of them killed under load, or PostgreSQL itself restarted under load (on a
server of the test's own). The store's own promises are in test_store_contract.py, on both
backends."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.pg import OwnServer, drop_database, fresh_database
from tests.serverproc import ServerProcess, local_tls

SENDERS = 32
CLIENT_TIMEOUT_S = 10  # a capture request unanswered by then counts as a hang

pytestmark = pytest.mark.postgresql


@pytest.fixture
def database() -> Iterator[str]:
    url = asyncio.run(fresh_database())
    yield url
    asyncio.run(drop_database(url))


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[OwnServer]:
    """A PostgreSQL server of this test's own, to stop and start (never the shared one)."""
    server = OwnServer(tmp_path)
    try:
        server.start()
        yield server
    finally:
        server.remove()


def _serve(database: str, folder: Path, name: str) -> ServerProcess:
    server = ServerProcess(database, folder / f"{name}.log")  # type: ignore[arg-type]
    server.start()
    return server


def _two_servers(database: str, folder: Path) -> tuple[ServerProcess, ServerProcess]:
    """A and B on one database, as on two hosts, started side by side."""
    a, b = (ServerProcess(database, folder / f"{name}.log")  # type: ignore[arg-type]
            for name in ("a", "b"))
    try:
        with ThreadPoolExecutor(2) as starting:
            list(starting.map(ServerProcess.start, (a, b)))
    except BaseException:
        a.stop()
        b.stop()
        raise
    return a, b


def _endpoint(url: str) -> str:
    """A new endpoint's token; it keeps every capture of a load."""
    return str(httpx.post(url + "/api/endpoints",
                          json={"max_captures": 1_000_000}).json()["token"])


@dataclass
class Answer:
    """One capture request of a load: where it went, its body, and what came back."""

    server: ServerProcess
    body: bytes
    at: float  # time.monotonic() when it was answered (or given up)
    status: int | None = None  # None: no answer (refused, cut off, or not within the timeout)
    capture: str | None = None
    error: dict[str, Any] | None = None  # the JSON error shape's "error", for a non-2xx


async def _load(servers: list[ServerProcess], token: str,
                meanwhile: Callable[[list[Answer]], Awaitable[None]]) -> list[Answer]:
    """SENDERS senders, spread over `servers`, each on a keep-alive connection of its own, post
    numbered bodies to the endpoint `token` until `meanwhile(answers)` returns. A sender that
    gets no answer stops; one answered 503 waits a moment and goes on, as a webhook sender
    retries."""
    answers: list[Answer] = []
    stop = asyncio.Event()

    async def sender(n: int) -> None:
        server = servers[n % len(servers)]
        async with httpx.AsyncClient(base_url=server.url, timeout=CLIENT_TIMEOUT_S,
                                     verify=local_tls()) as client:
            i = 0
            while not stop.is_set():
                body = f"sender {n} request {i}".encode()
                i += 1
                try:
                    reply = await client.post(f"/h/{token}", content=body)
                except httpx.HTTPError:
                    answers.append(Answer(server, body, time.monotonic()))
                    return
                answers.append(Answer(server, body, time.monotonic(), reply.status_code,
                                      reply.headers.get("x-hookscope-capture"), _error(reply)))
                if not reply.is_success:
                    await asyncio.sleep(0.05)

    senders = [asyncio.create_task(sender(n)) for n in range(SENDERS)]
    try:
        await meanwhile(answers)
    finally:
        stop.set()
        await asyncio.gather(*senders)
    return answers


def _error(reply: httpx.Response) -> dict[str, Any] | None:
    if reply.is_success:
        return None
    try:
        return dict(reply.json()["error"])
    except (ValueError, KeyError, TypeError):
        return {"not the error shape": reply.text}


def _acknowledged(answers: list[Answer], server: ServerProcess | None = None,
                  after: float = 0) -> list[Answer]:
    return [x for x in answers if x.status is not None and 200 <= x.status < 300
            and x.at > after and (server is None or x.server is server)]


async def _until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def _assert_kept(answers: list[Answer], database: str, token: str) -> None:
    """Every acknowledged capture is in the database with its exact body, and the endpoint's
    seq runs from 1 without a gap."""

    async def stored() -> list[Any]:
        conn = await asyncpg.connect(database)
        try:
            return list(await conn.fetch(
                "SELECT c.id, c.seq, c.body FROM captures c JOIN endpoints e ON "
                "e.id = c.endpoint_id WHERE e.token = $1 ORDER BY c.seq", token))
        finally:
            await conn.close()

    rows = asyncio.run(stored())
    bodies = {row["id"]: bytes(row["body"]) for row in rows}
    acknowledged = _acknowledged(answers)
    lost = [x for x in acknowledged if x.capture not in bodies]
    assert not lost, f"{len(lost)} of {len(acknowledged)} acknowledged captures lost"
    changed = [x for x in acknowledged if bodies[x.capture] != x.body]  # type: ignore[index]
    assert not changed, f"{len(changed)} bodies changed"
    assert [row["seq"] for row in rows] == list(range(1, len(rows) + 1))  # gap-free


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
def test_no_acknowledged_capture_is_lost_when_one_of_two_servers_is_killed(database, tmp_path):
    a, b = _two_servers(database, tmp_path)
    try:
        token = _endpoint(a.url)
        killed_at = 0.0

        async def kill_a(answers: list[Answer]) -> None:
            nonlocal killed_at
            assert await _until(lambda: len(_acknowledged(answers)) >= 300, 30)
            await asyncio.to_thread(a.kill)  # SIGKILL while its senders are mid-request
            killed_at = time.monotonic()
            assert await _until(lambda: len(_acknowledged(answers, b, after=killed_at)) >= 100,
                                20), "B stopped serving when A was killed"

        answers = asyncio.run(_load([a, b], token, kill_a))
    finally:
        a.stop()
        b.stop()
    assert any(x.status is None for x in answers if x.server is a)  # the kill cut A off
    assert {x.status for x in answers if x.server is b} == {200}  # B never failed one
    _assert_kept(answers, database, token)


def test_workers_are_refused_with_the_way_to_run_several_processes(database, tmp_path):
    for db, says in ((database, "on PostgreSQL, start each process on its own"),
                     (str(tmp_path / "one.db"), "several processes need a PostgreSQL --db")):
        done = subprocess.run([sys.executable, "-m", "hookscope", "serve", "--port", "0", "--db",
                               db, "--workers", "2"], capture_output=True, text=True,
                              timeout=30)
        assert done.returncode == 1
        assert says in done.stderr and "hookscope serve --reuse-port" in done.stderr
        assert "Traceback" not in done.stderr


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
    a, b = _two_servers(database, tmp_path)
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
    a, b = _two_servers(database, tmp_path)
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


def test_a_viewer_that_moves_to_another_server_with_last_event_id_misses_nothing(database,
                                                                                 tmp_path):
    a, b = _two_servers(database, tmp_path)
    try:
        token = _endpoint(a.url)
        ids = {}  # seq -> capture id, as each capture was answered

        def capture(server: ServerProcess, seq: int) -> None:
            reply = httpx.post(f"{server.url}/h/{token}", content=f"capture {seq}".encode())
            assert reply.status_code == 200
            ids[seq] = reply.headers["x-hookscope-capture"]

        for seq in (1, 2, 3):
            capture(a, seq)
        with httpx.stream("GET", f"{a.url}/api/endpoints/{token}/stream?after=0",
                          timeout=10) as stream:
            for line in stream.iter_lines():
                if line == "id: 3":
                    break  # the viewer leaves A here
        for seq, server in ((4, b), (5, a), (6, b)):  # taken while it moves
            capture(server, seq)
        seen: list[tuple[int, str]] = []
        with httpx.stream("GET", f"{b.url}/api/endpoints/{token}/stream",
                          headers={"Last-Event-ID": "3"}, timeout=10) as stream:
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    event = json.loads(line.removeprefix("data:"))
                    seen.append((event["seq"], event["id"]))
                    if event["seq"] == 6:
                        capture(a, 7)  # live from A now, through LISTEN/NOTIFY
                    if event["seq"] == 7:
                        break
        assert seen == [(seq, ids[seq]) for seq in (4, 5, 6, 7)]
    finally:
        a.stop()
        b.stop()


OUTAGE_S = 1.5  # PostgreSQL is down this long, mid-load
RECOVERED_WITHIN_S = 10


@pytest.mark.slow
def test_restarting_postgresql_mid_load_answers_503_never_a_false_2xx_and_both_recover(
        own_postgres, tmp_path):
    a, b = _two_servers(own_postgres.url, tmp_path)
    try:
        token = _endpoint(a.url)
        # Captured through A only, so B keeps no copy of it: B looks it up in the database.
        watched = _endpoint(a.url)
        probes: list[httpx.Response] = []
        seen: list[int] = []  # the seqs a stream on B, open across the restart, gets

        async def restart(answers: list[Answer]) -> None:
            async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT_S, verify=local_tls()) as client, \
                    client.stream("GET", f"{b.url}/api/endpoints/{watched}/stream?after=0") as s:
                viewer = asyncio.ensure_future(_follow(s, seen))
                try:
                    assert await _heard(client, a, watched, seen)
                    assert await _until(lambda: len(_acknowledged(answers)) >= 200, 30)
                    await asyncio.to_thread(own_postgres.crash)  # every connection cut mid-load
                    probes.append(await client.post(f"{b.url}/h/{watched}", content=b"probe"))
                    probes.append(await client.get(f"{b.url}/api/endpoints/{watched}/captures"))
                    await asyncio.sleep(OUTAGE_S)
                    await asyncio.to_thread(own_postgres.start)
                    up = time.monotonic()
                    assert await _until(lambda: all(_acknowledged(answers, server, after=up)
                                                    for server in (a, b)), RECOVERED_WITHIN_S), \
                        "a server did not store captures again after PostgreSQL came back"
                    # B listens again, and a capture A took meanwhile (B's listening connection
                    # comes back after A's writer, as here) still reaches the stream on B.
                    assert await _heard(client, a, watched, seen), "B no longer hears of A"
                finally:
                    viewer.cancel()

        answers = asyncio.run(_load([a, b], token, restart))
    finally:
        a.stop()
        b.stop()
    unanswered = [x for x in answers if x.status is None]
    assert not unanswered, f"{len(unanswered)} capture requests got no answer in time"
    refused = [x for x in answers if x.status == 503]
    assert {x.server.url for x in refused} == {a.url, b.url}, "the outage was not noticed"
    assert {x.status for x in answers} == {200, 503}
    assert all(x.error is not None and x.error["code"] == "unavailable"
               and "NOT captured" in x.error["message"] for x in refused), refused[0].error
    # A capture for an endpoint B had to look up, and the API: a 503 too, not a 500.
    assert [(r.status_code, r.json()["error"]["code"]) for r in probes] == [
        (503, "unavailable"), (503, "unavailable")]
    assert "database cannot be reached" in probes[1].json()["error"]["message"]
    _assert_kept(answers, own_postgres.url, token)
    assert seen == [1, 2]  # one before the outage, one after: none missed, none twice


async def _follow(stream: httpx.Response, seen: list[int]) -> None:
    async for line in stream.aiter_lines():
        if line.startswith("id:"):
            seen.append(int(line.removeprefix("id:")))


async def _heard(client: httpx.AsyncClient, sender: ServerProcess, token: str,
                 seen: list[int]) -> bool:
    """Whether the stream behind `seen` gets an event, within RECOVERED_WITHIN_S, for one
    capture sent to `sender`."""
    before = len(seen)
    assert (await client.post(f"{sender.url}/h/{token}", content=b"watched")).status_code == 200
    return await _until(lambda: len(seen) > before, RECOVERED_WITHIN_S)


def test_processes_started_with_reuse_port_share_one_port(database, tmp_path):
    """docs/running.md's way to run several processes on one host: each `hookscope serve
    --reuse-port` on the same port, the kernel spreading connections among them."""
    logged = {"HOOKSCOPE_ACCESS_LOG": "1"}
    first = ServerProcess(database, tmp_path / "first.log", env=logged, args=("--reuse-port",))
    url = first.start()
    port = url.rsplit(":", 1)[1]
    second = ServerProcess(database, tmp_path / "second.log", env=logged,
                           args=("--port", port, "--reuse-port"))
    try:
        assert second.start() == url
        token = httpx.post(url + "/api/endpoints", json={}).json()["token"]
        for n in range(40):  # a connection each: the kernel picks a process per connection
            assert httpx.post(f"{url}/h/{token}", content=b"%d" % n).status_code == 200
        captures = httpx.get(f"{url}/api/endpoints/{token}/captures?limit=100").json()["captures"]
        assert sorted(c["seq"] for c in captures) == list(range(1, 41))
        for server in (first, second):
            assert f"POST /h/{token} HTTP/1.1" in server.output(), server.output()
    finally:
        second.stop()
        first.stop()
