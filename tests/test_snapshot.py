"""`hookscope snapshot` against a real server: fixture files that hold each chosen capture byte for
byte, one per event type and shape, named the same on every run."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hookscope.ops.snapshot import choose, shape, slug
from tests.clirun import Receiver, hookscope
from tests.serverproc import ServerProcess

MAX_BODY = 4096  # small, so that a capture cut at the limit is cheap to make


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("snapshot-server")
    proc = ServerProcess(folder / "server.db", folder / "server.log",
                         env={"HOOKSCOPE_MAX_BODY_BYTES": str(MAX_BODY)})
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def _endpoint(server: ServerProcess) -> dict:
    return httpx.post(f"{server.url}/api/endpoints", json={}).json()


def _send(endpoint: dict, body: bytes, headers=(), sub: str = "", method: str = "POST") -> None:
    response = httpx.request(method, endpoint["url"] + sub, content=body, headers=list(headers))
    assert response.status_code in (200, 413), response.text


def _event(kind: str, **fields) -> bytes:
    return json.dumps({"type": kind, "data": {"id": "x", "amount": 1, **fields}}).encode()


def _snapshot(server: ServerProcess, endpoint: dict, out: Path, *args: str):
    result = hookscope("--server", server.url, "snapshot", endpoint["token"], "--out", str(out),
                       *args)
    return result


def test_fixture_files_hold_the_captures_byte_for_byte(server, tmp_path):
    endpoint = _endpoint(server)
    binary = b"\x00\xff\xfe binary \x80\x81 not UTF-8"
    sent = [
        (_event("order.paid"), [("Content-Type", "application/json"), ("X-Dup", "one"),
                                ("x-dup", "two"), ("X-Latin1", b"caf\xe9"), ("X-Empty", "")],
         "/orders?a=1&a=2"),
        (binary, [("Content-Type", "application/octet-stream"), ("X-Dup", "3"),
                  ("X-Dup", "4")], ""),
        # Parsed, a lone surrogate: not UTF-8, so the file must escape it to stay readable.
        (b'{"a": "\\ud800", "b": "\xe2\x9c\x93"}', [("Content-Type", "application/json")], ""),
    ]
    for body, headers, sub in sent:
        _send(endpoint, body, headers, sub)
    result = _snapshot(server, endpoint, tmp_path / "hooks", "--group-by", "none")
    assert result.code == 0, result.err
    files = sorted((tmp_path / "hooks").iterdir())
    assert [f.name for f in files] == ["all-1.json", "all-2.json", "all-3.json"]
    for file, (body, headers, sub) in zip(files, sent, strict=True):
        fixture = json.loads(file.read_bytes())
        export = httpx.get(f"{server.url}/api/captures/{fixture['id']}/export?as=json").json()
        assert fixture == export  # the export format as the API serves it, nothing less
        assert fixture["hookscope_fixture"] == 1
        stored = base64.b64decode(fixture["body_base64"]) if fixture["body_base64"] else (
            fixture["body_text"].encode())
        assert stored == body
        path, _, query = sub.partition("?")
        assert fixture["path"] == f"/h/{endpoint['token']}{path}"
        assert fixture["query"] == query
        wanted = [[k.lower(), v.decode("latin-1") if isinstance(v, bytes) else v]
                  for k, v in headers]
        assert [h for h in fixture["headers"] if h[0] in {k for k, _ in wanted}] == wanted
    assert json.loads(files[1].read_bytes())["body_text"] is None

    # `hookscope replay FILE` reads a snapshot file and sends the very bytes.
    with Receiver() as receiver:
        replayed = hookscope("replay", str(files[1]), "--to", receiver.url)
    assert replayed.code == 0, replayed.err
    assert receiver.requests[0].body == binary
    assert [v for k, v in receiver.requests[0].headers if k.lower() == "x-dup"] == ["3", "4"]


def test_one_fixture_per_event_type_and_shape_named_by_group_and_seq(server, tmp_path):
    endpoint = _endpoint(server)
    json_type = [("Content-Type", "application/json")]
    for body in (_event("order.paid"), _event("order.paid", amount=2),  # same shape: one file
                 _event("order.paid", refund={"id": "r"}),  # a new key: a second
                 _event("order.paid", amount=2.5),  # a number, not an integer: a third
                 _event("invoice.created"), _event("invoice.created")):
        _send(endpoint, body, json_type)
    out = tmp_path / "hooks"
    result = _snapshot(server, endpoint, out)
    assert result.code == 0, result.err
    assert sorted(f.name for f in out.iterdir()) == [
        "invoice.created-5.json", "order.paid-1.json", "order.paid-3.json", "order.paid-4.json"]
    assert result.out.splitlines()[-1] == (
        "4 fixtures of 6 captures in 2 groups (grouped by pointer:/type)")

    # Taken again: the same files, left as they were.
    before = {f.name: f.stat().st_mtime_ns for f in out.iterdir()}
    again = _snapshot(server, endpoint, out, "--json")
    assert again.code == 0, again.err
    report = json.loads(again.out)
    assert report["group_by"] == "pointer:/type" and report["captures_read"] == 6
    assert [(f["seq"], f["group"], f["changed"]) for f in report["fixtures"]] == [
        (1, "order.paid", False), (3, "order.paid", False), (4, "order.paid", False),
        (5, "invoice.created", False)]
    assert {f.name: f.stat().st_mtime_ns for f in out.iterdir()} == before

    # --per-group N: up to N per group, the first of each shape before any other.
    result = _snapshot(server, endpoint, tmp_path / "two", "--per-group", "2")
    assert result.code == 0, result.err
    assert sorted(f.name for f in (tmp_path / "two").iterdir()) == [
        "invoice.created-5.json", "invoice.created-6.json", "order.paid-1.json",
        "order.paid-3.json"]

    # --limit N reads only the newest N captures.
    result = _snapshot(server, endpoint, tmp_path / "newest", "--limit", "3")
    assert result.code == 0, result.err
    assert sorted(f.name for f in (tmp_path / "newest").iterdir()) == [
        "invoice.created-5.json", "order.paid-4.json"]


def test_group_by_a_header_or_the_sub_path(server, tmp_path):
    endpoint = _endpoint(server)
    _send(endpoint, b'{"a": 1}', [("X-GitHub-Event", "push")], "/github")
    _send(endpoint, b'{"a": 1}', [("X-GitHub-Event", "pull_request")], "/github")
    _send(endpoint, b"text", [("X-GitHub-Event", "push")])
    result = _snapshot(server, endpoint, tmp_path / "auto")
    assert result.code == 0, result.err
    assert sorted(f.name for f in (tmp_path / "auto").iterdir()) == [
        "pull_request-2.json", "push-1.json", "push-3.json"]  # text is another shape
    result = _snapshot(server, endpoint, tmp_path / "path", "--group-by", "path")
    assert sorted(f.name for f in (tmp_path / "path").iterdir()) == [
        "github-1.json", "root-3.json"]


def test_what_cannot_be_snapshot_is_said(server, tmp_path):
    endpoint = _endpoint(server)
    result = _snapshot(server, endpoint, tmp_path / "none")
    assert result.code == 1
    assert f"nothing to snapshot: {endpoint['token']} has no captures" in result.err
    _send(endpoint, b"x" * (MAX_BODY + 1))
    result = _snapshot(server, endpoint, tmp_path / "none")
    assert result.code == 1
    assert "#1 (c_" in result.err and "its body was cut at the size limit" in result.err
    assert "has no whole captures" in result.err
    result = _snapshot(server, endpoint, tmp_path / "none", "--group-by", "body")
    assert result.code == 2 and "group_by must be auto, none, path" in result.err
    result = _snapshot(server, endpoint, tmp_path / "none", "--per-group", "0")
    assert result.code == 2 and "a whole number, 1 or more, got '0'" in result.err

    token = httpx.post(f"{server.url}/api/endpoints", json={
        "verify": {"scheme": "token", "header": "x-gitlab-token", "secrets": ["live-token"]},
    }).json()
    _send(token, b"{}", [("X-Gitlab-Token", "live-token")])
    result = _snapshot(server, token, tmp_path / "token")
    assert result.code == 0, result.err
    assert "holds the endpoint's shared token in clear" in result.err

    unchecked = _endpoint(server)  # no verify config: the header is still a credential
    _send(unchecked, b"{}", [("Authorization", "Bearer live"), ("X-Gitlab-Token", "live")])
    result = _snapshot(server, unchecked, tmp_path / "unchecked")
    assert result.code == 0, result.err
    assert "holds authorization, x-gitlab-token, which may be a live credential" in result.err


def _capture(body, content_type="application/json", seq=1, headers=(), path="/h/k"):
    from hookscope.ingest.parse import parse_body

    parsed = parse_body(body, content_type)
    return {"seq": seq, "headers": [list(h) for h in headers], "path": path,
            "content_type": content_type, "parsed": {"kind": parsed.kind,
                                                     "value": parsed.value,
                                                     "error": parsed.error}}


def test_shapes_are_key_paths_and_value_types():
    assert shape(_capture(b'{"a": [1, "x"], "b/c": null}')) == (
        "json application/json /a/[]:integer /a/[]:string /a:array /b~1c:null :object")
    assert shape(_capture(b'{"a": 1}')) == shape(_capture(b'{"a": 2}'))
    assert shape(_capture(b'{"a": 1}')) != shape(_capture(b'{"a": 1.5}'))
    assert shape(_capture(b'{"a": 1}')) != shape(_capture(b'{"a": true}'))
    assert shape(_capture(b"a=1&b=2", "application/x-www-form-urlencoded")) == shape(
        _capture(b"a=3&b=4", "application/x-www-form-urlencoded"))
    assert shape(_capture(b"hello", "text/plain")) == shape(_capture(b"other", "text/plain"))
    assert shape(_capture(b"{broken", "application/json")) == "json application/json"
    grouping, chosen = choose([_capture(b"1", "text/plain", 1), _capture(b"2", "text/csv", 2),
                               _capture(b"3", "text/plain", 3)], "none")
    assert grouping == "none" and [c.file_name for c in chosen] == ["all-1.json", "all-2.json"]


@pytest.mark.parametrize(("group", "expected"), [
    ("checkout.session.completed", "checkout.session.completed"),
    ("orders/create", "orders-create"), ("/orders/new", "orders-new"), ("/", "root"),
    ("*", "all"), ("(missing)", "missing"), ("Café Événement", "cafe-evenement"),
    ("../../etc/passwd", "etc-passwd"), ("..", "group"), ("x" * 200, "x" * 60),
])
def test_group_slugs_are_safe_file_names(group, expected):
    assert slug(group) == expected
