"""GET /api/captures/{a}/diff/{b}: method, path, query, headers and parsed bodies."""

from __future__ import annotations

import base64
import json

import pytest

from hookscope.ops.pointer import token

pytestmark = pytest.mark.anyio

EMPTY = {"added": [], "removed": [], "changed": []}


async def _send(client, endpoint, body: bytes = b"", *, method: str = "POST", sub: str = "",
                content_type: str | None = None, headers=()) -> str:
    all_headers = [*headers, *([("Content-Type", content_type)] if content_type else [])]
    response = await client.request(method, f"/h/{endpoint['token']}{sub}", content=body,
                                    headers=all_headers)
    return response.headers["x-hookscope-capture"]


async def _diff(client, a: str, b: str) -> dict:
    response = await client.get(f"/api/captures/{a}/diff/{b}")
    assert response.status_code == 200, response.text
    return response.json()


async def _json_pair(client, endpoint, a, b) -> dict:
    first = await _send(client, endpoint, json.dumps(a).encode(), content_type="application/json")
    second = await _send(client, endpoint, json.dumps(b).encode(), content_type="application/json")
    return await _diff(client, first, second)


async def test_nested_json_differences_have_json_pointers(client, endpoint):
    a = {"user": {"name": "Ada", "tags": ["x", "y", "z"], "a/b": 1, "m~n": {"k": 1}},
         "gone": True, "n": 1}
    b = {"user": {"name": "Grace", "tags": ["x", "Y"], "a/b": 2, "m~n": {"k": 1, "new": None}},
         "n": 1.0, "added": [1]}
    result = await _json_pair(client, endpoint, a, b)
    assert result["identical"] is False
    assert result["body"] == {
        "kind": None,
        "added": [{"path": "/added", "value": [1]}, {"path": "/user/m~0n/new", "value": None}],
        "removed": [{"path": "/gone", "value": True}, {"path": "/user/tags/2", "value": "z"}],
        "changed": [{"path": "/user/name", "a": "Ada", "b": "Grace"},
                    {"path": "/user/tags/1", "a": "y", "b": "Y"},
                    {"path": "/user/a~1b", "a": 1, "b": 2},
                    {"path": "/n", "a": 1, "b": 1.0}],  # an integer became a float
    }
    assert result["method"] is None and result["path"] is None and result["query"] == EMPTY
    assert result["headers"] == {"added": [], "removed": [], "changed": [
        {"name": "content-length", "a": str(len(json.dumps(a))), "b": str(len(json.dumps(b)))}]}


async def test_type_changes_and_array_growth(client, endpoint):
    result = await _json_pair(client, endpoint, [True, {"a": 1}, 0], [1, [1], 0, "more"])
    assert result["body"]["changed"] == [{"path": "/0", "a": True, "b": 1},
                                         {"path": "/1", "a": {"a": 1}, "b": [1]}]
    assert result["body"]["added"] == [{"path": "/3", "value": "more"}]
    assert result["body"]["removed"] == []


async def test_method_path_query_and_header_differences(client, endpoint):
    first = await _send(client, endpoint, b"", sub="/one?x=1&y=2&y=3&gone=1",
                        headers=[("X-Dup", "1"), ("X-Dup", "2"), ("X-Only-A", "a"),
                                 ("X-Same", "s")])
    second = await _send(client, endpoint, b"", method="PUT", sub="/two?x=2&y=2&new=",
                         headers=[("x-dup", "1"), ("X-Same", "s"), ("X-ONLY-B", "b")])
    result = await _diff(client, first, second)
    token = endpoint["token"]
    assert result["a"] == first and result["b"] == second
    assert result["method"] == {"a": "POST", "b": "PUT"}
    assert result["path"] == {"a": f"/h/{token}/one", "b": f"/h/{token}/two"}
    assert result["query"] == {
        "added": [{"name": "new", "value": ""}],
        "removed": [{"name": "gone", "value": "1"}],
        "changed": [{"name": "x", "a": "1", "b": "2"}, {"name": "y", "a": "2, 3", "b": "2"}],
    }
    mine = {key: [d for d in result["headers"][key] if d["name"].startswith("x-")]
            for key in ("added", "removed", "changed")}
    assert mine == {"added": [{"name": "x-only-b", "value": "b"}],
                    "removed": [{"name": "x-only-a", "value": "a"}],
                    "changed": [{"name": "x-dup", "a": "1, 2", "b": "1"}]}
    assert result["body"] == {"kind": None, **EMPTY}
    assert result["identical"] is False


async def test_identical_captures(client, endpoint):
    first = await _send(client, endpoint, b'{"a": [1, 2]}', sub="/p?q=1",
                        content_type="application/json", headers=[("X-A", "1")])
    second = await _send(client, endpoint, b'{"a": [1, 2]}', sub="/p?q=1",
                         content_type="application/json", headers=[("X-A", "1")])
    assert await _diff(client, first, second) == {
        "a": first, "b": second, "identical": True, "method": None, "path": None,
        "query": EMPTY, "headers": EMPTY, "body": {"kind": None, **EMPTY}}
    assert (await _diff(client, first, first))["identical"] is True


async def test_text_and_binary_bodies_compare_as_bytes(client, endpoint):
    hello = await _send(client, endpoint, b"hello", content_type="text/plain")
    world = await _send(client, endpoint, b"world", content_type="text/plain")
    assert (await _diff(client, hello, world))["body"] == {
        "kind": None, "added": [], "removed": [],
        "changed": [{"path": "", "a": "hello", "b": "world"}]}

    binary = await _send(client, endpoint, b"\x00\xff\xfe")
    body = (await _diff(client, binary, hello))["body"]
    assert body["kind"] == {"a": "binary", "b": "text"}
    assert body["changed"] == [{"path": "", "a": {"base64": base64.b64encode(
        b"\x00\xff\xfe").decode()}, "b": "hello"}]

    empty = await _send(client, endpoint, b"")
    body = (await _diff(client, empty, hello))["body"]
    assert body["kind"] == {"a": "empty", "b": "text"}
    assert body["changed"] == [{"path": "", "a": "", "b": "hello"}]


async def test_invalid_json_compares_as_text(client, endpoint):
    first = await _send(client, endpoint, b'{"a": ', content_type="application/json")
    second = await _send(client, endpoint, b'{"b": ', content_type="application/json")
    body = (await _diff(client, first, second))["body"]
    assert body == {"kind": None, "added": [], "removed": [],
                    "changed": [{"path": "", "a": '{"a": ', "b": '{"b": '}]}


async def test_forms_compare_as_lists_per_name(client, endpoint):
    form = "application/x-www-form-urlencoded"
    first = await _send(client, endpoint, b"a=1&a=2&b=x&c%2Fd=1", content_type=form)
    second = await _send(client, endpoint, b"a=1&b=y&c%2Fd=1&e=", content_type=form)
    assert (await _diff(client, first, second))["body"] == {
        "kind": None,
        "added": [{"path": "/e", "value": [""]}],
        "removed": [{"path": "/a/1", "value": "2"}],
        "changed": [{"path": "/b/0", "a": "x", "b": "y"}],
    }


async def test_ndjson_compares_line_by_line(client, endpoint):
    ndjson = "application/x-ndjson"
    first = await _send(client, endpoint, b'{"n": 1}\n{"n": 2}\n', content_type=ndjson)
    second = await _send(client, endpoint, b'{"n": 1}\n{"n": 3}\n{"n": 4}\n',
                         content_type=ndjson)
    body = (await _diff(client, first, second))["body"]
    assert body["changed"] == [{"path": "/1/n", "a": 2, "b": 3}]
    assert body["added"] == [{"path": "/2", "value": {"n": 4}}]


async def test_deeply_nested_bodies_do_not_overflow(client, endpoint):
    depth = 900
    result = await _json_pair(client, endpoint, json.loads("[" * depth + "1" + "]" * depth),
                              json.loads("[" * depth + "2" + "]" * depth))
    assert result["body"]["changed"] == [{"path": "/0" * depth, "a": 1, "b": 2}]


async def test_diff_with_an_unknown_capture_is_404_naming_it(client, endpoint):
    known = await _send(client, endpoint, b"x")
    for a, b, missing in ((known, "c_nope", "c_nope"), ("c_gone", known, "c_gone")):
        response = await client.get(f"/api/captures/{a}/diff/{b}")
        assert response.status_code == 404
        assert response.json()["error"]["message"] == f"no capture with id {missing!r}"


def test_pointer_tokens_escape_tilde_before_slash():
    assert token("a~/b") == "a~0~1b"
    assert token("~1") == "~01"
    assert token(3) == "3"
