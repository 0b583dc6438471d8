"""The live stream against a real uvicorn on 127.0.0.1 (ASGITransport buffers whole responses, so
an endless stream needs a socket): order, resume, many subscribers, slow ones, shutdown."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from sse_starlette.sse import AppStatus

from hookscope.live.local import LocalHub
from hookscope.main import create_app
from hookscope.settings import Settings
from tests.conftest import BASE
from tests.serverproc import ServerProcess, local_tls, wait_until


class ThreadedServer:
    """uvicorn in a thread on a free port, the way httpx's own tests run a server."""

    def __init__(self, app) -> None:
        self.app = app
        self.config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                     lifespan="on")
        self.server = uvicorn.Server(self.config)
        self.thread: threading.Thread | None = None
        self.url = ""

    def __enter__(self) -> ThreadedServer:
        sock = self.config.bind_socket()
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]},
                                       daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        assert self.thread is not None
        self.thread.join(15)
        AppStatus.should_exit = False


@pytest.fixture
def live(database: str) -> Iterator[ThreadedServer]:
    app = create_app(Settings(db=database))
    with ThreadedServer(app) as server:
        yield server


def _endpoint(url: str) -> str:
    return httpx.post(url + "/api/endpoints", json={}, verify=local_tls()).json()["token"]


def _send(url: str, token: str, n: int, start: int = 0) -> list[str]:
    with httpx.Client(verify=local_tls()) as client:
        return [client.post(f"{url}/h/{token}", content=f"body {start + i}").headers[
            "x-hookscope-capture"] for i in range(n)]


def read_events(response: httpx.Response, count: int) -> list[dict]:
    """Parse the next `count` SSE events off a streaming response (its lines can be iterated
    only once, so the iterator is kept on the response between calls)."""
    lines = getattr(response, "sse_lines", None)
    if lines is None:
        lines = response.sse_lines = response.iter_lines()
    events, current = [], {}
    for line in lines:
        if line == "":
            if "data" in current:
                events.append(current)
                if len(events) == count:
                    return events
            current = {}
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            current[field] = value[1:] if value.startswith(" ") else value
    return events


def _stream(url: str, token: str, **headers: str):
    return httpx.stream("GET", f"{url}/api/endpoints/{token}/stream", headers=headers,
                        timeout=httpx.Timeout(10, read=10), verify=local_tls())


def test_replays_from_the_start_in_order_then_goes_live(live):
    token = _endpoint(live.url)
    ids = _send(live.url, token, 3)
    with _stream(live.url, token, **{"Last-Event-ID": "0"}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        first = read_events(response, 3)
        ids += _send(live.url, token, 2, start=3)
        later = read_events(response, 2)
    events = first + later
    assert [e["event"] for e in events] == ["capture"] * 5
    assert [e["id"] for e in events] == ["1", "2", "3", "4", "5"]
    summaries = [json.loads(e["data"]) for e in events]
    assert [s["id"] for s in summaries] == ids
    assert summaries[0]["endpoint"] == token and "body_text" not in summaries[0]


def test_resume_with_last_event_id_has_no_gap_and_no_duplicate(live):
    token = _endpoint(live.url)
    _send(live.url, token, 4)
    with _stream(live.url, token, **{"Last-Event-ID": "0"}) as response:
        seen = read_events(response, 2)  # then the connection drops
    _send(live.url, token, 3, start=4)  # sent while disconnected
    with _stream(live.url, token, **{"Last-Event-ID": seen[-1]["id"]}) as response:
        resumed = read_events(response, 5)
        _send(live.url, token, 1, start=7)
        resumed += read_events(response, 1)
    assert [e["id"] for e in seen + resumed] == [str(n) for n in range(1, 9)]


def test_without_a_resume_point_only_new_captures_arrive(live):
    token = _endpoint(live.url)
    _send(live.url, token, 2)
    with _stream(live.url, token) as response:
        time.sleep(0.2)
        _send(live.url, token, 1, start=2)
        [event] = read_events(response, 1)
    assert event["id"] == "3"


def test_many_subscribers_each_get_every_capture(live):
    token = _endpoint(live.url)
    results: list[list[str]] = []

    def watch() -> None:
        with _stream(live.url, token, **{"Last-Event-ID": "0"}) as response:
            results.append([e["id"] for e in read_events(response, 6)])

    watchers = [threading.Thread(target=watch) for _ in range(20)]
    for thread in watchers:
        thread.start()
    _send(live.url, token, 6)
    for thread in watchers:
        thread.join(20)
    assert len(results) == 20
    assert all(ids == ["1", "2", "3", "4", "5", "6"] for ids in results)


def test_bad_resume_point_is_400_in_the_error_shape(live):
    token = _endpoint(live.url)
    response = httpx.get(f"{live.url}/api/endpoints/{token}/stream",
                         headers={"Last-Event-ID": "yesterday"})
    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["field"] == "Last-Event-ID"
    assert httpx.get(f"{live.url}/api/endpoints/nope/stream").status_code == 404


@pytest.mark.anyio
async def test_a_waiting_subscriber_gets_items_in_order_and_ends_when_dropped():
    hub = LocalHub(queue_size=8)
    subscription = hub.subscribe(7)
    received = []

    async def read() -> None:
        async for seq, frame in subscription:
            received.append((seq, frame))

    reader = asyncio.create_task(read())
    await asyncio.sleep(0)  # the reader is now waiting on an empty subscription
    hub.publish(7, 1, '{"a": 1}')
    hub.publish(7, 2, '{"a": 2}')
    hub.publish(8, 3, '{"other": true}')  # another endpoint: not ours
    await asyncio.sleep(0)
    hub.close()
    await asyncio.wait_for(reader, 2)
    assert received == [(1, b'event: capture\nid: 1\ndata: {"a": 1}\n\n'),
                        (2, b'event: capture\nid: 2\ndata: {"a": 2}\n\n')]
    assert hub.count() == 0


@pytest.mark.anyio
async def test_one_timer_sends_keep_alives_to_quiet_streams_only():
    hub = LocalHub(keepalive_s=0.1)  # a tick every 0.05 s
    quiet = hub.subscribe(1, keepalive=True)
    busy = hub.subscribe(1, keepalive=True)
    poll = hub.subscribe(1)  # a long-poll: no keep-alives
    for seq in range(1, 9):
        await asyncio.sleep(0.02)
        busy.offer((seq, b"frame"))
    assert quiet.items and all(seq is None for seq, _ in quiet.items)  # one per quiet period
    assert quiet.items[0] == (None, b": keep-alive\n\n")
    assert [seq for seq, _ in busy.items] == list(range(1, 9))
    assert not poll.items
    hub.close()  # the ticker stops with the streams
    assert hub._timer is None


@pytest.mark.anyio
async def test_a_quiet_stream_is_never_silent_longer_than_the_keep_alive_limit():
    # docs/api.md: a stream is never silent for more than 15 s; here the limit is 1 s.
    hub = LocalHub(keepalive_s=1.0)
    stream = hub.subscribe(1, keepalive=True)
    started = asyncio.get_running_loop().time()
    await asyncio.sleep(0.55)  # just after the first tick: quiet for the second only from now
    stream.offer((1, b"frame"))
    offered = asyncio.get_running_loop().time()
    while not any(seq is None for seq, _ in stream.items):
        await stream.changed()
    silent = asyncio.get_running_loop().time() - offered
    assert 0.4 < silent < 1.0 + 0.3, (silent, offered - started)
    hub.close()


@pytest.mark.anyio
async def test_a_stream_of_an_endpoint_deleted_before_it_subscribed_ends_at_once(store):
    """The request looked the endpoint up, then it was deleted before the stream subscribed:
    nothing would ever end that stream, so it must see the deletion itself."""
    from hookscope.models import now_us
    from hookscope.routes.stream import _last_seq

    endpoint = await store.create_endpoint({"created_at": now_us(), "max_captures": 10})
    assert await _last_seq(store, endpoint) == 0
    await store.delete_endpoint(endpoint)
    assert await _last_seq(store, endpoint) is None


@pytest.mark.anyio
async def test_a_slow_subscriber_is_dropped_without_touching_captures(settings, store):
    hub = LocalHub(queue_size=3)
    app = create_app(settings, store=store, hub=hub)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url=BASE) as client:
        token = (await client.post("/api/endpoints")).json()["token"]
        endpoint = await store.get_endpoint(token)
        slow = hub.subscribe(endpoint.id)  # never reads
        fast = hub.subscribe(endpoint.id)
        seen = []

        async def read_fast() -> None:
            async for seq, _ in fast:
                seen.append(seq)
                if seq == 10:
                    return

        reader = asyncio.create_task(read_fast())
        statuses = []
        for i in range(10):
            statuses.append((await client.post(f"/h/{token}", content=str(i))).status_code)
            await asyncio.sleep(0)
        await asyncio.wait_for(reader, 5)
        assert statuses == [200] * 10
        assert slow.dropped and not fast.dropped
        # What the slow one had waiting is discarded: its stream ends, nothing more comes.
        assert [item async for item in slow] == []
        assert seen == list(range(1, 11))
        assert hub.count(endpoint.id) == 1
        listing = (await client.get(f"/api/endpoints/{token}/captures?limit=100")).json()
        assert listing["total"] == 10


def test_open_streams_do_not_hold_up_shutdown(server_database, tmp_path):
    proc = ServerProcess(server_database, tmp_path / "shut.log")
    url = proc.start()
    token = _endpoint(url)
    opened = threading.Event()
    ended = threading.Event()

    def watch() -> None:
        try:
            with _stream(url, token, **{"Last-Event-ID": "0"}) as response:
                opened.set()
                for _ in response.iter_lines():
                    pass
        except httpx.HTTPError:
            pass
        ended.set()

    threading.Thread(target=watch, daemon=True).start()
    assert opened.wait(10)
    started = time.monotonic()
    assert proc.proc is not None
    proc.proc.send_signal(signal.SIGTERM)
    proc.proc.wait(15)
    assert time.monotonic() - started < 8, "an open stream held up the exit"
    assert ended.wait(5)
    assert "Application shutdown complete" in proc.output()


def test_closed_streams_and_head_requests_leave_no_subscription(live):
    token = _endpoint(live.url)
    hub = live.app.state.hub
    with _stream(live.url, token, **{"Last-Event-ID": "0"}) as response:
        _send(live.url, token, 1)
        read_events(response, 1)
        assert hub.count() == 1
    assert wait_until(lambda: hub.count() == 0), "a closed stream kept its subscription"
    for _ in range(20):
        head = httpx.head(f"{live.url}/api/endpoints/{token}/stream", verify=local_tls())
        assert head.status_code == 200
    assert wait_until(lambda: hub.count() == 0), "HEAD requests leaked subscriptions"


def test_deleting_the_endpoint_ends_its_streams(live):
    token = _endpoint(live.url)
    ended = threading.Event()

    def watch() -> None:
        with _stream(live.url, token, **{"Last-Event-ID": "0"}) as response:
            for _ in response.iter_lines():
                pass
        ended.set()

    threading.Thread(target=watch, daemon=True).start()
    assert wait_until(lambda: live.app.state.hub.count() == 1)
    assert httpx.delete(f"{live.url}/api/endpoints/{token}").status_code == 200
    assert ended.wait(5), "the stream outlived its endpoint"
    assert httpx.get(f"{live.url}/api/endpoints/{token}/stream").status_code == 404


def test_a_quiet_stream_sends_keep_alive_comments_then_events(live, monkeypatch):
    monkeypatch.setattr(live.app.state.hub, "keepalive_s", 0.4)  # a tick every 0.2 s
    token = _endpoint(live.url)
    lines: list[str] = []
    with _stream(live.url, token) as response:
        started = time.monotonic()
        response.sse_lines = response.iter_lines()  # shared with read_events below
        for line in response.sse_lines:
            lines.append(line)
            if lines.count(": keep-alive") == 3:
                break
        quiet = time.monotonic() - started
        _send(live.url, token, 1)
        events = read_events(response, 1)
    assert 0.4 < quiet < 5, quiet
    assert [e["id"] for e in events] == ["1"]
