"""The capture path: every method, every byte, and the reply the endpoint is configured to send."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from hookscope.ingest.capture import build_capture
from hookscope.models import Capture
from hookscope.storage import Store
from hookscope.storage.postgres.store import PostgresStore
from hookscope.storage.sqlite.store import SQLiteStore
from tests.conftest import rows

pytestmark = pytest.mark.anyio


async def _only_capture(client: httpx.AsyncClient, token: str) -> dict:
    listing = (await client.get(f"/api/endpoints/{token}/captures")).json()
    assert len(listing["captures"]) == 1, listing
    return (await client.get(f"/api/captures/{listing['captures'][0]['id']}")).json()


def test_build_capture_fills_every_field_by_name():
    """build_capture passes Capture's fields by position (it is the hot path): each must land
    in its own field, so a field added to Capture cannot shift the others unnoticed."""
    assert [f.name for f in dataclasses.fields(Capture)][:18] == [
        "id", "endpoint_id", "endpoint_token", "received_at", "method", "path", "query",
        "headers", "remote_addr", "content_type", "body_size", "truncated", "response_status",
        "parsed_kind", "parsed_error", "seq", "body", "parsed"], "update build_capture's order"

    scope = {"type": "http", "method": "PATCH", "path": "/h/tok/x y", "raw_path": b"/h/tok/x%20y",
             "query_string": b"a=1&b=\xe9", "client": ("10.0.0.7", 5555),
             "headers": [(b"x-custom", b"v\xe9"), (b"content-type", b"application/json"),
                         (b"x-custom", b"second")]}
    capture = build_capture(scope, endpoint_id=7, endpoint_token="tok", received_at=1_700_000,
                            body=b'{"a": 1}', truncated=True)
    assert capture.id.startswith("c_") and len(capture.id) == 34
    assert (capture.endpoint_id, capture.endpoint_token, capture.received_at) == (7, "tok",
                                                                                   1_700_000)
    assert (capture.method, capture.path, capture.query) == ("PATCH", "/h/tok/x%20y", "a=1&b=é")
    assert capture.headers == [["x-custom", "vé"], ["content-type", "application/json"],
                               ["x-custom", "second"]]
    assert (capture.remote_addr, capture.content_type) == ("10.0.0.7", "application/json")
    assert (capture.body_size, capture.truncated, capture.response_status) == (8, True, 0)
    assert (capture.parsed_kind, capture.parsed_error, capture.seq) == ("json", None, 0)
    assert capture.body == b'{"a": 1}' and capture.parsed.value == {"a": 1}
    assert (capture.signature, capture.validation) == (None, None)


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS",
                                    "PURGE", "FROBNICATE"])
async def test_every_method_is_captured_and_acknowledged_with_its_id(client, endpoint, method):
    response = await client.request(method, f"/h/{endpoint['token']}", content=b"x")
    assert response.status_code == 200
    capture_id = response.headers["x-hookscope-capture"]
    capture = (await client.get(f"/api/captures/{capture_id}")).json()
    assert capture["method"] == method
    assert capture["body_text"] == "x"
    assert capture["seq"] == 1
    if method != "HEAD":
        assert response.json() == {"ok": True, "id": capture_id}


async def test_sub_path_is_stored_as_sent_with_its_escapes(client, endpoint):
    url = f"/h/{endpoint['token']}/orders/a%20b/c%2Fd/%E2%9C%93"
    response = await client.post(url, content=b"{}")
    assert response.status_code == 200
    capture = await _only_capture(client, endpoint["token"])
    assert capture["path"] == f"/h/{endpoint['token']}/orders/a%20b/c%2Fd/%E2%9C%93"


async def test_trailing_slash_is_captured_not_redirected(client, endpoint):
    response = await client.post(f"/h/{endpoint['token']}/", content=b"1")
    assert response.status_code == 200
    assert (await _only_capture(client, endpoint["token"]))["path"].endswith("/")


async def test_raw_query_with_repeated_keys_is_kept_exactly(client, endpoint):
    await client.get(f"/h/{endpoint['token']}?a=1&a=2&b=%20x&flag&a=3")
    capture = await _only_capture(client, endpoint["token"])
    assert capture["query"] == "a=1&a=2&b=%20x&flag&a=3"


async def test_duplicate_headers_are_kept_in_order(client, endpoint):
    headers = [("X-Dup", "one"), ("X-Other", "mid"), ("X-Dup", "two"), ("x-dup", "three")]
    await client.post(f"/h/{endpoint['token']}", headers=headers, content=b"")
    capture = await _only_capture(client, endpoint["token"])
    mine = [pair for pair in capture["headers"] if pair[0] in ("x-dup", "x-other")]
    assert mine == [["x-dup", "one"], ["x-other", "mid"], ["x-dup", "two"], ["x-dup", "three"]]


async def test_latin1_header_bytes_survive(client, endpoint):
    await client.post(f"/h/{endpoint['token']}", headers={"X-Name": "caf\xe9".encode("latin-1")})
    capture = await _only_capture(client, endpoint["token"])
    assert ["x-name", "caf\xe9"] in capture["headers"]


async def test_all_256_byte_values_round_trip_exactly(client, endpoint):
    body = bytes(range(256)) * 3
    await client.post(f"/h/{endpoint['token']}", content=body,
                      headers={"Content-Type": "application/octet-stream"})
    capture = await _only_capture(client, endpoint["token"])
    assert capture["body_size"] == len(body)
    assert capture["body_text"] is None
    assert base64.b64decode(capture["body_base64"]) == body
    assert capture["parsed"]["kind"] == "binary"
    raw = await client.get(f"/api/captures/{capture['id']}/body")
    assert raw.content == body
    assert raw.headers["content-type"] == "application/octet-stream"


async def test_empty_body_is_stored_as_empty(client, endpoint):
    await client.post(f"/h/{endpoint['token']}")
    capture = await _only_capture(client, endpoint["token"])
    assert capture["body_size"] == 0
    assert capture["body_text"] == ""
    assert capture["parsed"] == {"kind": "empty", "value": None, "error": None}
    assert (await client.get(f"/api/captures/{capture['id']}/body")).content == b""


async def test_capture_records_time_client_and_content_type(client, endpoint):
    before = time.time()
    await client.post(f"/h/{endpoint['token']}", json={"a": 1})
    capture = await _only_capture(client, endpoint["token"])
    assert capture["remote_addr"] == "127.0.0.1"
    assert capture["content_type"] == "application/json"
    assert capture["parsed"]["value"] == {"a": 1}
    received = capture["received_at"]
    assert received.endswith("Z") and len(received.split(".")[1]) == 7  # six digits + Z
    from datetime import datetime
    moment = datetime.fromisoformat(received.replace("Z", "+00:00")).timestamp()
    assert before - 1 <= moment <= time.time() + 1


async def test_unknown_key_is_404_and_stores_nothing(client, endpoint, store):
    response = await client.post("/h/no-such-key", content=b"hello")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert "no-such-key" in response.json()["error"]["message"]
    assert "x-hookscope-capture" not in response.headers
    assert await rows(store, "SELECT COUNT(*) FROM captures") == [(0,)]


async def test_alias_is_a_capture_url_too(client):
    created = (await client.post("/api/endpoints", json={"alias": "avo-staging"})).json()
    response = await client.post("/h/avo-staging/x", content=b"via alias")
    assert response.status_code == 200
    capture = await _only_capture(client, created["token"])
    assert capture["endpoint"] == created["token"]
    assert capture["path"] == "/h/avo-staging/x"


async def test_expired_endpoint_answers_410(client):
    created = (await client.post("/api/endpoints",
                                 json={"expires_at": "2020-01-01T00:00:00Z"})).json()
    response = await client.post(f"/h/{created['token']}", content=b"late")
    assert response.status_code == 410
    assert response.json()["error"]["code"] == "gone"
    assert "x-hookscope-capture" not in response.headers
    listing = (await client.get(f"/api/endpoints/{created['token']}/captures")).json()
    assert listing["captures"] == [] and listing["total"] == 0


async def test_body_over_the_limit_is_413_and_stored_cut_at_the_limit(client, endpoint, settings):
    limit = settings.max_body_bytes
    body = bytes(i % 251 for i in range(limit + 1000))
    response = await client.post(f"/h/{endpoint['token']}", content=body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert response.headers["content-security-policy"] == "sandbox"
    capture_id = response.headers["x-hookscope-capture"]
    capture = (await client.get(f"/api/captures/{capture_id}")).json()
    assert capture["truncated"] is True
    assert capture["body_size"] == limit
    assert capture["response"] == {"status": 413}
    assert (await client.get(f"/api/captures/{capture_id}/body")).content == body[:limit]


async def test_body_exactly_at_the_limit_is_accepted_whole(client, endpoint, settings):
    body = b"z" * settings.max_body_bytes
    response = await client.post(f"/h/{endpoint['token']}", content=body)
    assert response.status_code == 200
    capture = await _only_capture(client, endpoint["token"])
    assert capture["truncated"] is False
    assert capture["body_size"] == len(body)


async def test_configured_response_is_sent_after_the_delay(client):
    created = (await client.post("/api/endpoints", json={"response": {
        "status": 202, "headers": {"X-Reply": "yes"}, "body": "accepted", "delay_ms": 150,
    }})).json()
    started = time.monotonic()
    response = await client.put(f"/h/{created['token']}", content=b"payload")
    assert time.monotonic() - started >= 0.15
    assert response.status_code == 202
    assert response.text == "accepted"
    assert response.headers["x-reply"] == "yes"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    capture = await _only_capture(client, created["token"])
    assert capture["response"] == {"status": 202}
    assert response.headers["x-hookscope-capture"] == capture["id"]


async def test_configured_json_body_gets_json_content_type(client):
    created = (await client.post("/api/endpoints",
                                 json={"response": {"body": '{"received": true}'}})).json()
    response = await client.post(f"/h/{created['token']}")
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"received": True}


async def test_error_status_response_still_records_the_capture(client):
    created = (await client.post("/api/endpoints", json={"response": {"status": 503}})).json()
    response = await client.post(f"/h/{created['token']}", content=b"retry me")
    assert response.status_code == 503
    assert response.json()["id"] == response.headers["x-hookscope-capture"]
    assert (await _only_capture(client, created["token"]))["body_text"] == "retry me"


async def test_204_response_has_no_body(client):
    created = (await client.post("/api/endpoints",
                                 json={"response": {"status": 204, "body": "ignored"}})).json()
    response = await client.post(f"/h/{created['token']}")
    assert response.status_code == 204
    assert response.content == b""
    assert response.headers["x-hookscope-capture"].startswith("c_")


async def test_a_changed_response_answers_the_next_capture(client, endpoint):
    """The reply is made once per response config; a PATCH must still change the very next one."""
    token = endpoint["token"]
    first = await client.post(f"/h/{token}")
    assert first.json() == {"ok": True, "id": first.headers["x-hookscope-capture"]}
    assert first.headers["content-length"] == str(len(first.content))
    await client.patch(f"/api/endpoints/{token}", json={"response": {
        "status": 201, "headers": {"X-Reply": "two"}, "body": "second"}})
    second = await client.post(f"/h/{token}")
    assert (second.status_code, second.text, second.headers["x-reply"]) == (201, "second", "two")
    assert second.headers["content-length"] == "6"
    await client.patch(f"/api/endpoints/{token}", json={"response": {"status": 204}})
    third = await client.post(f"/h/{token}")
    assert (third.status_code, third.content) == (204, b"")
    assert "content-length" not in third.headers
    assert third.headers["x-hookscope-capture"] != second.headers["x-hookscope-capture"]


async def test_sequence_numbers_only_grow(client, endpoint):
    token = endpoint["token"]
    for _ in range(3):
        await client.post(f"/h/{token}")
    await client.delete(f"/api/endpoints/{token}/captures")
    response = await client.post(f"/h/{token}")
    capture = (await client.get(f"/api/captures/{response.headers['x-hookscope-capture']}")).json()
    assert capture["seq"] == 4


async def test_replies_cannot_run_as_pages_of_hookscope(client):
    created = (await client.post("/api/endpoints", json={"response": {
        "headers": {"Content-Type": "text/html"}, "body": "<script>alert(1)</script>"}})).json()
    response = await client.post(f"/h/{created['token']}")
    assert response.text == "<script>alert(1)</script>"
    assert response.headers["content-security-policy"] == "sandbox"
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("response", [
    {"body": "<b>hi</b>"},  # its Content-Type guessed
    {"headers": {"Content-Type": "text/html"}},  # over the default body
    {"headers": {"X-Foo": "1"}},
])
async def test_a_configured_body_or_header_makes_the_reply_inert(client, response):
    created = (await client.post("/api/endpoints", json={"response": response})).json()
    reply = await client.post(f"/h/{created['token']}")
    assert reply.headers["x-hookscope-capture"].startswith("c_")
    assert reply.headers["content-security-policy"] == "sandbox"
    assert reply.headers["x-content-type-options"] == "nosniff"


async def test_the_default_reply_is_json_naming_the_capture_and_nothing_more(client, endpoint):
    response = await client.post(f"/h/{endpoint['token']}", content=b"<b>hi</b>")
    assert response.json() == {"ok": True, "id": response.headers["x-hookscope-capture"]}
    assert response.headers["content-type"] == "application/json"
    assert "content-security-policy" not in response.headers
    assert "x-content-type-options" not in response.headers


@pytest.mark.parametrize(("body", "kind", "error"), [
    (b"[1e999]", "json", "too large for a 64-bit float"),
    (b'{"n": NaN}', "json", "NaN is not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "json", "invalid JSON"),
    (b"1" * 10_000, "json", "invalid JSON"),
])
async def test_hostile_json_is_reported_and_the_capture_stays_readable(client, endpoint, body,
                                                                      kind, error):
    response = await client.post(f"/h/{endpoint['token']}", content=body,
                                 headers={"Content-Type": "application/json"})
    assert response.status_code == 200
    capture = (await client.get(f"/api/captures/{response.headers['x-hookscope-capture']}"))
    assert capture.status_code == 200
    parsed = capture.json()["parsed"]
    assert (parsed["kind"], parsed["value"]) == (kind, None)
    assert error in parsed["error"]
    assert (await client.get(f"/api/captures/{capture.json()['id']}/body")).content == body


async def test_lone_surrogate_in_a_captured_body_is_shown_escaped(client, endpoint):
    body = b'{"a": "\\ud800 and \\u00e9"}'
    response = await client.post(f"/h/{endpoint['token']}", content=body,
                                 headers={"Content-Type": "application/json"})
    capture = await client.get(f"/api/captures/{response.headers['x-hookscope-capture']}")
    assert capture.status_code == 200
    assert '"\\ud800 and \\u00e9"' in capture.text  # escaped, as the sender wrote it
    assert capture.json()["parsed"]["value"] == {"a": "\ud800 and \u00e9"}
    assert capture.json()["body_text"] == body.decode()


@asynccontextmanager
async def _full(store: Store) -> AsyncIterator[None]:
    """The database takes no more large captures, as on a full disk: SQLite's file may not grow
    (the writer's own connection); PostgreSQL's captures table refuses a body of 100 kB or more,
    a write failing inside the capture writer's commit as a full disk fails it."""
    if isinstance(store, SQLiteStore):
        pages = (await rows(store, "PRAGMA page_count"))[0][0]
        await store._writer.run(lambda conn: conn.execute(f"PRAGMA max_page_count = {pages}"))
        try:
            yield
        finally:
            await store._writer.run(lambda conn: conn.execute("PRAGMA max_page_count = 1073741823"))
        return
    assert isinstance(store, PostgresStore)
    async with store._reads().acquire() as conn:
        await conn.execute("ALTER TABLE captures ADD CONSTRAINT full_disk "
                           "CHECK (octet_length(body) < 100000) NOT VALID")
        try:
            yield
        finally:
            await conn.execute("ALTER TABLE captures DROP CONSTRAINT full_disk")


async def test_a_full_disk_answers_503_and_acknowledges_nothing_it_lost(client, endpoint, store):
    token = endpoint["token"]
    stored = [(await client.post(f"/h/{token}", content=b"fits")).headers["x-hookscope-capture"]
              for _ in range(3)]
    async with _full(store):
        big = b"x" * 200_000
        responses = await asyncio.gather(*(client.post(f"/h/{token}", content=big)
                                           for _ in range(10)))
    refused = [r for r in responses if r.status_code == 503]
    assert refused, "a full database must refuse captures"
    for r in refused:
        assert r.json()["error"]["code"] == "unavailable"
        assert "NOT captured" in r.json()["error"]["message"]
        assert "x-hookscope-capture" not in r.headers
    stored += [r.headers["x-hookscope-capture"] for r in responses if r.status_code == 200]
    after = await client.post(f"/h/{token}", content=b"room again")
    assert after.status_code == 200
    stored.append(after.headers["x-hookscope-capture"])
    listing = (await client.get(f"/api/endpoints/{token}/captures?after=0&limit=1000")).json()
    assert sorted(c["id"] for c in listing["captures"]) == sorted(stored)
    assert listing["total"] == len(stored)


@pytest.mark.parametrize("shape", [(b"[", b"]"), (b'{"a":', b"}")])
async def test_json_nested_around_the_recursion_limit_reads_back(client, endpoint, shape):
    # Python's JSON parser and writer share the recursion limit but start at different stack
    # depths: a body that just parses (~960 levels here) was a 500 when shown in full. Every
    # depth around the limit must read back, the value shown or the reason given.
    opener, closer = shape
    for depth in range(850, 1000):
        body = opener * depth + b"1" + closer * depth
        response = await client.post(f"/h/{endpoint['token']}", content=body,
                                     headers={"Content-Type": "application/json"})
        full = await client.get(f"/api/captures/{response.headers['x-hookscope-capture']}")
        assert full.status_code == 200, (depth, full.text[:200])
        assert full.json()["body_text"] == body.decode()
        parsed = full.json()["parsed"]
        assert parsed["value"] is None and parsed["error"], depth


async def test_a_parser_that_raises_costs_neither_the_capture_nor_its_full_view(
        client, endpoint, monkeypatch, caplog):
    def broken(body: bytes) -> None:
        raise RuntimeError("parser bug")

    monkeypatch.setattr("hookscope.ingest.parse.parse_xml", broken)
    response = await client.post(f"/h/{endpoint['token']}", content=b"<a>x</a>",
                                 headers={"Content-Type": "application/xml"})
    assert response.status_code == 200
    capture = await client.get(f"/api/captures/{response.headers['x-hookscope-capture']}")
    assert capture.status_code == 200
    assert capture.json()["body_text"] == "<a>x</a>"
    assert capture.json()["parsed"] == {
        "kind": "text", "value": None,
        "error": "could not be parsed (RuntimeError: parser bug)"}
    assert "could not parse a body of type 'application/xml'" in caplog.text


async def test_a_bug_on_the_capture_path_answers_the_error_shape_and_the_next_request_works(
        client, endpoint, monkeypatch, caplog):
    import hookscope.routes.capture as capture_path

    real = capture_path.build_capture

    def broken(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(capture_path, "build_capture", broken)
    response = await client.post(f"/h/{endpoint['token']}", content=b"x")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal"
    assert "a bug" not in response.text  # the trace goes to the log, never to the client
    assert "KeyError: 'a bug'" in caplog.text
    monkeypatch.setattr(capture_path, "build_capture", real)
    response = await client.post(f"/h/{endpoint['token']}", content=b"y")
    assert response.status_code == 200
    assert (await _only_capture(client, endpoint["token"]))["body_text"] == "y"


async def test_a_large_body_that_outlasts_the_parse_budget_is_stored_and_answered(
        client, endpoint, monkeypatch):
    slow = threading.Event()

    def stuck(body: bytes) -> None:
        slow.wait(5)  # a parse that takes far longer than the budget

    monkeypatch.setattr("hookscope.ingest.parse._ndjson", stuck)
    monkeypatch.setattr("hookscope.ingest.offload.BUDGET_S", 0.2)
    body = b'{"n": 1}\n' * 10_000  # past INLINE_BODY_BYTES: parsed in a thread
    try:
        started = time.monotonic()
        response = await client.post(f"/h/{endpoint['token']}", content=body,
                                     headers={"Content-Type": "application/x-ndjson"})
        assert response.status_code == 200
        assert time.monotonic() - started < 3
        capture = (await client.get(
            f"/api/captures/{response.headers['x-hookscope-capture']}")).json()
    finally:
        slow.set()
    assert capture["parsed"] == {"kind": "ndjson", "value": None,
                                 "error": "parse budget exceeded",
                                 "notes": ["parse budget exceeded"]}
    assert capture["body_text"] == body.decode()
    summary = (await client.get(f"/api/endpoints/{endpoint['token']}/captures")).json()
    assert summary["captures"][0]["parsed"] == {"kind": "ndjson", "error": "parse budget exceeded"}
