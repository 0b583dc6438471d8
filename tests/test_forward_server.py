"""Server-side forwarding (an endpoint's `forward`): each capture sent on by the server after the
commit, every attempt recorded as a delivery, the target policy applied, and the sender answered
without waiting. Against a real receiver on 127.0.0.1, through the ASGI app or a real uvicorn."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from hookscope.main import create_app
from hookscope.models import Capture, new_capture_id, now_us
from hookscope.ops.forwarder import Forwarder
from hookscope.ops.replay import TargetPolicy
from hookscope.settings import Settings
from hookscope.storage import StorageSettings, Store, build_store
from tests.conftest import BASE
from tests.pg import drop_database, fresh_database
from tests.serverproc import local_tls, wait_until
from tests.test_deliveries import _events
from tests.test_stream import ThreadedServer

# Where a target never is: the policy refuses it before any connection is made.
METADATA = "http://169.254.169.254/latest"
SLOW_S = 3.0


class Receiver:
    """A webhook receiver on 127.0.0.1 that records each request as it came (method, path with
    query, headers in order with duplicates, body). Paths under /slow answer after SLOW_S
    seconds; the first request of each path under /flaky gets a 503; everything else a 200."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, list[tuple[str, str]], bytes]] = []
        seen: Counter[str] = Counter()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                outer.requests.append((self.command, self.path, list(self.headers.items()), body))
                seen[self.path] += 1
                if self.path.startswith("/slow"):
                    time.sleep(SLOW_S)
                status = 503 if self.path.startswith("/flaky") and seen[self.path] == 1 else 200
                reply = b"busy" if status == 503 else b"ok"
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)
                except OSError:
                    pass  # the forwarder stopped waiting (a shutdown)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = answer

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def to(self, path: str) -> list[tuple[str, str, list[tuple[str, str]], bytes]]:
        return [r for r in self.requests if r[1].startswith(path)]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.http.shutdown()
    receiver.http.server_close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    """A real server on loopback, so it forwards to the receiver on 127.0.0.1."""
    db = tmp_path_factory.mktemp("forward") / "forward.db"
    with ThreadedServer(create_app(Settings(db=str(db)))) as server:
        yield server


@asynccontextmanager
async def serving(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the ASGI app; its forwarding is stopped after, as a shutdown would."""
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url=BASE) as client:
            yield client
    finally:
        await app.state.forwarder.close()


def _deliveries(get: Any, capture_id: str, count: int) -> list[dict[str, Any]]:
    """The capture's deliveries once `count` are recorded (sync client)."""
    found: list[dict[str, Any]] = []

    def enough() -> bool:
        found[:] = get(f"/api/captures/{capture_id}").json()["deliveries"]
        return len(found) >= count

    assert wait_until(enough), found
    return found


async def _deliveries_async(client: httpx.AsyncClient, capture_id: str,
                            count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        found = (await client.get(f"/api/captures/{capture_id}")).json()["deliveries"]
        if len(found) >= count or time.monotonic() > deadline:
            return list(found)
        await asyncio.sleep(0.02)


def _brief(deliveries: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(d["by"], d["attempt"], d["status"], d["outcome"]) for d in deliveries]


# -- through a real server -------------------------------------------------------------------------


def test_each_capture_is_forwarded_byte_for_byte_in_order_and_recorded(live, receiver):
    with httpx.Client(base_url=live.url, verify=local_tls()) as client:
        token = client.post("/api/endpoints", json={"forward": {
            "url": receiver.url + "/exact/in?token=t", "retries": 0}}).json()["token"]
        body = b'\x00\xff{"n": 1}\r\n'
        first = client.post(f"/h/{token}/github/push?a=1&a=2", content=body, headers=[
            ("X-Dup", "a"), ("Content-Type", "application/octet-stream"), ("X-Dup", "b"),
            ("X-Signature", "sha256=abc")]).headers["x-hookscope-capture"]
        second = client.put(f"/h/{token}", content=b"two").headers["x-hookscope-capture"]
        third = client.delete(f"/h/{token}/gone").headers["x-hookscope-capture"]
        delivered = [_deliveries(client.get, c, 1) for c in (first, second, third)]
        captured = client.get(f"/api/captures/{first}").json()
    assert [(method, path) for method, path, _, _ in receiver.to("/exact")] == [
        ("POST", "/exact/in/github/push?token=t&a=1&a=2"), ("PUT", "/exact/in?token=t"),
        ("DELETE", "/exact/in/gone?token=t")]
    _, _, headers, received = receiver.to("/exact")[0]
    assert received == body
    assert [(n, v) for n, v in headers if n.lower() != "host"] == [
        (n, v) for n, v in captured["headers"] if n.lower() not in ("host", "connection")]
    assert dict((n.lower(), v) for n, v in headers)["host"] == receiver.url[7:]
    assert [_brief(d) for d in delivered] == [[("server", 1, 200, "delivered")]] * 3
    one = delivered[0][0]
    assert one["target"] == receiver.url + "/exact/in/github/push?token=t&a=1&a=2"
    assert one["capture"] == first and one["error"] is None
    assert one["response"]["body_text"] == "ok"


def test_viewers_see_the_servers_deliveries(live, receiver):
    with httpx.Client(base_url=live.url, verify=local_tls()) as client:
        token = client.post("/api/endpoints", json={"forward": {
            "url": receiver.url + "/watched"}}).json()["token"]
        with client.stream("GET", f"/api/endpoints/{token}/stream") as stream:
            capture_id = client.post(f"/h/{token}", content=b"x").headers["x-hookscope-capture"]
            events = _events(stream, 2)
    assert [kind for kind, _ in events] == ["capture", "delivery"]
    delivery = events[1][1]
    assert delivery["capture"] == capture_id and delivery["by"] == "server"
    assert (delivery["status"], delivery["outcome"]) == (200, "delivered")


def test_a_5xx_or_an_unreachable_target_is_tried_again(live, receiver):
    with httpx.Client(base_url=live.url, verify=local_tls()) as client:
        flaky = client.post("/api/endpoints", json={"forward": {
            "url": receiver.url + "/flaky", "retries": 2}}).json()["token"]
        # A port nothing listens on: the receiver's, once it is closed.
        with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as gone:
            closed = f"http://127.0.0.1:{gone.server_address[1]}"
        unreachable = client.post("/api/endpoints", json={"forward": {
            "url": closed, "retries": 1}}).json()["token"]
        one = client.post(f"/h/{flaky}/x", content=b"x").headers["x-hookscope-capture"]
        other = client.post(f"/h/{unreachable}", content=b"x").headers["x-hookscope-capture"]
        retried = _deliveries(client.get, one, 2)
        failed = _deliveries(client.get, other, 2)
    assert _brief(retried) == [("server", 1, 503, "retrying"), ("server", 2, 200, "delivered")]
    assert retried[0]["response"]["body_text"] == "busy"
    assert len(receiver.to("/flaky/x")) == 2
    assert _brief(failed) == [("server", 1, None, "retrying"), ("server", 2, None, "failed")]
    assert all("connection refused" in d["error"] for d in failed)


def test_the_sender_is_answered_before_a_slow_target_finishes(live, receiver):
    with httpx.Client(base_url=live.url, verify=local_tls()) as client:
        token = client.post("/api/endpoints", json={"forward": {
            "url": receiver.url + "/slow"}}).json()["token"]
        answered, captured = [], []
        for n in range(2):  # the second while the first is still being forwarded
            started = time.monotonic()
            reply = client.post(f"/h/{token}", content=b"%d" % n)
            answered.append(time.monotonic() - started)
            assert reply.status_code == 200
            captured.append(reply.headers["x-hookscope-capture"])
        assert max(answered) < 1.0, answered
        # Nothing is recorded until the target answers...
        assert client.get(f"/api/captures/{captured[0]}").json()["deliveries"] == []
        first = _deliveries(client.get, captured[0], 1)
        # ...and the next capture is sent only then.
        waiting = client.get(f"/api/captures/{captured[1]}").json()["deliveries"]
    assert _brief(first) == [("server", 1, 200, "delivered")]
    assert first[0]["elapsed_ms"] >= SLOW_S * 1000
    assert waiting == []


# -- the endpoint field ----------------------------------------------------------------------------


@pytest.mark.parametrize(("forward", "field"), [
    ("http://127.0.0.1:9/", "forward"),
    ({}, "forward.url"),
    ({"url": "ftp://127.0.0.1/in"}, "forward.url"),
    ({"url": "http://127.0.0.1:9/", "timeout": 0}, "forward.timeout"),
    ({"url": "http://127.0.0.1:9/", "timeout": 61}, "forward.timeout"),
    ({"url": "http://127.0.0.1:9/", "retries": 11}, "forward.retries"),
    ({"url": "http://127.0.0.1:9/", "retries": 1.5}, "forward.retries"),
    ({"url": "http://127.0.0.1:9/", "every": 1}, "forward.every"),
    ({"url": METADATA}, "forward.url"),
    ({"url": "http://[::ffff:169.254.169.254]/"}, "forward.url"),
    ({"url": "http://user:secret@127.0.0.1:9/"}, "forward.url"),
])
@pytest.mark.anyio
async def test_a_bad_forward_is_a_422_naming_the_field(client, endpoint, forward, field):
    for reply in (await client.post("/api/endpoints", json={"forward": forward}),
                  await client.patch(f"/api/endpoints/{endpoint['token']}",
                                     json={"forward": forward})):
        assert reply.status_code == 422, reply.text
        assert field in [d["field"] for d in reply.json()["error"]["details"]]
    assert (await client.get(f"/api/endpoints/{endpoint['token']}")).json()["forward"] is None


@pytest.mark.anyio
async def test_forward_is_set_patched_in_part_and_turned_off(client, endpoint):
    key = f"/api/endpoints/{endpoint['token']}"
    assert endpoint["forward"] is None
    reply = await client.patch(key, json={"forward": {"url": "http://127.0.0.1:9/in"}})
    assert reply.json()["forward"] == {"url": "http://127.0.0.1:9/in", "timeout": 10,
                                       "retries": 3}
    reply = await client.patch(key, json={"forward": {"retries": 0, "timeout": 2.5}})
    assert reply.json()["forward"] == {"url": "http://127.0.0.1:9/in", "timeout": 2.5,
                                       "retries": 0}
    assert (await client.get(key)).json()["forward"]["retries"] == 0
    assert (await client.patch(key, json={"forward": None})).json()["forward"] is None
    assert (await client.get(key)).json()["forward"] is None


# -- the target policy -----------------------------------------------------------------------------


async def _plant(store: Store, token: str, url: str, retries: int = 3) -> None:
    """A `forward` stored without the API's check: one saved under another policy (a server
    that listened elsewhere, or had another HOOKSCOPE_REPLAY_ALLOW)."""
    endpoint = await store.get_endpoint(token)
    assert endpoint is not None
    await store.update_endpoint(endpoint, {"forward": {"url": url, "timeout": 5,
                                                       "retries": retries}})


@pytest.mark.anyio
async def test_a_link_local_target_is_refused_and_recorded_as_failed(app, store, endpoint):
    await _plant(store, endpoint["token"], METADATA)
    async with serving(app) as client:
        reply = await client.post(f"/h/{endpoint['token']}/x", content=b"x")
        capture_id = reply.headers["x-hookscope-capture"]
        deliveries = await _deliveries_async(client, capture_id, 1)
    assert reply.status_code == 200
    assert _brief(deliveries) == [("server", 1, None, "failed")]
    assert deliveries[0]["target"] == METADATA + "/x"
    assert "169.254.169.254" in deliveries[0]["error"]
    assert "link-local and cloud metadata addresses" in deliveries[0]["error"]


@pytest.mark.anyio
async def test_a_server_others_can_reach_forwards_to_loopback_only_when_allowed(
        settings, store, receiver):
    def app_on(host: str, allow: str = "") -> Starlette:
        return create_app(Settings(db=settings.db, host=host, replay_allow=allow,
                                   allowed_hosts="hookscope.test"), store=store)

    async with serving(app_on("0.0.0.0")) as client:
        token = (await client.post("/api/endpoints", json={})).json()["token"]
        guarded = f"/guarded-{token}"  # the receiver serves the whole module, on each backend
        refused = await client.patch(f"/api/endpoints/{token}", json={"forward": {
            "url": receiver.url + guarded}})
        assert refused.status_code == 422
        assert refused.json()["error"]["details"][0]["field"] == "forward.url"
        assert "private and loopback" in refused.json()["error"]["message"]
        await _plant(store, token, receiver.url + guarded)
        capture_id = (await client.post(f"/h/{token}", content=b"x")).headers[
            "x-hookscope-capture"]
        deliveries = await _deliveries_async(client, capture_id, 1)
    assert _brief(deliveries) == [("server", 1, None, "failed")]
    assert "HOOKSCOPE_REPLAY_ALLOW can admit it" in deliveries[0]["error"]
    assert receiver.to(guarded) == []  # never contacted

    async with serving(app_on("0.0.0.0", allow="127.0.0.0/8")) as client:
        allowed = await client.patch(f"/api/endpoints/{token}", json={"forward": {
            "url": receiver.url + guarded}})
        assert allowed.status_code == 200, allowed.text
        capture_id = (await client.post(f"/h/{token}", content=b"y")).headers[
            "x-hookscope-capture"]
        deliveries = await _deliveries_async(client, capture_id, 1)
    assert _brief(deliveries) == [("server", 1, 200, "delivered")]
    assert [body for _, _, _, body in receiver.to(guarded)] == [b"y"]


# -- the forwarder's own bounds --------------------------------------------------------------------


def _capture(endpoint_id: int, body: bytes) -> Capture:
    received = now_us()
    return Capture(id=new_capture_id(received), endpoint_id=endpoint_id, endpoint_token="key",
                   received_at=received, method="POST", path="/h/key", query="", headers=[],
                   remote_addr="127.0.0.1", content_type=None, body_size=len(body),
                   truncated=False, response_status=200, body=body)


@pytest.mark.parametrize(("limits", "bodies"), [
    ({"max_waiting": 2}, [b"1", b"2", b"3", b"4"]),
    ({"max_bytes": 10}, [b"12345678", b"12345678", b"12", b"123"]),
])
@pytest.mark.anyio
async def test_past_its_bounds_a_capture_gets_a_failed_delivery_not_a_place(limits, bodies):
    recorded: list[tuple[str, dict[str, Any]]] = []
    pauses: list[float] = []

    async def record(capture: Capture, delivery: dict[str, Any]) -> bool:
        recorded.append(((capture.body or b"").decode(), delivery))
        return True

    async def pause(seconds: float) -> None:
        pauses.append(seconds)

    forwarder = Forwarder(record, TargetPolicy(server_on_loopback=True), pause=pause, **limits)
    forward = {"url": METADATA, "timeout": 1, "retries": 3}
    for body in bodies:
        forwarder.submit(_capture(1, body), forward)  # all at once: the worker has not begun
    deadline = time.monotonic() + 5
    while len(recorded) < len(bodies) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await forwarder.close()
    full = sorted(body for body, d in recorded if d["error"].startswith("forwarding queue full"))
    refused = [body for body, d in recorded if "link-local" in d["error"]]
    if "max_waiting" in limits:
        assert (full, refused) == (["3", "4"], ["1", "2"])  # in the order they came
    else:  # the first always has a place; then only what fits in what is left
        assert (full, refused) == (["123", "12345678"], ["12345678", "12"])
    assert all(d["outcome"] == "failed" and d["attempt"] == 1 for _, d in recorded)
    assert pauses == []  # a refusal is final


@pytest.mark.anyio
async def test_shutdown_drops_what_waits(receiver):
    recorded: list[dict[str, Any]] = []

    async def record(capture: Capture, delivery: dict[str, Any]) -> bool:
        recorded.append(delivery)
        return True

    forwarder = Forwarder(record, TargetPolicy(server_on_loopback=True))
    forward = {"url": receiver.url + "/slow/dropped", "timeout": 10, "retries": 0}
    for body in (b"1", b"2"):
        forwarder.submit(_capture(2, body), forward)
    while not receiver.to("/slow/dropped"):
        await asyncio.sleep(0.01)
    started = time.monotonic()
    await forwarder.close()
    assert time.monotonic() - started < 1.0  # not held by the attempt under way
    forwarder.submit(_capture(2, b"3"), forward)  # stopped: taken no more
    await asyncio.sleep(0.1)
    assert recorded == [] and len(receiver.to("/slow/dropped")) == 1


# -- PostgreSQL ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_on_postgresql_the_process_that_took_a_capture_forwards_it(receiver):
    url = await fresh_database()
    store = build_store(StorageSettings(db=url))
    await store.open()
    try:
        app = create_app(Settings(db=url, allowed_hosts="hookscope.test"), store=store)
        async with serving(app) as client:
            token = (await client.post("/api/endpoints", json={"forward": {
                "url": receiver.url + "/pg"}})).json()["token"]
            capture_id = (await client.post(f"/h/{token}/sub", content=b"pg")).headers[
                "x-hookscope-capture"]
            deliveries = await _deliveries_async(client, capture_id, 1)
            stored = (await client.get(f"/api/endpoints/{token}")).json()["forward"]
    finally:
        await store.close()
        await drop_database(url)
    assert stored == {"url": receiver.url + "/pg", "timeout": 10, "retries": 3}
    assert _brief(deliveries) == [("server", 1, 200, "delivered")]
    assert [(path, body) for _, path, _, body in receiver.to("/pg")] == [("/pg/sub", b"pg")]
