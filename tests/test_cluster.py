"""HOOKSCOPE_WORKERS: several processes on one address and one database (hookscope.cluster).

Real `hookscope serve --workers 2` processes on 127.0.0.1. Which process takes a connection is
the kernel's choice (by a hash of its addresses, each process having a socket of its own);
`via_worker` makes it the worker's: fresh connections are opened until /proc shows the worker
holding the server's end of one, and the request runs on that connection.
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, closing, contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from hookscope.cluster import listen
from hookscope.cluster.channel import Channel
from tests.clirun import hookscope_process
from tests.conftest import stored_bytes
from tests.serverproc import ServerProcess, local_tls, wait_until

T = TypeVar("T")


def children(pid: int) -> list[int]:
    """The live processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def _tcp_sockets() -> list[list[str]]:
    """The rows of /proc/net/tcp: [slot, local address, remote address, state, queues, ...,
    inode, ...], addresses as hex IP:port."""
    return [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1], 16)


def _holder(inode: str, pids: tuple[int, ...]) -> int | None:
    """Which of `pids` has the socket `inode` open."""
    name = f"socket:[{inode}]"
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with suppress(OSError):  # closed meanwhile
                if os.readlink(fd) == name:
                    return pid
    return None


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Cluster:
    def __init__(self, proc: ServerProcess) -> None:
        self.proc = proc
        assert proc.proc is not None
        self.pid = proc.proc.pid
        assert wait_until(lambda: len(children(self.pid)) == 1), proc.output()
        (self.worker,) = children(self.pid)
        # Serving: a worker's socket listens only then (connected_to needs it to).
        assert wait_until(lambda: proc.output().count("Application startup complete") == 2), \
            proc.output()
        self.url = proc.url
        # Keeps its connections: whichever process took them answers.
        self.http = httpx.Client(base_url=self.url, timeout=20, verify=local_tls())

    def via_worker(self, request: Callable[[httpx.Client], T]) -> T:
        """Run `request` on a connection the worker accepted."""
        with closing(self.connected_to("worker")) as client:
            return request(client)

    def via_main(self, request: Callable[[httpx.Client], T]) -> T:
        """Run `request` on a connection the main process accepted."""
        with closing(self.connected_to("main")) as client:
            return request(client)

    def connected_to(self, process: str) -> httpx.Client:
        """A client with one connection, which `process` ("main" or "worker") accepted: fresh
        ones are opened until one is."""
        wanted = self.worker if process == "worker" else self.pid
        for _ in range(60):  # a fresh connection is the other process's half the time
            client = httpx.Client(base_url=self.url, timeout=20, verify=local_tls())
            try:
                reply = client.get("/healthz")
                assert reply.status_code == 200, reply.text
                if self.accepted_by(reply) == wanted:
                    return client
            except BaseException:
                client.close()
                raise
            client.close()
        raise AssertionError(f"no connection reached the {process} process")

    def accepted_by(self, reply: httpx.Response) -> int | None:
        """The process holding the server's end of the connection `reply` came on: answered,
        so accepted, and kept open for the next request."""
        client_port = reply.extensions["network_stream"].get_extra_info("client_addr")[1]
        server_port = httpx.URL(self.url).port
        for row in _tcp_sockets():
            if (_port(row[1]), _port(row[2])) == (server_port, client_port) and row[9] != "0":
                return _holder(row[9], (self.pid, self.worker))
        return None

    def queued_for(self, pid: int) -> int:
        """How many connections wait in the accept queue of the listening socket of `pid`."""
        port = httpx.URL(self.url).port
        for row in _tcp_sockets():
            # A listening socket's receive queue column counts the connections not yet taken.
            if row[3] == "0A" and _port(row[1]) == port and _holder(row[9], (pid,)):
                return int(row[4].split(":")[1], 16)
        raise AssertionError(f"process {pid} has no listening socket on port {port}")


@contextmanager
def clusters(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """Starts clusters; whatever is left running at the end, failed tests' included, is
    stopped, and any worker still alive after that is killed."""
    started: list[ServerProcess] = []
    running: list[Cluster] = []

    def start(name: str, *args: str, env: dict[str, str] | None = None) -> Cluster:
        proc = ServerProcess(tmp_path / f"{name}.db", tmp_path / f"{name}.log", env=env,
                             args=("--workers", "2", *args))
        started.append(proc)
        proc.start()
        running.append(Cluster(proc))
        return running[-1]

    try:
        yield start
    finally:
        workers = {c.worker for c in running}
        for running_cluster in running:
            running_cluster.http.close()
        for proc in started:
            assert proc.proc is not None
            workers.update(children(proc.proc.pid))
            proc.stop()
        for pid in workers:
            if not wait_until(lambda p=pid: not alive(p), 5):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def start_cluster(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    with clusters(tmp_path) as start:
        yield start


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with clusters(tmp_path_factory.mktemp("cluster")) as start:
        yield start("shared")


def new_endpoint(cluster: Cluster, **fields: Any) -> str:
    reply = cluster.http.post("/api/endpoints", json={"max_captures": 100_000, **fields})
    assert reply.status_code == 201, reply.text
    return str(reply.json()["token"])


def post_fresh(url: str, path: str, body: bytes, **kwargs: Any) -> httpx.Response:
    """A POST on a connection of its own, so either process may take it."""
    with httpx.Client(timeout=20, verify=local_tls()) as client:
        return client.post(url + path, content=body, **kwargs)


def test_a_worker_serves_captures_stored_byte_for_byte(cluster: Cluster):
    token = new_endpoint(cluster)
    body = bytes(range(256)) * 3 + b"\x00end"
    reply = cluster.via_worker(lambda c: c.post(f"/h/{token}/via?x=1", content=body,
                                                headers={"X-Dup": "a, b"}))
    assert reply.status_code == 200, reply.text
    capture_id = reply.headers["x-hookscope-capture"]
    assert reply.json() == {"ok": True, "id": capture_id}
    stored = cluster.http.get(f"/api/captures/{capture_id}").json()
    assert stored["path"] == f"/h/{token}/via" and stored["query"] == "x=1"
    assert ["x-dup", "a, b"] in stored["headers"]
    assert cluster.http.get(f"/api/captures/{capture_id}/body").content == body
    # And from many connections at once, wherever each lands: every one stored, in order.
    bodies = [f"capture {n}".encode() for n in range(40)]
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda b: post_fresh(cluster.url, f"/h/{token}", b), bodies))
    assert [r.status_code for r in replies] == [200] * 40
    page = cluster.http.get(f"/api/endpoints/{token}/captures", params={"limit": 100}).json()
    assert page["total"] == 41
    assert sorted(c["seq"] for c in page["captures"]) == list(range(1, 42))
    for reply, sent in zip(replies, bodies, strict=True):
        capture_id = reply.headers["x-hookscope-capture"]
        assert cluster.http.get(f"/api/captures/{capture_id}/body").content == sent


def test_sequence_numbers_and_pruning_hold_across_the_processes_writers(cluster: Cluster):
    token = new_endpoint(cluster, max_captures=10)
    sent = 0
    for _ in range(3):  # both writers take turns, each after the other's commits
        for via in (cluster.via_worker, cluster.via_main):
            assert via(lambda c: c.post(f"/h/{token}", content=b"t")).status_code == 200
            sent += 1
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda n: post_fresh(cluster.url, f"/h/{token}", b"p"),
                                range(30)))
    assert {r.status_code for r in replies} == {200}
    sent += 30
    endpoint = cluster.http.get(f"/api/endpoints/{token}").json()
    assert (endpoint["last_seq"], endpoint["capture_count"]) == (sent, 10)
    page = cluster.http.get(f"/api/endpoints/{token}/captures").json()
    assert [c["seq"] for c in page["captures"]] == list(range(sent, sent - 10, -1))
    assert endpoint["stored_bytes"] == sum(stored_bytes(c) for c in page["captures"])


def test_the_api_through_a_worker_answers_as_the_main_process_does(cluster: Cluster):
    token = new_endpoint(cluster, alias="taken-one")
    # The worker's own store answers, on the one database.
    reply = cluster.via_worker(lambda c: c.post("/api/endpoints", json={"alias": "taken-one"}))
    assert reply.status_code == 409, reply.text
    assert reply.json()["error"]["details"][0]["field"] == "alias"
    listed = cluster.via_worker(lambda c: c.get("/api/endpoints"))
    assert token in [e["token"] for e in listed.json()["endpoints"]]
    missing = cluster.via_worker(lambda c: c.get("/api/captures/c_0123"))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_an_endpoint_change_holds_in_every_process_once_answered(cluster: Cluster):
    token = new_endpoint(cluster)
    # Both processes learn the endpoint (and keep it in memory).
    cluster.via_worker(lambda c: c.post(f"/h/{token}", content=b"warm"))
    with ThreadPoolExecutor(8) as pool:
        before = list(pool.map(lambda n: post_fresh(cluster.url, f"/h/{token}", b"x"),
                               range(16)))
    assert {r.status_code for r in before} == {200}
    # Changed by the worker: in force in the main process at once, and the other way round.
    for change_in, check_in, status in ((cluster.via_worker, cluster.via_main, 202),
                                        (cluster.via_main, cluster.via_worker, 203)):
        check_in(lambda c: c.post(f"/h/{token}", content=b"warm"))  # in its memory now
        patched = change_in(lambda c, s=status: c.patch(f"/api/endpoints/{token}",
                                                        json={"response": {"status": s}}))
        assert patched.status_code == 200
        assert check_in(lambda c: c.post(f"/h/{token}", content=b"y")).status_code == status
    with ThreadPoolExecutor(8) as pool:
        after = list(pool.map(lambda n: post_fresh(cluster.url, f"/h/{token}", b"y"), range(16)))
    assert [r.status_code for r in after] == [203] * 16
    assert cluster.http.delete(f"/api/endpoints/{token}").status_code == 200
    gone = cluster.via_worker(lambda c: c.post(f"/h/{token}", content=b"z"))
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"


def test_a_rate_limit_counts_the_requests_of_every_process(cluster: Cluster):
    token = new_endpoint(cluster, rate_limit=5)
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda n: post_fresh(cluster.url, f"/h/{token}", b"r"),
                                range(40)))
    elapsed = time.monotonic() - started
    admitted = [r for r in replies if r.status_code == 200]
    refused = [r for r in replies if r.status_code == 429]
    assert len(admitted) + len(refused) == 40
    # Five at once, then five a second: in one bucket for all, not one per process.
    assert 5 <= len(admitted) <= 5 + int(5 * elapsed) + 1, (len(admitted), elapsed)
    assert all(int(r.headers["retry-after"]) >= 1 for r in refused)
    total = cluster.http.get(f"/api/endpoints/{token}").json()["capture_count"]
    assert total == len(admitted)
    # One token a minute: the main process takes it, and the worker has none left to give.
    slow = new_endpoint(cluster, rate_limit=1 / 60)
    assert cluster.via_main(lambda c: c.post(f"/h/{slow}", content=b"1")).status_code == 200
    refused = cluster.via_worker(lambda c: c.post(f"/h/{slow}", content=b"2"))
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 30


def test_wrong_tokens_count_against_their_client_in_every_process(start_cluster):
    """Ten wrong guesses in all, then one every 6 s: not ten per process."""
    running = start_cluster("guess", env={"HOOKSCOPE_TOKEN": "cluster-test-token"})
    wrong = {"Authorization": "Bearer wrong"}
    statuses: list[int] = []
    started = time.monotonic()
    # In turn through each process, until both refuse without looking at the token.
    while statuses[-2:] != [429, 429] and len(statuses) < 40:
        via = running.via_worker if len(statuses) % 2 == 0 else running.via_main
        statuses.append(via(lambda c: c.get("/api/endpoints", headers=wrong)).status_code)
    assert set(statuses) == {401, 429}, statuses
    # A throttle per process would have let 20 through before refusing in both (17 when only
    # one side told the other). One more for a refill on the way, one for a guess not yet heard.
    refills = int((time.monotonic() - started) / 6)
    assert 10 <= statuses.count(401) <= 10 + refills + 2, (statuses, refills)


async def _events(url: str, token: str, wanted: int, ready: asyncio.Event,
                  opened: list[int]) -> list[int]:
    seqs: list[int] = []
    async with httpx.AsyncClient(timeout=30, verify=local_tls()) as client, \
            client.stream("GET", f"{url}/api/endpoints/{token}/stream") as stream:
        opened.append(1)
        ready.set()
        async for line in stream.aiter_lines():
            if line.startswith("id: "):
                seqs.append(int(line[4:]))
                if len(seqs) == wanted:
                    return seqs
    return seqs


def test_live_streams_get_the_captures_of_every_process(cluster: Cluster):
    token = new_endpoint(cluster)

    async def scenario() -> list[list[int]]:
        opened: list[int] = []
        ready = asyncio.Event()
        streams = [asyncio.create_task(_events(cluster.url, token, 21, ready, opened))
                   for _ in range(6)]  # on separate connections: some land on each process
        while len(opened) < 6:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # every stream subscribed (and its process said so)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, lambda: cluster.via_worker(
            lambda c: c.post(f"/h/{token}", content=b"from the worker")))
        for n in range(20):
            await loop.run_in_executor(None, post_fresh, cluster.url, f"/h/{token}",
                                       f"{n}".encode())
        return list(await asyncio.wait_for(asyncio.gather(*streams), 30))

    for seqs in asyncio.run(scenario()):
        assert seqs == list(range(1, 22))


def test_a_live_stream_under_load_from_both_processes_misses_nothing(cluster: Cluster):
    """Events reach a stream out of order (a process's own at once, the other's through the
    main process): the stream fills every gap from the store, in order."""
    token = new_endpoint(cluster)
    total = 48 * 25

    async def scenario() -> list[list[int]]:
        opened: list[int] = []
        ready = asyncio.Event()
        streams = [asyncio.create_task(_events(cluster.url, token, total, ready, opened))
                   for _ in range(4)]
        while len(opened) < 4:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        statuses: list[int] = []

        async def sender(client: httpx.AsyncClient, count: int) -> None:
            for n in range(count):
                statuses.append((await client.post(f"{cluster.url}/h/{token}",
                                                   content=b"%d" % n)).status_code)

        # 48 connections, spread over both processes as they open, each sending in turn.
        clients = [httpx.AsyncClient(timeout=30, verify=local_tls()) for _ in range(48)]
        try:
            await asyncio.gather(*(sender(c, total // 48) for c in clients))
        finally:
            await asyncio.gather(*(c.aclose() for c in clients))
        assert statuses == [200] * total
        return list(await asyncio.wait_for(asyncio.gather(*streams), 30))

    for seqs in asyncio.run(scenario()):
        assert seqs == list(range(1, total + 1))


@pytest.mark.parametrize("waiter", ["main", "worker"])
def test_a_long_poll_wakes_for_a_capture_the_other_process_took(cluster: Cluster, waiter: str):
    token = new_endpoint(cluster)
    capture_in = cluster.via_worker if waiter == "main" else cluster.via_main
    with closing(cluster.connected_to(waiter)) as client, ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(client.get, f"/api/endpoints/{token}/captures",
                              params={"wait": 20})
        time.sleep(0.8)  # waiting
        started = time.monotonic()
        assert capture_in(lambda c: c.post(f"/h/{token}", content=b"wake")).status_code == 200
        reply = waiting.result(timeout=30)
    assert time.monotonic() - started < 10
    assert [c["seq"] for c in reply.json()["captures"]] == [1]


def test_each_process_takes_a_share_of_new_connections_and_none_is_lost(cluster: Cluster):
    """A listening socket per process: connections the kernel gives a stopped process wait
    for it rather than going to the other, and are answered once it goes on."""
    host, port = httpx.URL(cluster.url).host, httpx.URL(cluster.url).port
    request = b"GET /healthz HTTP/1.1\r\nHost: hookscope\r\nConnection: close\r\n\r\n"
    with ExitStack() as opened:
        os.kill(cluster.worker, signal.SIGSTOP)
        try:
            conns = [opened.enter_context(socket.create_connection((host, port), timeout=10))
                     for _ in range(24)]
            for conn in conns:
                conn.sendall(request)

            def answered() -> list[socket.socket]:
                return select.select(conns, [], [], 0)[0]

            # Settled once each is answered or waits for the stopped worker: none goes to the
            # main process instead, however long it runs.
            assert wait_until(lambda: len(answered()) + cluster.queued_for(cluster.worker)
                              == len(conns)), (len(answered()), cluster.queued_for(cluster.worker))
            # Each connection is the worker's about half the time (all 24 on one side: 1 in 8M).
            assert 0 < len(answered()) < len(conns)
        finally:
            os.kill(cluster.worker, signal.SIGCONT)
        for conn in conns:
            reply = b""
            while chunk := conn.recv(65536):
                reply += chunk
            assert reply.startswith(b"HTTP/1.1 200"), reply[:200]


@pytest.mark.parametrize("holder", ["a plain socket", "another group of processes"])
def test_a_port_in_use_is_refused_with_a_clear_message(tmp_path: Path, holder: str):
    # Another Hookscope on another database, say: sharing its port would split the traffic.
    with ExitStack() as held:
        if holder == "a plain socket":
            taken = held.enter_context(socket.socket())
            taken.bind(("127.0.0.1", 0))
            taken.listen()
        else:
            group = listen("127.0.0.1", 0, 2, 16)
            for sock in group:
                held.enter_context(sock)
            taken = group[0]
        port = taken.getsockname()[1]
        # A process of its own: were the port taken, it would serve until the timeout.
        result = hookscope_process("serve", "--workers", "2", "--port", str(port),
                                   "--db", str(tmp_path / "refused.db"), server_url=None,
                                   timeout=20)
    assert result.returncode == 1
    assert result.stderr.startswith(f"hookscope: cannot listen on 127.0.0.1:{port}: "), \
        result.stderr
    assert "Traceback" not in result.stderr


def test_a_worker_that_dies_is_replaced_and_the_new_one_knows_what_is_watched(start_cluster):
    running = start_cluster("restart")
    token = new_endpoint(running)
    with closing(running.connected_to("main")) as client, ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(client.get, f"/api/endpoints/{token}/captures",
                              params={"wait": 25})
        time.sleep(0.8)  # waiting, and the worker told the endpoint is watched
        dead = running.worker
        os.kill(dead, signal.SIGKILL)
        assert wait_until(lambda: children(running.pid) not in ([], [dead]), 15), \
            running.proc.output()
        (running.worker,) = children(running.pid)
        assert wait_until(lambda: running.proc.output().count(
            "Application startup complete") == 3, 15), running.proc.output()
        # The new worker learnt at start that the endpoint is watched, so its capture
        # wakes the long-poll waiting in the main process.
        reply = running.via_worker(lambda c: c.post(f"/h/{token}", content=b"new worker"))
        assert reply.status_code == 200, reply.text
        taken = time.monotonic()
        woken = waiting.result(timeout=30)
        assert time.monotonic() - taken < 10  # woken, not the wait running out
    assert [c["seq"] for c in woken.json()["captures"]] == [1]
    log = running.proc.output()
    # It had served under 30 s: a pause first.
    assert f"(pid {dead}) died (exit code -9); a new one starts in 1 s" in log, log
    running.proc.stop()
    assert wait_until(lambda: not alive(running.worker)), "the new worker outlived the main"


def test_a_worker_stopped_on_its_own_is_not_started_again(start_cluster):
    running = start_cluster("leave")
    os.kill(running.worker, signal.SIGTERM)
    assert wait_until(lambda: f"worker 1 (pid {running.worker}) stopped on its own"
                      in running.proc.output()), running.proc.output()
    time.sleep(1.5)  # a restart of one that died this young would come after 1 s
    assert children(running.pid) == []
    token = new_endpoint(running)  # the main process serves alone
    assert post_fresh(running.url, f"/h/{token}", b"alone").status_code == 200
    running.proc.stop()
    assert "died" not in running.proc.output()


def test_sigterm_stops_every_process(start_cluster):
    running = start_cluster("term")
    token = new_endpoint(running)
    assert running.via_worker(lambda c: c.post(f"/h/{token}", content=b"a")).status_code == 200
    assert running.proc.stop() in (0, -15)
    assert wait_until(lambda: not alive(running.worker)), "the worker outlived the main process"
    log = running.proc.output()
    assert "Traceback" not in log, log


def test_workers_stop_when_the_main_process_is_killed(start_cluster):
    running = start_cluster("kill")
    running.proc.kill()
    assert wait_until(lambda: not alive(running.worker)), "an orphaned worker kept serving"
    assert "the main Hookscope process is gone" in running.proc.output()


# -- the channel between processes --------------------------------------------------------------

async def _pair(calls: dict[str, Any], notes: dict[str, Any]) -> tuple[Channel, Channel]:
    loop = asyncio.get_running_loop()
    left_sock, right_sock = socket.socketpair()
    left, right = Channel(), Channel(calls, notes)
    await loop.create_unix_connection(lambda: left, sock=left_sock)
    await loop.create_unix_connection(lambda: right, sock=right_sock)
    return left, right


def test_the_channel_carries_results_errors_and_notes_in_order():
    seen: list[Any] = []

    async def echo(value: Any, *, twice: bool = False) -> Any:
        seen.append(("call", len(value) if isinstance(value, bytes) else value))
        return value * 2 if twice else value

    async def gone() -> None:
        raise LookupError("endpoint 7 no longer exists")

    async def unpicklable() -> None:
        class Local(Exception):
            pass
        raise Local("made here")

    async def hang() -> None:
        await asyncio.Event().wait()

    async def scenario() -> None:
        left, right = await _pair({"echo": echo, "gone": gone, "hang": hang,
                                   "unpicklable": unpicklable},
                                  {"mark": lambda value: seen.append(("note", value))})
        big = os.urandom(3 * 1024 * 1024)  # arrives in many reads
        left.note("mark", 1)
        results = await asyncio.gather(left.call("echo", big), left.call("echo", "ab", twice=True))
        assert results == [big, "abab"]
        assert seen[0] == ("note", 1)  # a note is handled before anything sent after it
        with pytest.raises(LookupError, match="endpoint 7 no longer exists"):
            await left.call("gone")
        with pytest.raises(RuntimeError, match="Local: made here"):
            await left.call("unpicklable")
        with pytest.raises(KeyError):
            await left.call("no such call")
        pending = asyncio.ensure_future(left.call("hang"))
        await asyncio.sleep(0.05)
        right.close()  # a call waiting for its answer fails, and so does every later one
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(pending, 5)
        with pytest.raises(ConnectionError):
            await left.call("echo", 1)
        left.note("mark", 2)  # nothing, and no error: the other end is gone
        left.close()

    asyncio.run(scenario())
    assert ("note", 2) not in seen
