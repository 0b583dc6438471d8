"""Formats through the HTTP surface: the listing, stateless validation, verdicts on captures."""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path

import pytest

from hookscope.formats import load_formats

pytestmark = pytest.mark.anyio

FIXTURES = Path(__file__).parent / "fixtures" / "formats"
FORMATS_DOC = (Path(__file__).resolve().parent.parent / "docs" / "formats.md").read_text()


def _fixture(format_id: str, status: str) -> tuple[bytes, str]:
    for path in sorted((FIXTURES / format_id).glob("*.json")):
        case = json.loads(path.read_text())
        if case["expect"]["status"] == status and "body" in case:
            return json.dumps(case["body"]).encode(), case.get("content_type",
                                                               "application/json")
    raise AssertionError(f"no {status} JSON fixture for {format_id}")


async def test_formats_are_listed_with_their_metadata(client):
    listed = (await client.get("/api/formats")).json()["formats"]
    assert len(listed) == 13
    flows = next(f for f in listed if f["id"] == "flows.entity-event")
    assert flows["vendor"] and flows["title"] and flows["description"]
    assert set(flows) == {"id", "title", "vendor", "description"}


async def test_a_format_serves_its_schema(client):
    schema = (await client.get("/api/formats/flows.entity-event")).json()
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert "operationType" in json.dumps(schema)
    missing = await client.get("/api/formats/nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("format_id", load_formats().ids)
def test_every_format_is_in_the_docs_formats_table(format_id):
    assert any(line.startswith(f"| `{format_id}` ") for line in FORMATS_DOC.splitlines())


async def test_validate_detects_then_validates(client):
    body, content_type = _fixture("flows.entity-event", "invalid")
    result = (await client.post("/api/validate", content=body,
                                headers={"Content-Type": content_type})).json()
    assert (result["format"], result["detected"], result["status"]) == (
        "flows.entity-event", True, "invalid")
    assert result["errors"] and all(e["path"].startswith("/") or e["path"] == ""
                                    for e in result["errors"])
    assert result["parsed"] == {"kind": "json", "error": None}


async def test_validate_against_a_named_format(client):
    body, content_type = _fixture("virtuoso.ping", "valid")
    same = (await client.post("/api/validate?format=virtuoso.ping", content=body,
                              headers={"Content-Type": content_type})).json()
    assert (same["format"], same["status"]) == ("virtuoso.ping", "valid")
    other = (await client.post("/api/validate?format=flows.entity-event", content=body,
                               headers={"Content-Type": content_type})).json()
    assert (other["format"], other["detected"], other["status"]) == (
        "flows.entity-event", False, "invalid")


async def test_validate_with_an_unknown_format_is_400(client):
    response = await client.post("/api/validate?format=xml", content=b"{}")
    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["field"] == "format"


async def test_validate_something_unrecognisable_is_unknown(client):
    result = (await client.post("/api/validate", content=b'{"hello": "world"}')).json()
    assert (result["format"], result["status"], result["errors"]) == (None, "unknown", [])


async def test_captures_carry_a_validation_verdict_and_filter_by_it(client, endpoint):
    token = endpoint["token"]
    good, content_type = _fixture("flows.entity-event", "valid")
    bad, _ = _fixture("flows.entity-event", "invalid")
    await client.post(f"/h/{token}", content=good, headers={"Content-Type": content_type})
    response = await client.post(f"/h/{token}", content=bad,
                                 headers={"Content-Type": content_type})
    assert response.status_code == 200  # reject is off: the configured reply
    await client.post(f"/h/{token}", content=b'{"other": 1}')
    capture = (await client.get(f"/api/captures/{response.headers['x-hookscope-capture']}")
               ).json()
    assert capture["validation"]["format"] == "flows.entity-event"
    assert capture["validation"]["status"] == "invalid"
    invalid = (await client.get(f"/api/endpoints/{token}/captures?validation=invalid")).json()
    assert [c["seq"] for c in invalid["captures"]] == [2]
    flows = (await client.get(f"/api/endpoints/{token}/captures?format=flows.entity-event")
             ).json()
    assert [c["seq"] for c in flows["captures"]] == [2, 1]
    unknown = (await client.get(f"/api/endpoints/{token}/captures?validation=unknown")).json()
    assert [c["seq"] for c in unknown["captures"]] == [3]


async def test_reject_invalid_payload_answers_422_and_still_records(client):
    created = (await client.post("/api/endpoints", json={
        "reject": {"invalid_payload": True}})).json()
    bad, content_type = _fixture("flows.entity-event", "invalid")
    response = await client.post(f"/h/{created['token']}", content=bad,
                                 headers={"Content-Type": content_type})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_payload"
    assert "flows.entity-event" in error["message"]
    stored = (await client.get(f"/api/captures/{response.headers['x-hookscope-capture']}")
              ).json()
    assert stored["response"] == {"status": 422}
    good, _ = _fixture("flows.entity-event", "valid")
    ok = await client.post(f"/h/{created['token']}", content=good,
                           headers={"Content-Type": content_type})
    assert ok.status_code == 200


async def test_endpoint_with_its_own_schema(client):
    created = (await client.post("/api/endpoints", json={"schema": {
        "type": "object", "required": ["order_id"]}})).json()
    response = await client.post(f"/h/{created['token']}", json={"id": 1})
    capture = (await client.get(f"/api/captures/{response.headers['x-hookscope-capture']}")
               ).json()
    assert capture["validation"] == {"format": "custom", "detected": False, "status": "invalid",
                                     "errors": [{"path": "/order_id",
                                                 "message": "missing required /order_id"}]}


async def test_pinned_format_on_an_endpoint(client):
    created = (await client.post("/api/endpoints", json={"format": "virtuoso.ping"})).json()
    body, content_type = _fixture("flows.entity-event", "valid")
    response = await client.post(f"/h/{created['token']}", content=body,
                                 headers={"Content-Type": content_type})
    capture = (await client.get(f"/api/captures/{response.headers['x-hookscope-capture']}")
               ).json()
    assert (capture["validation"]["format"], capture["validation"]["status"]) == (
        "virtuoso.ping", "invalid")


async def test_virtuoso_form_delivery_validates_the_inner_json(client, endpoint):
    path = next(p for p in sorted((FIXTURES / "virtuoso.ping").glob("*.json"))
                if "body_text" in json.loads(p.read_text()))
    case = json.loads(path.read_text())
    response = await client.post(f"/h/{endpoint['token']}", content=case["body_text"].encode(),
                                 headers={"Content-Type": case["content_type"]})
    capture = (await client.get(f"/api/captures/{response.headers['x-hookscope-capture']}")
               ).json()
    assert capture["parsed"]["kind"] == "form"
    assert capture["validation"]["format"] == case["expect"]["format"]
    assert capture["validation"]["status"] == case["expect"]["status"]


async def test_webengage_xml_delivery_validates_the_parsed_view(client, endpoint):
    path = next(p for p in sorted((FIXTURES / "webengage.feedback").glob("*.json"))
                if "xml" in json.loads(p.read_text()).get("content_type", ""))
    case = json.loads(path.read_text())
    response = await client.post(f"/h/{endpoint['token']}", content=case["body_text"].encode(),
                                 headers={"Content-Type": case["content_type"]})
    capture = (await client.get(f"/api/captures/{response.headers['x-hookscope-capture']}")
               ).json()
    assert capture["parsed"]["kind"] == "xml"
    assert (capture["validation"]["format"], capture["validation"]["status"]) == (
        "webengage.feedback", "valid")


async def test_duplicate_json_keys_are_noted_in_the_full_view(client, endpoint):
    response = await client.post(f"/h/{endpoint['token']}", content=b'{"a": 1, "a": 2}',
                                 headers={"Content-Type": "application/json"})
    capture = (await client.get(f"/api/captures/{response.headers['x-hookscope-capture']}")
               ).json()
    assert capture["parsed"]["value"] == {"a": 2}
    assert "'a' appears more than once" in capture["parsed"]["notes"][0]


async def test_a_schema_with_a_remote_ref_is_refused_and_never_fetched(client):
    import http.server
    import threading

    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"type": "object"}')

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/schema.json"
        response = await client.post("/api/endpoints", json={"schema": {"$ref": url}})
        assert response.status_code == 422
        assert "is not fetched" in response.json()["error"]["message"]
        assert hits == []
    finally:
        server.shutdown()
        server.server_close()


async def test_a_schema_whose_ref_does_not_resolve_is_refused(client):
    response = await client.post("/api/endpoints",
                                 json={"schema": {"$ref": "#/definitions/missing"}})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "schema"


@pytest.mark.parametrize("schema", [
    {"type": "string", "pattern": "(?!.*b)x"},
    {"properties": {"name": {"pattern": "^(a)\\1$"}}},
    {"patternProperties": {"(?<=x)y": {}}},
])
async def test_a_pattern_that_could_backtrack_is_refused_when_saved(client, schema):
    # With fancy-regex, jsonschema-rs's default, `(?!.*b)x` against an 80 KB string held the
    # server for seconds; patterns run in linear time, without lookaround or backreferences.
    response = await client.post("/api/endpoints", json={"schema": schema})
    assert response.status_code == 422
    detail = response.json()["error"]["details"][0]
    assert detail["field"] == "schema"
    assert "is refused: patterns run in linear time here, so lookaround and backreferences are " \
           "not supported" in detail["message"]


async def test_a_linear_pattern_checks_a_long_string_at_once(client):
    created = (await client.post("/api/endpoints", json={"schema": {
        "type": "string", "pattern": "^[a-z]*x$"}})).json()
    started = time.monotonic()
    response = await client.post(f"/h/{created['token']}", json="a" * 80_000 + "b")
    assert time.monotonic() - started < 2
    capture = (await client.get(f"/api/captures/{response.headers['x-hookscope-capture']}")
               ).json()
    assert capture["validation"]["status"] == "invalid"


def chained_any_of(levels: int) -> dict:
    """`levels` definitions, each anyOf two $refs to the next: 2^levels subschemas to check."""
    defs = {f"d{i}": {"anyOf": [{"$ref": f"#/$defs/d{i + 1}"}] * 2} for i in range(levels)}
    defs[f"d{levels}"] = {"type": "string"}
    return {"$defs": defs, "$ref": "#/$defs/d0"}


@pytest.mark.parametrize(("schema", "message"), [
    (chained_any_of(18), "schema could check one value against more than 20,000 subschemas"),
    ({"description": "x" * (256 * 1024)}, "at most 262144 are accepted"),
    (functools.reduce(lambda inner, _: {"not": inner}, range(70), {}), "more than 64 levels"),
    ({"type": "integer", "minimum": -(2**63) - 1}, "a whole number beyond 64 bits"),
    ({"const": 2**64}, "a whole number beyond 64 bits"),
])
async def test_a_schema_that_would_cost_too_much_is_refused_when_saved(client, schema, message):
    started = time.monotonic()
    response = await client.post("/api/endpoints", json={"schema": schema})
    assert time.monotonic() - started < 2
    assert response.status_code == 422
    detail = response.json()["error"]["details"][0]
    assert (detail["field"], message in detail["message"]) == ("schema", True), detail


async def test_a_schema_within_its_cost_checks_a_failing_value_at_once(client):
    created = (await client.post("/api/endpoints", json={"schema": chained_any_of(12)})).json()
    started = time.monotonic()
    response = await client.post(f"/h/{created['token']}", content=b"1")
    assert time.monotonic() - started < 1
    capture = (await client.get(f"/api/captures/{response.headers['x-hookscope-capture']}")
               ).json()
    assert capture["validation"]["status"] == "invalid"


@pytest.mark.parametrize("schema", [
    {"$defs": chained_any_of(12)["$defs"], "type": "array", "items": {"$ref": "#/$defs/d0"}},
    {"type": "array", "items": {"anyOf": [{"type": "string", "minLength": i}
                                          for i in range(48)]}},
])
async def test_a_small_body_failing_a_schema_item_by_item_is_checked_at_once(client, schema):
    # jsonschema-rs makes all of a document's errors at once: under these, 20,000 failing items
    # (40 KB) held the event loop for many seconds. Past a bound, only the first is listed.
    created = (await client.post("/api/endpoints", json={"schema": schema})).json()
    started = time.monotonic()
    response = await client.post(f"/h/{created['token']}", json=[1] * 20_000)
    assert time.monotonic() - started < 1
    capture = (await client.get(f"/api/captures/{response.headers['x-hookscope-capture']}")
               ).json()
    assert capture["validation"]["status"] == "invalid"
    assert [e["path"] for e in capture["validation"]["errors"]] == ["", "/0"]
    assert capture["validation"]["errors"][0]["message"].startswith(
        "only the first error is listed")


async def test_a_small_document_under_a_simple_schema_lists_every_error(client):
    created = (await client.post("/api/endpoints", json={"schema": {
        "type": "object", "required": ["id"],
        "properties": {"n": {"type": "integer"}, "s": {"type": "string"}}}})).json()
    response = await client.post(f"/h/{created['token']}", json={"n": "x", "s": 1})
    capture = (await client.get(f"/api/captures/{response.headers['x-hookscope-capture']}")
               ).json()
    assert capture["validation"]["errors"] == [
        {"path": "/id", "message": "missing required /id"},
        {"path": "/n", "message": "expected integer, got string"},
        {"path": "/s", "message": "expected string, got integer"}]


async def test_a_recursive_schema_is_accepted(client):
    tree = {"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#"}}}}
    created = await client.post("/api/endpoints", json={"schema": tree})
    assert created.status_code == 201
    response = await client.post(f"/h/{created.json()['token']}",
                                 json={"children": [{"children": [{"children": 1}]}]})
    capture = (await client.get(f"/api/captures/{response.headers['x-hookscope-capture']}")
               ).json()
    assert capture["validation"]["errors"][0]["path"] == "/children/0/children/0/children"


async def test_a_schema_with_local_refs_works(client):
    schema = {"definitions": {"id": {"type": "integer"}}, "type": "object",
              "properties": {"id": {"$ref": "#/definitions/id"}}}
    created = (await client.post("/api/endpoints", json={"schema": schema})).json()
    response = await client.post(f"/h/{created['token']}", json={"id": "x"})
    capture = (await client.get(f"/api/captures/{response.headers['x-hookscope-capture']}")
               ).json()
    assert capture["validation"]["status"] == "invalid"
    assert capture["validation"]["errors"][0]["path"] == "/id"


async def test_validate_refuses_a_body_over_the_limit(client, settings):
    response = await client.post("/api/validate",
                                 content=b"x" * (settings.max_body_bytes + 1))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"


async def test_a_changed_schema_applies_to_the_next_capture(client):
    created = (await client.post("/api/endpoints", json={"schema": {
        "type": "object", "required": ["a"]}})).json()
    token = created["token"]

    async def status() -> str:
        response = await client.post(f"/h/{token}", json={"a": 1})
        capture_id = response.headers["x-hookscope-capture"]
        return (await client.get(f"/api/captures/{capture_id}")).json()["validation"]["status"]

    assert await status() == "valid"
    assert await status() == "valid"  # the compiled schema is reused
    await client.patch(f"/api/endpoints/{token}", json={"schema": {
        "type": "object", "required": ["b"]}})
    assert await status() == "invalid"
