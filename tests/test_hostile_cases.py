"""Hostile input, by name: the bodies, paths and headers that break parsers and servers.

Each case goes through the capture URL (and the API where a body is API input) and asserts what is
stored and what is said about it, not just the status. Parse-level versions of some of these are in
test_parse.py; the generated ones are in test_hostile_properties.py.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
import uvicorn

from hookscope.settings import Settings
from tests.serverproc import ServerProcess, local_tls, send_raw, split_reply, wait_until

pytestmark = pytest.mark.anyio

# Room for the 200k-deep bodies (1.2 MB); the limit cases read the limit from here.
MAX_BODY = 2 * 1024 * 1024


@pytest.fixture
def settings(database: str) -> Settings:
    return Settings(db=database, max_body_bytes=MAX_BODY,
                    allowed_hosts="hookscope.test")


async def _capture(client: httpx.AsyncClient, token: str, body: bytes,
                   content_type: str | None) -> tuple[httpx.Response, dict]:
    """POST a body to the capture URL; the reply and the capture in full, its body checked
    byte for byte."""
    headers = {"content-type": content_type} if content_type else {}
    response = await client.post(f"/h/{token}", content=body, headers=headers)
    assert response.status_code < 500, response.text[:300]
    full = await client.get(f"/api/captures/{response.headers['x-hookscope-capture']}")
    assert full.status_code == 200, full.text[:300]
    raw = await client.get(f"/api/captures/{response.headers['x-hookscope-capture']}/body")
    assert raw.content == body
    capture = full.json()
    assert capture["body_size"] == len(body)
    return response, capture


# -- XML: entity expansion and external entities --------------------------------------------------

_NAMES = [b"lol", *(b"lol%d" % i for i in range(1, 10))]
BILLION_LAUGHS = (b'<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
                  + b"".join(b' <!ENTITY %s "%s">\n' % (name, b"&%s;" % below * 10)
                             for below, name in pairwise(_NAMES))
                  + b"]>\n<lolz>&lol9;</lolz>\n")


def test_the_billion_laughs_body_is_the_real_one():
    assert b'<!ENTITY lol9 "&lol8;&lol8;' in BILLION_LAUGHS  # 10^9 "lol"s if expanded


@pytest.mark.parametrize("content_type", ["application/xml", "text/xml", None, "text/plain"])
async def test_billion_laughs_is_stored_whole_and_refused_unexpanded(client, endpoint,
                                                                     content_type):
    tracemalloc.start()
    started = time.monotonic()
    try:
        response, capture = await _capture(client, endpoint["token"], BILLION_LAUGHS,
                                           content_type)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 2
    assert peak < 20 * 1024 * 1024  # expanded, it would be 3 GB
    assert response.status_code == 200
    assert capture["body_text"] == BILLION_LAUGHS.decode()
    assert capture["parsed"]["kind"] == "xml"
    assert capture["parsed"]["value"] is None
    assert "XML refused" in capture["parsed"]["error"]
    assert "lollollol" not in str(capture["parsed"])


@pytest.fixture
def listener() -> Iterator[tuple[str, socket.socket]]:
    """A TCP port on 127.0.0.1 that records whether anything connected to it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/", sock
    finally:
        sock.close()


def _connected(sock: socket.socket) -> bool:
    try:
        sock.accept()[0].close()
    except BlockingIOError:
        return False
    return True


def _external_entities(url: str) -> list[bytes]:
    return [
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>',
        b'<!DOCTYPE r [<!ENTITY x SYSTEM "%s">]><r>&x;</r>' % url.encode(),
        b'<!DOCTYPE r [<!ENTITY x SYSTEM "http://127.0.0.1:1/">]><r>&x;</r>',
        b'<!DOCTYPE r [<!ENTITY %% p SYSTEM "%s"> %%p;]><r/>' % url.encode(),
        b'<!DOCTYPE r SYSTEM "%s"><r/>' % url.encode(),
    ]


@pytest.mark.parametrize("index", range(5))
async def test_external_entities_are_stored_and_never_resolved(client, endpoint, listener, index):
    url, sock = listener
    assert "root:" in Path("/etc/passwd").read_text()  # so its absence below means something
    body = _external_entities(url)[index]
    started = time.monotonic()
    response, capture = await _capture(client, endpoint["token"], body, "application/xml")
    assert time.monotonic() - started < 2
    assert response.status_code == 200
    assert capture["body_text"] == body.decode()
    assert (capture["parsed"]["kind"], capture["parsed"]["value"]) == ("xml", None)
    assert "XML refused" in capture["parsed"]["error"]
    listing = await client.get(f"/api/endpoints/{endpoint['token']}/captures")
    validated = await client.post("/api/validate?format=webengage.feedback", content=body,
                                  headers={"content-type": "text/xml"})
    assert validated.status_code == 200
    assert validated.json()["parsed"]["kind"] == "xml"
    assert "XML refused" in validated.json()["parsed"]["error"]
    for text in (str(capture), listing.text, validated.text):
        assert "root:" not in text
    assert not _connected(sock), "an external entity was fetched"


@pytest.mark.parametrize("content_type", ["application/xml", None, "text/plain",
                                          "application/json"])
@pytest.mark.parametrize("encoding", [b"bogus", b"rot13", b"x" * 300])
async def test_an_xml_declaration_of_an_unknown_encoding_is_captured_not_a_500(
        client, endpoint, content_type, encoding):
    # The XML parser raised LookupError for these, which escaped: a 500 and nothing captured.
    body = b'<?xml version="1.0" encoding="%s"?><a>x</a>' % encoding
    response, capture = await _capture(client, endpoint["token"], body, content_type)
    assert response.status_code == 200
    assert capture["body_text"] == body.decode()
    if content_type == "application/xml":
        assert capture["parsed"]["kind"] == "xml"
        assert capture["parsed"]["error"].startswith("invalid XML: ")
        assert "encoding" in capture["parsed"]["error"]
    validated = await client.post("/api/validate", content=body,
                                  headers={"content-type": "text/xml"})
    assert validated.status_code == 200
    assert "encoding" in validated.json()["parsed"]["error"]


async def test_xinclude_is_kept_as_an_element_not_followed(client, endpoint):
    body = (b'<r xmlns:xi="http://www.w3.org/2001/XInclude">'
            b'<xi:include href="file:///etc/passwd" parse="text"/></r>')
    _, capture = await _capture(client, endpoint["token"], body, "application/xml")
    assert capture["parsed"] == {"kind": "xml", "error": None, "value": {
        "include": {"@href": "file:///etc/passwd", "@parse": "text"}}}
    assert "root:" not in str(capture)


# -- deep JSON -----------------------------------------------------------------------------------

DEEP = 200_000
DEEP_BODIES = {
    "arrays": b"[" * DEEP + b"]" * DEEP,
    "objects": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    "mixed": b'[{"a":' * (DEEP // 2) + b"1" + b"}]" * (DEEP // 2),
}


@pytest.mark.parametrize("shape", DEEP_BODIES)
@pytest.mark.parametrize("content_type", ["application/json", None])
async def test_200k_deep_json_is_captured_with_the_parse_error_stated(client, endpoint, shape,
                                                                      content_type):
    body = DEEP_BODIES[shape]
    started = time.monotonic()
    response, capture = await _capture(client, endpoint["token"], body, content_type)
    assert time.monotonic() - started < 5
    assert response.status_code == 200
    assert capture["truncated"] is False
    assert capture["body_text"] == body.decode()
    if content_type is None:  # sniffed: not JSON after all, so shown as text
        assert capture["parsed"]["kind"] == "text"
    else:
        assert capture["parsed"]["kind"] == "json"
        assert capture["parsed"]["value"] is None
        assert "invalid JSON" in capture["parsed"]["error"]
        assert "depth" in capture["parsed"]["error"]  # orjson's word, past 1 MiB


@pytest.mark.parametrize("shape", DEEP_BODIES)
async def test_200k_deep_json_sent_to_validate_is_judged_not_crashed(client, shape):
    # /api/validate judges its body "as if captured" (docs/api.md): a body that does not parse is a
    # verdict (parsed.error, and "invalid" against a named format), not a malformed request.
    body = DEEP_BODIES[shape]
    detected = await client.post("/api/validate", content=body,
                                 headers={"content-type": "application/json"})
    assert detected.status_code == 200
    assert detected.json()["status"] == "unknown"
    assert detected.json()["parsed"]["kind"] == "json"
    assert "invalid JSON" in detected.json()["parsed"]["error"]
    named = await client.post("/api/validate?format=avo.json-schema", content=body,
                              headers={"content-type": "application/json"})
    assert named.status_code == 200
    assert named.json()["status"] == "invalid"
    assert "could not be parsed: invalid JSON" in named.json()["errors"][0]["message"]


@pytest.mark.parametrize("shape", DEEP_BODIES)
async def test_200k_deep_json_as_an_endpoint_schema_is_a_400(client, endpoint, shape):
    body = b'{"schema": ' + DEEP_BODIES[shape] + b"}"
    for response in (await client.post("/api/endpoints", content=body),
                     await client.patch(f"/api/endpoints/{endpoint['token']}", content=body)):
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "bad_request"
        assert "not valid JSON" in error["message"] and "depth" in error["message"]
    unchanged = (await client.get(f"/api/endpoints/{endpoint['token']}")).json()
    assert unchanged["schema"] is None


# -- huge numbers ---------------------------------------------------------------------------------

DIGITS = b"9" * 100_000


@pytest.mark.parametrize(("body", "error"), [
    (b"[" + DIGITS + b"]", "4300"),  # Python's int max str digits
    (b'{"n": -' + DIGITS + b"}", "4300"),
    (b"[" + DIGITS + b".5]", "too large for a 64-bit float"),
    (b"[1e" + DIGITS + b"]", "too large for a 64-bit float"),
])
async def test_100k_digit_numbers_are_captured_and_reported(client, endpoint, body, error):
    started = time.monotonic()
    response, capture = await _capture(client, endpoint["token"], body, "application/json")
    assert response.status_code == 200
    assert capture["parsed"]["kind"] == "json"
    assert error in capture["parsed"]["error"]
    validated = (await client.post("/api/validate", content=body,
                                   headers={"content-type": "application/json"})).json()
    assert error in validated["parsed"]["error"]
    assert time.monotonic() - started < 5


async def test_tiny_fractions_with_100k_digits_parse_to_a_number(client, endpoint):
    body = b"[0." + b"0" * 100_000 + b"1, 1e-" + DIGITS + b"]"
    _, capture = await _capture(client, endpoint["token"], body, "application/json")
    assert capture["parsed"] == {"kind": "json", "value": [0.0, 0.0], "error": None}


async def test_100k_digit_numbers_in_api_input_are_400(client, endpoint):
    for field in ("max_captures", "name"):
        response = await client.post("/api/endpoints",
                                     content=b'{"%s": %s}' % (field.encode(), DIGITS))
        assert response.status_code == 400
        assert "4300" in response.json()["error"]["message"]
    for param in ("limit", "before", "after", "wait"):  # 50k: httpx caps a query at 64 KiB
        response = await client.get(f"/api/endpoints/{endpoint['token']}/captures",
                                    params={param: DIGITS[:50_000].decode()})
        assert response.status_code == 400
        assert response.json()["error"]["details"][0]["field"] == param


# As many digits as fit in the request head (HOOKSCOPE_MAX_HEADER_BYTES), far past Python's 4,300.
HEADER_DIGITS = DIGITS[:60_000].decode()


@pytest.mark.parametrize("headers", [
    {"stripe-signature": "t=" + HEADER_DIGITS + ",v1=" + "0" * 64},
    {"webhook-id": "msg_1", "webhook-timestamp": HEADER_DIGITS, "webhook-signature": "v1,AAAA"},
    {"svix-id": "msg_1", "svix-timestamp": "-" + HEADER_DIGITS, "svix-signature": "v1,AAAA"},
    {"x-slack-request-timestamp": HEADER_DIGITS, "x-slack-signature": "v0=" + "0" * 64},
])
async def test_a_60k_digit_timestamp_fails_the_signature_with_a_reason(client, headers):
    created = (await client.post("/api/endpoints", json={
        "verify": {"scheme": "auto", "secrets": ["s3cret-hostile"]}})).json()
    response = await client.post(f"/h/{created['token']}", content=b"{}", headers=headers)
    assert response.status_code == 200
    capture = (await client.get(
        f"/api/captures/{response.headers['x-hookscope-capture']}")).json()
    assert capture["signature"]["status"] == "failed"
    assert capture["signature"]["reason"]
    assert [h for h in capture["headers"] if h[0] in headers] == [[k, v]
                                                                  for k, v in headers.items()]


# -- invalid UTF-8 and NUL bytes ------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    b'{"name": "caf\xe9"}',  # Latin-1, not UTF-8
    b'{"a": "\xff\xfe\xfd"}',
    b'{"a": "\xed\xa0\x80"}',  # an encoded lone surrogate
    b'{"a": "\xc3"}',  # cut in the middle of a character
])
async def test_invalid_utf8_inside_json_is_kept_in_base64_and_explained(client, endpoint, body):
    _, capture = await _capture(client, endpoint["token"], body, "application/json")
    assert capture["body_text"] is None
    assert base64.b64decode(capture["body_base64"]) == body
    assert capture["parsed"]["kind"] == "json"
    assert capture["parsed"]["value"] is None
    assert "invalid JSON" in capture["parsed"]["error"]
    assert "can't decode" in capture["parsed"]["error"]


@pytest.mark.parametrize(("body", "content_type", "parsed"), [
    (b"a\x00b\x00", "text/plain", {"kind": "text", "value": "a\x00b\x00", "error": None}),
    (b'{"a": "\\u0000"}', "application/json", {"kind": "json", "value": {"a": "\x00"},
                                               "error": None}),
    (b"\x00" * 1000, None, {"kind": "text", "value": "\x00" * 1000, "error": None}),
    (b"a=%00&b=\x00", "application/x-www-form-urlencoded",
     {"kind": "form", "value": [["a", "\x00"], ["b", "\x00"]], "error": None}),
])
async def test_nul_bytes_in_bodies_are_stored_and_shown(client, endpoint, body, content_type,
                                                        parsed):
    _, capture = await _capture(client, endpoint["token"], body, content_type)
    assert capture["body_text"] == body.decode()
    assert capture["parsed"] == parsed


async def test_a_raw_nul_inside_a_json_string_is_an_error_not_a_crash(client, endpoint):
    _, capture = await _capture(client, endpoint["token"], b'{"a": "x\x00y"}',
                                "application/json")
    assert "invalid JSON" in capture["parsed"]["error"]
    assert "control character" in capture["parsed"]["error"]


async def _asgi(app: Any, method: str, raw_path: bytes, query: bytes,
                headers: list[tuple[bytes, bytes]], body: bytes = b"") -> tuple[int, dict]:
    """One request straight into the ASGI app, with bytes no HTTP client would send (a NUL in
    a header value, in a raw query). Returns the status and the reply's headers."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "root_path": "",
             "path": unquote(raw_path.decode("latin-1")), "raw_path": raw_path,
             "query_string": query, "headers": headers, "client": ("127.0.0.1", 40000),
             "server": ("hookscope.test", 80)}
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = sent[0]
    return start["status"], {k.decode(): v.decode("latin-1") for k, v in start["headers"]}


@pytest.mark.sqlite_only("PostgreSQL's text cannot hold a NUL: there such a capture is refused "
                         "(503). Only another ASGI server could hand one over: uvicorn answers "
                         "400 to a raw NUL in a request line or header")
async def test_nul_bytes_in_path_query_and_headers_are_stored_when_they_arrive(app, client,
                                                                               endpoint):
    raw_path = f"/h/{endpoint['token']}/a\x00b/%00".encode()
    headers = [(b"x-nul", b"\x00"), (b"x-mid", b"a\x00b"), (b"content-type", b"text/pl\x00in")]
    status, reply = await _asgi(app, "POST", raw_path, b"q=\x00&r=%00", headers, b"\x00")
    assert status == 200
    capture = (await client.get(f"/api/captures/{reply['x-hookscope-capture']}")).json()
    assert capture["path"] == raw_path.decode()
    assert capture["query"] == "q=\x00&r=%00"
    assert capture["headers"] == [[k.decode(), v.decode()] for k, v in headers]
    assert capture["content_type"] == "text/pl\x00in"
    assert capture["body_text"] == "\x00"
    found = await client.get(f"/api/endpoints/{endpoint['token']}/captures",
                             params={"q": "a\x00b"})
    assert [c["id"] for c in found.json()["captures"]] == [capture["id"]]
    assert (await client.get(f"/api/captures/{capture['id']}/body")).headers[
        "content-type"] == "text/pl\x00in"


@pytest.mark.parametrize("path", ["/api/endpoints/%00", "/api/captures/%00", "/api/formats/%00",
                                  "/api/captures/c_%00/body", "/e/%00", "/h/%00"])
async def test_nul_in_an_api_path_is_a_404_in_the_error_shape(client, path):
    response = await client.get(path)
    assert response.status_code == 404
    if not path.startswith("/e/"):
        assert response.json()["error"]["code"] == "not_found"


# -- multipart ------------------------------------------------------------------------------------

PART = b'--XX\r\nContent-Disposition: form-data; name="f"\r\n\r\nvalue\r\n'


@pytest.mark.parametrize(("body", "content_type", "error"), [
    # No closing delimiter: the parts found are shown, with the defect named.
    (PART * 3, "multipart/form-data; boundary=XX", "malformed multipart (no closing boundary)"),
    (PART + b"--XX--\r\n", "multipart/form-data", "no boundary"),
    (PART + b"--XX--\r\n", "multipart/form-data; boundary=YY",
     "the Content-Type's boundary 'YY' is not in the body"),
    (b"no parts at all", "multipart/form-data; boundary=" + "B" * 5000, "is not in the body"),
    (PART * 1001 + b"--XX--\r\n", "multipart/form-data; boundary=XX",
     "multipart body has 1001 parts; more than 1000 are not parsed"),
    (PART * 5000, "multipart/mixed; boundary=XX", "more than 1000 are not parsed"),
])
async def test_broken_multipart_is_stored_and_explained(client, endpoint, body, content_type,
                                                        error):
    started = time.monotonic()
    _, capture = await _capture(client, endpoint["token"], body, content_type)
    assert time.monotonic() - started < 3
    assert capture["body_text"] == body.decode()
    assert capture["parsed"]["kind"] == "multipart"
    assert error in capture["parsed"]["error"]
    summary = (await client.get(f"/api/endpoints/{endpoint['token']}/captures")).json()
    assert error in summary["captures"][0]["parsed"]["error"]


# -- the request head's size ----------------------------------------------------------------------

async def test_a_head_over_the_limit_is_431_on_every_route_and_stores_nothing(client, endpoint):
    token = endpoint["token"]
    for method, path in (("POST", f"/h/{token}"), ("POST", "/api/endpoints"), ("GET", "/")):
        response = await client.request(method, path, content=b"x",
                                        headers={"x-pad": "a" * (64 * 1024)})
        assert response.status_code == 431, path
        error = response.json()["error"]
        assert error["code"] == "headers_too_large"
        assert "more than the 65536 this server accepts (HOOKSCOPE_MAX_HEADER_BYTES)" in (
            error["message"])
    after = (await client.get(f"/api/endpoints/{token}")).json()
    assert (after["capture_count"], after["stored_bytes"]) == (0, 0)
    # Under the limit, captured, and counted toward the endpoint's stored bytes.
    response = await client.post(f"/h/{token}", content=b"x", headers={"x-pad": "a" * 60_000})
    assert response.status_code == 200
    assert (await client.get(f"/api/endpoints/{token}")).json()["stored_bytes"] > 60_000


# -- a real server: long paths, big headers, the body limit ---------------------------------------

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def small_limit_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One real `hookscope serve` (httptools) for this module's socket cases, with a small body
    limit so the limit cases move little data."""
    folder = tmp_path_factory.mktemp("hostile-server")
    proc = ServerProcess(folder / "server.db", folder / "server.log",
                         env={"HOOKSCOPE_MAX_BODY_BYTES": str(LIMIT)})
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def _raw(server: ServerProcess, head: str, body: bytes = b"") -> tuple[int, dict, bytes]:
    return split_reply(send_raw(server.url, head.encode("latin-1") + body))


def _token(server: ServerProcess, **fields: Any) -> str:
    response = httpx.post(server.url + "/api/endpoints", json=fields, verify=local_tls())
    assert response.status_code == 201
    return response.json()["token"]


def _stored(server: ServerProcess, capture_id: str) -> tuple[dict, bytes]:
    with httpx.Client(base_url=server.url, verify=local_tls()) as client:
        return (client.get(f"/api/captures/{capture_id}").json(),
                client.get(f"/api/captures/{capture_id}/body").content)


def test_a_4kb_path_is_captured_exactly(small_limit_server):
    token = _token(small_limit_server)
    path = f"/h/{token}/" + "/".join(["seg%20ment%2F.."] * 200)  # 3,228 characters
    path += "/" + "x" * (4095 - len(path))
    assert len(path) == 4096
    status, headers, _ = _raw(small_limit_server,
                              f"GET {path}?q=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert status == 200
    capture, _ = _stored(small_limit_server, headers["x-hookscope-capture"])
    assert (capture["path"], capture["query"]) == (path, "q=1")


def test_a_path_too_long_for_httptools_is_a_clean_400(small_limit_server):
    # Documented, not changed: httptools (uvicorn's default parser) refuses a request target of
    # 64 KB with a plain-text 400 before Hookscope sees it, so nothing is stored.
    token = _token(small_limit_server)
    status, _, body = _raw(small_limit_server, f"GET /h/{token}/{'p' * 65536} HTTP/1.1\r\n"
                                               "Host: t\r\nConnection: close\r\n\r\n")
    assert (status, body) == (400, b"Invalid HTTP request received.")
    assert httpx.get(f"{small_limit_server.url}/api/endpoints/{token}").json()[
        "capture_count"] == 0


def test_a_16kb_header_value_is_captured_exactly(small_limit_server):
    token = _token(small_limit_server)
    value = "".join(chr(c) for c in range(0x21, 0x7F)) * 200 + "\xe9\xff"
    value = value[-16 * 1024:]
    status, headers, _ = _raw(small_limit_server,
                              f"POST /h/{token} HTTP/1.1\r\nHost: t\r\nX-Big: {value}\r\n"
                              f"X-Big: second\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    assert status == 200
    capture, _ = _stored(small_limit_server, headers["x-hookscope-capture"])
    assert [h for h in capture["headers"] if h[0] == "x-big"] == [["x-big", value],
                                                                  ["x-big", "second"]]


@pytest.fixture(scope="module")
def bare_server() -> Iterator[str]:
    """uvicorn with httptools, as Hookscope runs it, in front of an app that answers with the
    header fields it was handed: what the server gives any app, whatever its version does."""

    async def fields(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = json.dumps([[n.decode("latin-1"), v.decode("latin-1")]
                           for n, v in scope["headers"]]).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    server = uvicorn.Server(uvicorn.Config(fields, host="127.0.0.1", port=0, http="httptools",
                                           lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert wait_until(lambda: server.started), "the bare uvicorn did not start"
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_header_whitespace_and_control_bytes_are_stored_as_the_server_gives_them(
        small_limit_server, bare_server):
    # Whitespace around a field value and control bytes in it are the HTTP server's to judge
    # (RFC 9110 leaves the whitespace out of the value; older uvicorn releases kept the trailing
    # part). Hookscope's promise holds whatever the versions: it stores exactly the fields the
    # server hands it, and a request the server refuses gets its clean 400 and stores nothing.
    token = _token(small_limit_server)
    requests = [f"GET /h/{token} HTTP/1.1\r\nHost: t\r\nX-A: {value}\r\nConnection: close\r\n\r\n"
                for value in (" lead and trail \t", "a\x00b", "a\x01b", "a\x7fb", "a\x80b")]
    requests.append(f"GET /h/{token}?a=\x00 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    stored = 0
    for raw in requests:
        bare_status, _, handed = split_reply(send_raw(bare_server, raw.encode("latin-1")))
        status, headers, body = _raw(small_limit_server, raw)
        if bare_status == 400:
            assert (status, body) == (400, handed), repr(raw)
        else:
            assert (bare_status, status) == (200, 200), repr(raw)
            capture, _ = _stored(small_limit_server, headers["x-hookscope-capture"])
            assert capture["headers"] == json.loads(handed), repr(raw)
            stored += 1
    assert stored >= 1  # the first, plain request at least
    assert httpx.get(f"{small_limit_server.url}/api/endpoints/{token}").json()[
        "capture_count"] == stored
    # Escaped, a NUL is just three characters of the request line, and stored as sent.
    status, headers, _ = _raw(small_limit_server, f"GET /h/{token}/%00?a=%00 HTTP/1.1\r\n"
                                                  "Host: t\r\nConnection: close\r\n\r\n")
    assert status == 200
    capture, _ = _stored(small_limit_server, headers["x-hookscope-capture"])
    assert (capture["path"], capture["query"]) == (f"/h/{token}/%00", "a=%00")


def _chunked(body: bytes, size: int = 10_000) -> bytes:
    chunks = [body[i:i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_body_exactly_at_the_limit_is_stored_whole(small_limit_server, framing):
    token = _token(small_limit_server)
    body = bytes(i % 256 for i in range(LIMIT))
    if framing == "chunked":
        head, sent = "Transfer-Encoding: chunked", _chunked(body)
    else:
        head, sent = f"Content-Length: {LIMIT}", body
    status, headers, _ = _raw(small_limit_server, f"POST /h/{token} HTTP/1.1\r\nHost: t\r\n"
                                                  f"{head}\r\nConnection: close\r\n\r\n", sent)
    assert status == 200
    capture, stored = _stored(small_limit_server, headers["x-hookscope-capture"])
    assert (capture["body_size"], capture["truncated"]) == (LIMIT, False)
    assert stored == body


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_one_byte_over_the_limit_is_413_and_stored_cut_at_the_limit(small_limit_server, framing):
    # docs/running.md: "a larger one is answered 413 and stored cut at this size with truncated:
    # true"; a signature over a cut body cannot be checked, and it is not validated.
    token = _token(small_limit_server, verify={"scheme": "github", "secrets": ["s3cret"]},
                   format="avo.json-schema")
    body = b"[" + b"1," * (LIMIT // 2 - 1) + b"1]"
    assert len(body) == LIMIT + 1
    if framing == "chunked":
        head, sent = "Transfer-Encoding: chunked", _chunked(body)
    else:
        head, sent = f"Content-Length: {LIMIT + 1}", body
    status, headers, reply = _raw(small_limit_server,
                                  f"POST /h/{token} HTTP/1.1\r\nHost: t\r\nX-Hub-Signature-256: "
                                  f"sha256=00\r\n{head}\r\nConnection: close\r\n\r\n", sent)
    assert status == 413
    assert headers["content-type"] == "application/json"
    assert json.loads(reply)["error"]["code"] == "too_large"
    capture, stored = _stored(small_limit_server, headers["x-hookscope-capture"])
    assert (capture["body_size"], capture["truncated"]) == (LIMIT, True)
    assert capture["response"] == {"status": 413}
    assert stored == body[:LIMIT]
    assert capture["signature"]["status"] == "failed"
    assert "cut at the size limit" in capture["signature"]["reason"]
    assert capture["validation"]["status"] == "unknown"


def test_json_at_the_recursion_limit_reads_back_through_a_real_server(small_limit_server):
    # The stack under uvicorn is deeper than under a test transport: test_capture.py's sweep
    # again, here (a value that just parsed once could not be written back out).
    token = _token(small_limit_server)
    with httpx.Client(base_url=small_limit_server.url) as client:
        for depth in range(850, 1000):
            body = b"[" * depth + b"]" * depth
            response = client.post(f"/h/{token}", content=body,
                                   headers={"content-type": "application/json"})
            full = client.get(f"/api/captures/{response.headers['x-hookscope-capture']}")
            assert full.status_code == 200, (depth, full.text[:200])
            assert full.json()["body_text"] == body.decode()
            assert full.json()["parsed"]["error"], depth
