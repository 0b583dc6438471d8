"""Deliveries: forwarding attempts recorded on a capture (POST /api/captures/{id}/deliveries),
listed with it, streamed to its viewers (on PostgreSQL, to every process's), and where a forward
goes (hookscope.ops.forward)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hookscope.main import create_app
from hookscope.ops.forward import forward_url, shown, sub_path
from hookscope.settings import Settings
from tests.pg import drop_database, fresh_database
from tests.serverproc import ServerProcess, local_tls
from tests.test_stream import ThreadedServer

REPORT = {"target": "http://localhost:3000/hook/sub?a=1", "by": "alice (hookscope listen)",
          "attempt": 2, "status": 500, "elapsed_ms": 12.5, "outcome": "retrying",
          "response": {"headers": [["content-type", "text/plain"]], "body_text": "boom",
                       "body_size": 4, "truncated": False}}


@pytest.mark.parametrize(("path", "tail"), [
    ("/h/key", ""), ("/h/key/", "/"), ("/h/key/github/push", "/github/push"),
    ("/h/key/a%2Fb", "/a%2Fb")])
def test_the_sub_path_is_what_follows_the_key(path, tail):
    assert sub_path(path) == tail


@pytest.mark.parametrize(("target", "path", "query", "sent_to"), [
    ("http://localhost:3000", "/h/key", "", "http://localhost:3000/"),
    ("http://localhost:3000/", "/h/key/x", "", "http://localhost:3000/x"),
    ("http://localhost:3000/hooks/", "/h/key/stripe", "a=1&a=2", "http://localhost:3000/hooks/stripe?a=1&a=2"),
    ("http://localhost:3000/hooks?token=t", "/h/key", "b=%20", "http://localhost:3000/hooks?token=t&b=%20"),
    ("https://example.test/in", "/h/key/%C3%A9?", "", "https://example.test/in/%C3%A9?"),
])
def test_a_forward_goes_to_the_target_with_the_sub_path_and_query(target, path, query, sent_to):
    assert forward_url(target, path, query) == sent_to


async def _capture(client: httpx.AsyncClient, endpoint: dict) -> dict:
    reply = await client.post(f"/h/{endpoint['token']}/sub?a=1", content=b'{"n": 1}')
    return (await client.get(f"/api/captures/{reply.headers['x-hookscope-capture']}")).json()


@pytest.mark.anyio
async def test_a_reported_delivery_is_stored_and_listed_with_its_capture(client, endpoint):
    capture = await _capture(client, endpoint)
    assert capture["deliveries"] == []
    reply = await client.post(f"/api/captures/{capture['id']}/deliveries", json=REPORT)
    assert reply.status_code == 201, reply.text
    delivery = reply.json()
    assert delivery["id"].startswith("d_") and delivery["capture"] == capture["id"]
    assert delivery["seq"] == capture["seq"] and delivery["at"].endswith("Z")
    assert delivery["error"] is None and delivery["response"]["body_base64"] is None
    assert {k: delivery[k] for k in REPORT if k != "response"} == {
        k: v for k, v in REPORT.items() if k != "response"}
    assert delivery["response"] == {**REPORT["response"], "body_base64": None}
    second = await client.post(f"/api/captures/{capture['id']}/deliveries",
                               json={"target": "http://localhost:3000/hook/sub?a=1",
                                     "status": None, "error": "connection refused",
                                     "outcome": "failed", "attempt": 3})
    listed = (await client.get(f"/api/captures/{capture['id']}")).json()["deliveries"]
    assert [d["id"] for d in listed] == [delivery["id"], second.json()["id"]]
    assert listed[0]["response"]["body_text"] == "boom"
    assert listed[1] == second.json() and listed[1]["by"] == ""
    assert listed[1]["error"] == "connection refused" and listed[1]["response"] is None


@pytest.mark.parametrize(("report", "field"), [
    ({"status": 200}, "target"),
    ({**REPORT, "status": 700}, "status"),
    ({**REPORT, "status": None}, "error"),
    ({**REPORT, "outcome": "maybe"}, "outcome"),
    ({**REPORT, "attempt": 0}, "attempt"),
    ({**REPORT, "extra": 1}, "extra"),
    ({**REPORT, "response": {"headers": "x"}}, "response.headers"),
    ({**REPORT, "response": {"body_base64": "!!"}}, "response.body_base64"),
])
@pytest.mark.anyio
async def test_a_bad_report_is_refused_naming_the_field(client, endpoint, report, field):
    capture = await _capture(client, endpoint)
    reply = await client.post(f"/api/captures/{capture['id']}/deliveries", json=report)
    assert reply.status_code == 422
    assert field in [d["field"] for d in reply.json()["error"]["details"]]
    assert (await client.get(f"/api/captures/{capture['id']}")).json()["deliveries"] == []


@pytest.mark.anyio
async def test_deliveries_of_an_unknown_or_deleted_capture_are_404(client, endpoint):
    capture = await _capture(client, endpoint)
    await client.post(f"/api/captures/{capture['id']}/deliveries", json=REPORT)
    assert (await client.delete(f"/api/captures/{capture['id']}")).status_code == 200
    reply = await client.post(f"/api/captures/{capture['id']}/deliveries", json=REPORT)
    assert reply.status_code == 404 and reply.json()["error"]["code"] == "not_found"


def _events(stream: httpx.Response, count: int) -> list[tuple[str, dict]]:
    """The first `count` capture or delivery events of a live stream: (event, data)."""
    events: list[tuple[str, dict]] = []
    kind = ""
    for line in stream.iter_lines():
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: ") and kind in ("capture", "delivery"):
            events.append((kind, json.loads(line[6:])))
            if len(events) == count:
                return events
    return events


@pytest.fixture
def live(tmp_path: Path) -> Iterator[ThreadedServer]:
    with ThreadedServer(create_app(Settings(db=str(tmp_path / "live.db")))) as server:
        yield server


def test_viewers_see_each_delivery_as_it_is_recorded(live):
    with httpx.Client(base_url=live.url, verify=local_tls()) as client:
        token = client.post("/api/endpoints", json={}).json()["token"]
        with client.stream("GET", f"/api/endpoints/{token}/stream") as stream:
            capture_id = client.post(f"/h/{token}", content=b"x").headers["x-hookscope-capture"]
            client.post(f"/api/captures/{capture_id}/deliveries", json=REPORT)
            events = _events(stream, 2)
    assert [kind for kind, _ in events] == ["capture", "delivery"]
    delivery = events[1][1]
    assert delivery["capture"] == capture_id and delivery["seq"] == 1
    assert delivery["status"] == 500 and delivery["outcome"] == "retrying"
    assert "response" not in delivery  # the reply is one click away, in the capture


@pytest.fixture
def database() -> Iterator[str]:
    url = asyncio.run(fresh_database())
    yield url
    asyncio.run(drop_database(url))


def test_a_delivery_recorded_through_one_process_reaches_viewers_of_another(database, tmp_path):
    first = ServerProcess(database, tmp_path / "a.log")
    second = ServerProcess(database, tmp_path / "b.log")
    first.start()
    second.start()
    try:
        token = httpx.post(first.url + "/api/endpoints", json={}).json()["token"]
        with httpx.stream("GET", f"{second.url}/api/endpoints/{token}/stream") as stream:
            capture_id = httpx.post(f"{first.url}/h/{token}",
                                    content=b"x").headers["x-hookscope-capture"]
            assert httpx.post(f"{first.url}/api/captures/{capture_id}/deliveries",
                              json=REPORT).status_code == 201
            events = _events(stream, 2)
        assert [kind for kind, _ in events] == ["capture", "delivery"]
        assert events[1][1]["capture"] == capture_id and events[1][1]["by"] == REPORT["by"]
        listed = httpx.get(f"{second.url}/api/captures/{capture_id}").json()["deliveries"]
        assert [d["status"] for d in listed] == [500]
    finally:
        first.stop()
        second.stop()


def test_a_delivery_shows_where_it_went_without_a_password():
    assert shown("http://alice:s3cret@localhost:3000/hooks?a=1") == "http://localhost:3000/hooks?a=1"
    assert shown("http://localhost:3000/hooks") == "http://localhost:3000/hooks"
