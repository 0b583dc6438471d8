"""Exports of a capture: a curl command that sends it again byte for byte, HAR 1.2, a fixture."""

from __future__ import annotations

import base64
import shutil
import subprocess
from datetime import datetime
from numbers import Number
from pathlib import Path

import httpx
import pytest

from hookscope.models import Capture
from hookscope.ops.export import curl
from tests.serverproc import local_tls

pytestmark = pytest.mark.anyio

CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed, so the exported "
                                                     "command cannot be run")

TEXT = '{"msg": "it\'s \\"quoted\\" $HOME `id` \\\\ ünïcode ✓",\n "tab": "\t"}\r\n'.encode()
RERUN_CASES = {
    "text": (TEXT, {"Content-Type": "application/json"}),
    "binary": (bytes(range(256)) * 4 + b"\x00\xff\x00", {"Content-Type": "application/x-thing"}),
    "no content type": (b"\x1b[31m control bytes", {}),
    "at sign": (b"@/etc/passwd", {"Content-Type": "text/plain"}),  # not a file for curl to read
    "large text": (b"x" * (200 * 1024), {"Content-Type": "text/plain"}),
    "over 1 MiB": (bytes(range(256)) * 5000, {}),  # curl would add Expect: 100-continue
    "empty": (b"", {}),
}


def _capture(http: httpx.Client, url: str, token: str, body: bytes, headers: dict,
             method: str = "POST") -> dict:
    extra = [("X-Dup", "one"), ("x-dup", "two"), ("X-Empty", ""),
             ("X-Latin1", b"caf\xe9"), ("X-Utf8", "naïve ✓".encode()), *headers.items()]
    response = http.request(method, f"{url}/h/{token}/sub/path?a=1&a=2&q=%20x&g=[1]{{2}}",
                            content=body, headers=extra)
    assert response.status_code == 200, response.text
    return http.get(f"{url}/api/captures/{response.headers['x-hookscope-capture']}").json()


def _run(command: str, tmp_path: Path) -> None:
    """Run the command with POSIX sh (dash on Debian). Linux caps one argument at 128 KiB, so a
    command carrying a large body cannot be `sh -c`'s argument: sh reads that one from a file,
    as it would from a terminal paste."""
    if len(command.encode()) < 100_000:
        args = ["sh", "-c", command]
    else:
        script = tmp_path / "command.sh"
        script.write_text(command)
        args = ["sh", str(script)]
    run = subprocess.run(args, capture_output=True, timeout=60)
    assert run.returncode == 0, run.stderr.decode(errors="replace")


def _hop_by_hop_removed(headers: list[list[str]]) -> list[list[str]]:
    return [[name, value] for name, value in headers if name != "connection"]


@needs_curl
@pytest.mark.parametrize("case", list(RERUN_CASES))
def test_exported_curl_sends_the_same_request_again(shared_server, case, tmp_path):
    url = shared_server.url
    body, headers = RERUN_CASES[case]
    with httpx.Client(verify=local_tls()) as http:
        token = http.post(url + "/api/endpoints", json={}).json()["token"]
        original = _capture(http, url, token, body, headers)
        exported = http.get(f"{url}/api/captures/{original['id']}/export?as=curl")
        assert exported.headers["content-type"] == "text/plain; charset=utf-8"
        _run(exported.text, tmp_path)

        listing = http.get(f"{url}/api/endpoints/{token}/captures?after=1").json()
        assert len(listing["captures"]) == 1
        again = http.get(f"{url}/api/captures/{listing['captures'][0]['id']}").json()
        assert http.get(f"{url}/api/captures/{again['id']}/body").content == body
    assert (again["method"], again["path"], again["query"]) == (
        original["method"], original["path"], original["query"])
    # Everything matches, in order, duplicates and Host and Content-Length included, except the
    # Connection header: it describes the sender's connection, not the request, so the export
    # leaves it out on purpose (curl keeps connections alive by default anyway).
    assert again["headers"] == _hop_by_hop_removed(original["headers"])


@needs_curl
def test_exported_curl_of_a_get_and_a_head_without_body(shared_server, tmp_path):
    url = shared_server.url
    with httpx.Client(verify=local_tls()) as http:
        token = http.post(url + "/api/endpoints", json={}).json()["token"]
        for seq, method in enumerate(("GET", "HEAD"), start=1):
            original = _capture(http, url, token, b"", {"Accept-Encoding": "br"}, method)
            command = http.get(f"{url}/api/captures/{original['id']}/export?as=curl").text
            _run(command, tmp_path)
            listing = http.get(f"{url}/api/endpoints/{token}/captures",
                               params={"after": seq * 2 - 1}).json()
            again = listing["captures"][0]
            assert again["method"] == method
            assert again["headers"] == _hop_by_hop_removed(original["headers"])


def _stored(**fields) -> Capture:
    defaults = dict(id="c_1", endpoint_id=1, endpoint_token="tok", received_at=1_700_000_000,
                    method="POST", path="/h/tok", query="", headers=[], remote_addr=None,
                    content_type=None, body_size=0, truncated=False, response_status=200,
                    body=b"")
    defaults.update(fields)
    defaults["body_size"] = len(defaults["body"])
    return Capture(**defaults)


def test_curl_command_shapes():
    head = curl(_stored(method="HEAD"), "http://h.test")
    assert head.startswith("curl -sS -g --path-as-is -I http://h.test/h/tok")
    assert "-H 'User-Agent:'" in head and "-H 'Accept:'" in head
    assert "Content-Type:" not in head  # no body, so curl adds no type to suppress

    inline = curl(_stored(body=b"a=1", headers=[["content-type", "text/plain"]]), "http://h.test")
    assert inline.endswith("--data-binary a=1")
    assert "-H 'content-type: text/plain'" in inline and "'Content-Type:'" not in inline

    latin1 = curl(_stored(headers=[["x-name", "caf\xe9"]]), "http://h.test")
    assert "-H \"$(printf '" in latin1  # bytes that are not UTF-8 are rebuilt by printf

    cut = curl(_stored(body=b"\x00abc", truncated=True), "http://h.test")
    assert cut.splitlines()[0] == "# only the first 4 bytes of this body were captured"
    assert "printf %s 'AGFiYw==' | base64 -d | curl" in cut  # base64 of b"\x00abc"


# -- HAR -----------------------------------------------------------------------------------------


def _check_har(har: dict) -> list[dict]:
    """The fields HAR 1.2 (http://www.softwareishard.com/blog/har-12-spec/) requires, with their
    types; returns the entries."""

    def pairs(items):
        assert isinstance(items, list)
        for item in items:
            assert isinstance(item["name"], str) and isinstance(item["value"], str)

    log = har["log"]
    assert log["version"] == "1.2"
    assert isinstance(log["creator"]["name"], str) and isinstance(log["creator"]["version"], str)
    assert isinstance(log["entries"], list)
    for entry in log["entries"]:
        started = datetime.fromisoformat(entry["startedDateTime"])
        assert started.tzinfo is not None  # ISO 8601 with its offset
        assert isinstance(entry["time"], Number) and entry["time"] >= 0
        request = entry["request"]
        assert isinstance(request["method"], str) and isinstance(request["url"], str)
        assert request["url"].startswith(("http://", "https://"))
        assert request["httpVersion"].startswith("HTTP/")
        for key in ("cookies", "headers", "queryString"):
            assert isinstance(request[key], list)
        pairs(request["headers"])
        pairs(request["queryString"])
        if "postData" in request:
            assert isinstance(request["postData"]["mimeType"], str)
            assert isinstance(request["postData"]["text"], str)
        assert isinstance(request["headersSize"], int) and isinstance(request["bodySize"], int)
        response = entry["response"]
        assert isinstance(response["status"], int) and isinstance(response["statusText"], str)
        assert response["httpVersion"].startswith("HTTP/")
        assert isinstance(response["cookies"], list)
        pairs(response["headers"])
        assert isinstance(response["content"]["size"], int)
        assert isinstance(response["content"]["mimeType"], str)
        assert isinstance(response["redirectURL"], str)
        assert isinstance(response["headersSize"], int) and isinstance(response["bodySize"], int)
        assert isinstance(entry["cache"], dict)
        for key in ("send", "wait", "receive"):
            assert isinstance(entry["timings"][key], Number) and entry["timings"][key] >= 0
    return log["entries"]


async def _post(client, endpoint, body: bytes, **kwargs) -> str:
    response = await client.post(f"/h/{endpoint['token']}/orders?x=1&x=2&e=&s=a%20b",
                                 content=body, **kwargs)
    return response.headers["x-hookscope-capture"]


async def test_har_export_is_a_valid_har_1_2_log_of_the_request(client, endpoint):
    capture_id = await _post(client, endpoint, b'{"ok": true}',
                             headers={"Content-Type": "application/json", "X-Dup": "1",
                                      "x-dup": "2"})
    response = await client.get(f"/api/captures/{capture_id}/export", params={"as": "har"})
    assert response.headers["content-type"] == "application/json"
    [entry] = _check_har(response.json())
    capture = (await client.get(f"/api/captures/{capture_id}")).json()
    request = entry["request"]
    assert request["url"] == f"http://hookscope.test/h/{endpoint['token']}/orders?x=1&x=2&e=&s=a%20b"
    assert request["headers"] == [{"name": n, "value": v} for n, v in capture["headers"]]
    assert request["queryString"] == [{"name": "x", "value": "1"}, {"name": "x", "value": "2"},
                                      {"name": "e", "value": ""}, {"name": "s", "value": "a b"}]
    assert request["postData"] == {"mimeType": "application/json", "text": '{"ok": true}'}
    assert request["bodySize"] == 12
    assert entry["response"]["status"] == 200
    assert entry["startedDateTime"] == capture["received_at"]


async def test_har_export_of_binary_and_empty_bodies(client, endpoint):
    binary = bytes(range(256))
    capture_id = await _post(client, endpoint, binary)
    [entry] = _check_har((await client.get(f"/api/captures/{capture_id}/export?as=har")).json())
    post = entry["request"]["postData"]
    assert post["encoding"] == "base64" and base64.b64decode(post["text"]) == binary
    assert post["mimeType"] == ""

    capture_id = await _post(client, endpoint, b"")
    [entry] = _check_har((await client.get(f"/api/captures/{capture_id}/export?as=har")).json())
    assert "postData" not in entry["request"] and entry["request"]["bodySize"] == 0


# -- JSON fixture --------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b'{"event": "ping"}', b"\x00\xff binary \x80", b""])
async def test_json_export_round_trips_the_body(client, endpoint, body):
    capture_id = await _post(client, endpoint, body)
    response = await client.get(f"/api/captures/{capture_id}/export?as=json")
    assert response.headers["content-disposition"] == f'attachment; filename="{capture_id}.json"'
    fixture = response.json()
    assert fixture["hookscope_fixture"] == 1
    if fixture["body_text"] is not None:
        assert fixture["body_base64"] is None
        recovered = fixture["body_text"].encode()
    else:
        recovered = base64.b64decode(fixture["body_base64"])
    assert recovered == body
    full = (await client.get(f"/api/captures/{capture_id}")).json()
    assert full.pop("deliveries") == []  # attempts to forward it are not part of a fixture
    assert {k: v for k, v in fixture.items() if k != "hookscope_fixture"} == full


@pytest.mark.parametrize("query", ["", "?as=", "?as=xml", "?as=CURL"])
async def test_export_needs_a_known_format(client, endpoint, query):
    capture_id = await _post(client, endpoint, b"x")
    response = await client.get(f"/api/captures/{capture_id}/export{query}")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["details"] == [{"field": "as", "message": "one of curl, har, json"}]
    assert error["message"].startswith("as must be one of curl, har, json")


async def test_export_of_unknown_capture_is_404(client):
    response = await client.get("/api/captures/c_nope/export?as=curl")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "no capture with id 'c_nope'"
