"""POST /api/captures/{id}/replay against a real socket: a tiny HTTP server that records every
request byte for byte (its raw header list, in order, names as sent) and answers as told."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass

import pytest

from hookscope.errors import ApiError
from hookscope.models import Capture
from hookscope.ops.replay import MAX_RESPONSE_BODY, TargetPolicy, exchange, replay_headers
from hookscope.settings import Settings, SettingsError

pytestmark = pytest.mark.anyio

REPLY_BODY = b"\x00\xffreply\r\n"


@dataclass
class Received:
    method: bytes
    path: bytes
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes


class Receiver:
    """Modes: "answer" (201 with two X-Reply headers and a binary body), "redirect" (302),
    "silent" (reads the request, never answers), "endless" (a body that never ends)."""

    def __init__(self) -> None:
        self.mode = "answer"
        self.requests: list[Received] = []
        self.url = ""
        self._tasks: set[asyncio.Task] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._tasks.add(asyncio.current_task())
        self._writers.append(writer)
        try:
            await self._exchange(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the replaying side hung up, as it should past its limits
        finally:
            writer.close()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *lines = head[:-4].split(b"\r\n")
        method, target, _ = request_line.split(b" ")
        headers = []
        for line in lines:
            name, _, value = line.partition(b":")
            headers.append((name, value.strip(b" \t")))
        length = next((int(v) for n, v in headers if n.lower() == b"content-length"), 0)
        path, _, query = target.partition(b"?")
        self.requests.append(Received(method, path, query, headers,
                                      await reader.readexactly(length)))
        if self.mode == "answer":
            writer.write(b"HTTP/1.1 201 Created\r\nX-Reply: 1\r\nx-reply: 2\r\n"
                         b"Content-Type: application/octet-stream\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(REPLY_BODY) + REPLY_BODY)
        elif self.mode == "redirect":
            writer.write(b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\n"
                         b"Content-Length: 0\r\n\r\n")
        elif self.mode == "silent":
            await reader.read()  # until the other side gives up and closes
        elif self.mode == "endless":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                         b"Connection: close\r\n\r\n")
            while True:
                writer.write(b"x" * 65536)
                await writer.drain()
        await writer.drain()

    async def close(self) -> None:
        for writer in self._writers:
            writer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@pytest.fixture
async def receiver():
    target = Receiver()
    server = await asyncio.start_server(target.handle, "127.0.0.1", 0)
    target.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield target
    finally:
        server.close()
        await target.close()
        await server.wait_closed()


async def _capture(client, endpoint, body: bytes = b"", method: str = "POST", headers=()) -> dict:
    response = await client.request(method, f"/h/{endpoint['token']}/sub?x=1", content=body,
                                    headers=list(headers))
    return (await client.get(f"/api/captures/{response.headers['x-hookscope-capture']}")).json()


def _latin1(pairs) -> list[tuple[bytes, bytes]]:
    return [(n.encode("latin-1"), v.encode("latin-1")) for n, v in pairs]


async def test_replay_sends_the_capture_byte_for_byte_with_overrides(client, endpoint, receiver):
    body = b"\x00\xff binary \r\n\x00 \x80\xfe"
    capture = await _capture(client, endpoint, body, headers=[
        ("Content-Type", "application/octet-stream"), ("X-Dup", "1"), ("X-Remove", "r"),
        ("X-Change", "old"), ("x-dup", "2"), ("X-Empty", ""), ("X-Latin1", b"caf\xe9")])
    url = receiver.url + "/target/path?q=a%20b&q=2"
    response = await client.post(f"/api/captures/{capture['id']}/replay", json={
        "url": url, "headers": {"X-Extra": "e", "x-remove": None, "X-CHANGE": "new"}})
    assert response.status_code == 200, response.text

    [got] = receiver.requests
    assert (got.method, got.path, got.query) == (b"POST", b"/target/path", b"q=a%20b&q=2")
    assert got.body == body
    # The capture's headers in order with duplicates, minus Connection (hop-by-hop) and Host
    # (the target's own, first, from the URL); Content-Length in its place; overrides applied:
    # X-Change replaced where it stood, X-Remove gone, X-Extra last. Nothing else was added.
    expected = []
    for name, value in capture["headers"]:
        if name == "host":
            expected.append(("Host", receiver.url.removeprefix("http://")))
        elif name == "x-change":
            expected.append(("X-CHANGE", "new"))
        elif name not in ("connection", "x-remove"):
            expected.append((name, value))
    expected.append(("X-Extra", "e"))
    assert got.headers == _latin1(expected)
    assert ("x-latin1", "caf\xe9") in expected and ("content-length", str(len(body))) in expected

    reply = response.json()
    assert reply["capture"] == capture["id"]
    assert reply["request"] == {"method": "POST", "url": url, "address": "127.0.0.1",
                                "headers": [[n.decode("latin-1"), v.decode("latin-1")]
                                            for n, v in got.headers]}
    assert reply["response"] == {
        "status": 201,
        "headers": [["X-Reply", "1"], ["x-reply", "2"],
                    ["Content-Type", "application/octet-stream"],
                    ["Content-Length", str(len(REPLY_BODY))]],
        "body_text": None, "body_base64": base64.b64encode(REPLY_BODY).decode(),
        "body_size": len(REPLY_BODY), "truncated": False}
    assert isinstance(reply["elapsed_ms"], float) and reply["elapsed_ms"] >= 0


async def test_replay_of_a_get_sends_no_length_and_the_host_given(client, endpoint, receiver):
    capture = await _capture(client, endpoint, method="GET", headers=[("X-A", "a")])
    response = await client.post(f"/api/captures/{capture['id']}/replay", json={
        "url": receiver.url, "headers": {"User-Agent": None, "Host": "example.test"},
        "timeout": 5})
    assert response.status_code == 200, response.text
    [got] = receiver.requests
    assert got.method == b"GET" and got.path == b"/" and got.body == b""
    names = [name.lower() for name, _ in got.headers]
    assert "content-length" not in names and "user-agent" not in names
    assert (b"x-a", b"a") in got.headers
    # A Host override is sent as given (virtual hosts), and httpx adds no Host of its own.
    assert [v for n, v in got.headers if n.lower() == b"host"] == [b"example.test"]


async def test_redirects_are_the_answer_not_followed(client, endpoint, receiver):
    receiver.mode = "redirect"
    capture = await _capture(client, endpoint, b"{}")
    reply = (await client.post(f"/api/captures/{capture['id']}/replay",
                               json={"url": receiver.url + "/hook"})).json()
    assert reply["response"]["status"] == 302
    assert ["Location", "/elsewhere"] in reply["response"]["headers"]
    assert reply["response"]["body_text"] == "" and reply["response"]["body_size"] == 0
    assert len(receiver.requests) == 1


async def test_an_endless_reply_is_cut_at_the_limit(client, endpoint, receiver):
    receiver.mode = "endless"
    capture = await _capture(client, endpoint, b"x")
    response = await client.post(f"/api/captures/{capture['id']}/replay",
                                 json={"url": receiver.url, "timeout": 10})
    assert response.status_code == 200, response.text
    reply = response.json()["response"]
    assert reply["truncated"] is True
    assert reply["body_size"] == MAX_RESPONSE_BODY
    assert reply["body_text"] == "x" * MAX_RESPONSE_BODY


async def test_a_refused_connection_is_a_502(client, endpoint):
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    capture = await _capture(client, endpoint, b"x")
    url = f"http://127.0.0.1:{port}/hook"
    response = await client.post(f"/api/captures/{capture['id']}/replay", json={"url": url})
    assert response.status_code == 502
    assert response.json()["error"] == {
        "code": "bad_gateway", "message": f"could not reach {url}: connection refused",
        "details": []}


async def test_a_target_that_never_answers_is_a_504_on_time(client, endpoint, receiver):
    receiver.mode = "silent"
    capture = await _capture(client, endpoint, b"x")
    started = time.monotonic()
    response = await client.post(f"/api/captures/{capture['id']}/replay",
                                 json={"url": receiver.url, "timeout": 0.5})
    assert time.monotonic() - started < 5
    assert response.status_code == 504
    assert response.json()["error"] == {
        "code": "gateway_timeout", "message": f"{receiver.url} did not answer within 0.5 s",
        "details": []}
    assert len(receiver.requests) == 1  # it was sent; only the answer never came


@pytest.mark.parametrize(("payload", "fields"), [
    ({"url": "ftp://example.com/x"}, ["url"]),
    ({"url": "http://"}, ["url"]),
    ({"url": "http:///path"}, ["url"]),
    ({"url": "localhost:8000/hook"}, ["url"]),
    ({"url": "/relative"}, ["url"]),
    ({"url": "http://[::1"}, ["url"]),
    ({"url": "http://h:99999/"}, ["url"]),
    ({"url": 5}, ["url"]),
    ({"url": ""}, ["url"]),
    ({}, ["url"]),
    ({"url": "http://h/", "headers": {"Content-Length": "1"}}, ["headers.Content-Length"]),
    ({"url": "http://h/", "headers": {"Transfer-Encoding": "chunked"}},
     ["headers.Transfer-Encoding"]),
    ({"url": "http://h/", "headers": {"bad name": "x"}}, ["headers.bad name"]),
    ({"url": "http://h/", "headers": {"X-A": 5}}, ["headers.X-A"]),
    ({"url": "http://h/", "headers": {"X-A": "a\r\nInjected: 1"}}, ["headers.X-A"]),
    ({"url": "http://h/", "headers": {"X-A": "snow ☃"}}, ["headers.X-A"]),
    ({"url": "http://h/", "headers": ["X-A", "1"]}, ["headers"]),
    ({"url": "http://h/", "timeout": 0}, ["timeout"]),
    ({"url": "http://h/", "timeout": 61}, ["timeout"]),
    ({"url": "http://h/", "timeout": "10"}, ["timeout"]),
    ({"url": "http://h/", "timeout": True}, ["timeout"]),
    ({"url": "http://h/", "colour": "red"}, ["colour"]),
    ({"url": "ftp://h/", "timeout": -1, "extra": 1}, ["extra", "url", "timeout"]),
])
async def test_bad_replay_input_is_a_422_naming_every_field(client, endpoint, payload, fields):
    capture = await _capture(client, endpoint, b"x")
    response = await client.post(f"/api/captures/{capture['id']}/replay", json=payload)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert [d["field"] for d in error["details"]] == fields
    assert all(d["message"] for d in error["details"])


async def test_replay_body_must_be_a_json_object(client, endpoint):
    capture = await _capture(client, endpoint, b"x")
    response = await client.post(f"/api/captures/{capture['id']}/replay", json=["http://h/"])
    assert response.status_code == 422
    response = await client.post(f"/api/captures/{capture['id']}/replay", content=b"{url")
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("request body is not valid JSON")


async def test_replay_of_an_unknown_capture_is_404(client, receiver):
    response = await client.post("/api/captures/c_nope/replay", json={"url": receiver.url})
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "no capture with id 'c_nope'"
    assert receiver.requests == []


def test_resent_headers_drop_connection_headers_and_restate_a_cut_length():
    capture = Capture(
        id="c_1", endpoint_id=1, endpoint_token="tok", received_at=0, method="POST",
        path="/h/tok", query="", remote_addr=None, content_type=None, body_size=10,
        truncated=True, response_status=413, body=b"0123456789",
        headers=[["host", "hookscope.test"], ["content-length", "1000"], ["connection", "close"],
                 ["x-a", "a"], ["Content-Length", "1000"], ["te", "trailers"], ["x-b", "1"],
                 ["X-B", "2"], ["keep-alive", "5"], ["upgrade", "h2c"]])
    assert replay_headers(capture, {}) == [["content-length", "10"], ["x-a", "a"],
                                           ["x-b", "1"], ["X-B", "2"]]
    assert replay_headers(capture, {"X-b": "new", "x-c": "c", "X-A": None}) == [
        ["content-length", "10"], ["X-b", "new"], ["x-c", "c"]]


# -- where a replay may go ------------------------------------------------------------------------

NAMES = {"metadata.test": ["169.254.169.254"], "internal.test": ["10.0.0.5"],
         "mixed.test": ["8.8.8.8", "10.0.0.1"], "public.test": ["8.8.8.8"],
         "receiver.test": ["127.0.0.1"]}


class StubResolver:
    """Names resolved from NAMES, never through DNS; what was asked is kept."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if host not in NAMES:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return NAMES[host]


@pytest.mark.parametrize(("url", "why"), [
    ("http://metadata.test/latest/meta-data/", "link-local and cloud metadata addresses"),
    ("http://169.254.169.254/", "link-local and cloud metadata addresses"),
    ("http://[fe80::1]:8080/", "link-local and cloud metadata addresses"),
    ("http://100.100.100.200/", "link-local and cloud metadata addresses"),
    ("http://internal.test/hook", "private and loopback addresses are replayed to only"),
    ("https://mixed.test/hook", "private and loopback addresses are replayed to only"),
    ("http://127.0.0.1:9/hook", "private and loopback addresses are replayed to only"),
    ("http://[::1]:9/hook", "private and loopback addresses are replayed to only"),
    ("http://0.0.0.0:9/", "it is not an address to send to"),
])
async def test_a_server_reachable_by_others_refuses_replays_into_its_network(
        app, client, endpoint, url, why):
    app.state.replay_policy = TargetPolicy(server_on_loopback=False, resolver=StubResolver())
    capture = await _capture(client, endpoint, b"x")
    response = await client.post(f"/api/captures/{capture['id']}/replay", json={"url": url})
    assert response.status_code == 403  # refused before any connection is made
    error = response.json()["error"]
    assert error["code"] == "forbidden"
    assert why in error["message"] and "HOOKSCOPE_REPLAY_ALLOW can admit it" in error["message"]


async def test_a_loopback_server_replays_into_its_own_network_but_not_to_metadata():
    policy = TargetPolicy(server_on_loopback=True, resolver=StubResolver())
    assert await policy.address("internal.test", 80) == "10.0.0.5"
    assert await policy.address("127.0.0.1", 80) == "127.0.0.1"
    assert await policy.address("public.test", 443) == "8.8.8.8"
    with pytest.raises(ApiError, match="link-local and cloud metadata") as refused:
        await policy.address("metadata.test", 80)
    assert refused.value.status == 403
    for mapped in ("::ffff:169.254.169.254", "[::ffff:a9fe:a9fe]"):  # the same, written in IPv6
        with pytest.raises(ApiError, match="link-local and cloud metadata"):
            await policy.address(mapped, 80)


async def test_replay_allow_admits_networks_and_host_names():
    stub = StubResolver()
    policy = TargetPolicy.for_server("0.0.0.0", "169.254.169.254/32, Internal.test, 10.9.0.0/16",
                                     stub)
    assert await policy.address("metadata.test", 80) == "169.254.169.254"
    assert await policy.address("internal.test", 80) == "10.0.0.5"
    assert await policy.address("10.9.8.7", 80) == "10.9.8.7"
    assert await policy.address("public.test", 80) == "8.8.8.8"
    with pytest.raises(ApiError, match="private and loopback"):
        await policy.address("mixed.test", 80)  # every address it resolves to is checked
    with pytest.raises(ApiError, match="did not resolve") as unknown:
        await policy.address("nowhere.test", 80)
    assert unknown.value.status == 502
    assert stub.asked == ["metadata.test", "internal.test", "public.test", "mixed.test",
                          "nowhere.test"]  # an address is not resolved


def test_a_server_on_loopback_is_told_by_its_host_setting():
    assert TargetPolicy.for_server("127.0.0.1", "").server_on_loopback
    assert TargetPolicy.for_server("::1", "").server_on_loopback
    assert TargetPolicy.for_server("localhost", "").server_on_loopback
    assert not TargetPolicy.for_server("0.0.0.0", "").server_on_loopback
    assert not TargetPolicy.for_server("::", "").server_on_loopback


async def test_an_http_replay_goes_to_the_address_checked_with_its_host_named(
        app, client, endpoint, receiver):
    stub = StubResolver()
    app.state.replay_policy = TargetPolicy(server_on_loopback=True, resolver=stub)
    port = receiver.url.rsplit(":", 1)[1]
    capture = await _capture(client, endpoint, b"x")
    response = await client.post(f"/api/captures/{capture['id']}/replay",
                                 json={"url": f"http://receiver.test:{port}/hook"})
    assert response.status_code == 200, response.text
    reply = response.json()
    assert (reply["request"]["url"], reply["request"]["address"]) == (
        f"http://receiver.test:{port}/hook", "127.0.0.1")
    [got] = receiver.requests
    assert [v for n, v in got.headers if n.lower() == b"host"] == [f"receiver.test:{port}".encode()]
    assert stub.asked == ["receiver.test"]


def test_replay_allow_refuses_what_is_neither_a_network_nor_a_host():
    with pytest.raises(SettingsError, match="HOOKSCOPE_REPLAY_ALLOW: 'http://x' is neither"):
        Settings(replay_allow="10.0.0.0/8, http://x").check()
    Settings(replay_allow="10.0.0.0/8, fd00::/8, hooks.internal").check()


async def test_an_https_target_is_sent_to_the_address_that_was_checked(tmp_path):
    """The name is not looked up again when connecting (it could resolve elsewhere by then):
    the connection goes to the checked address, with the host's name sent for TLS."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl to make the test server's certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=receiver.test", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    names: list[str | None] = []
    context.sni_callback = lambda _, name, __: names.append(name)
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def accept() -> None:
            conn, _ = server.accept()
            with contextlib.suppress(OSError), context.wrap_socket(conn, server_side=True):
                pass

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        policy = TargetPolicy(server_on_loopback=True, resolver=StubResolver())
        with pytest.raises(ApiError, match="TLS failed"):  # a certificate nobody vouches for
            await exchange("GET", f"https://receiver.test:{port}/", [], b"", timeout=5,
                           policy=policy)
        thread.join(5)
    assert names == ["receiver.test"]
