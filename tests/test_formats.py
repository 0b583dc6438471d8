"""The 13 documented formats, driven by the fixtures in tests/fixtures/formats (docs/formats.md)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from jsonschema import Draft7Validator

from hookscope.formats import Validation, load_formats
from hookscope.ingest.parse import parse_body

FIXTURES = Path(__file__).parent / "fixtures" / "formats"
API_FORMAT_IDS = [
    "avo.json-schema", "avo.ndjson", "avo.snowplow", "avo.avo-json",
    "virtuoso.ping", "virtuoso.execution",
    "webengage.event", "webengage.journey", "webengage.feedback", "webengage.feedback-reply",
    "webengage.survey-response",
    "flows.entity-event", "flows.packet-comment",
]
# Seeds that carry a full example of the format: the fixture set must include it.
SEED_EXAMPLES = {"avo.json-schema", "virtuoso.ping", "virtuoso.execution", "webengage.event",
                 "webengage.journey", "flows.entity-event", "flows.packet-comment"}


def _cases() -> list[tuple[str, Path]]:
    return [(path.parent.name, path) for path in sorted(FIXTURES.glob("*/*.json"))]


CASES = _cases()
IDS = [f"{fmt}/{path.stem}" for fmt, path in CASES]


def _load(path: Path) -> tuple[bytes, str, dict]:
    case = json.loads(path.read_text())
    body = (case["body_text"].encode() if "body_text" in case
            else json.dumps(case["body"]).encode())
    return body, case.get("content_type", "application/json"), case["expect"]


@pytest.fixture(scope="module")
def validation() -> Validation:
    return Validation(load_formats())


def test_the_registry_holds_exactly_the_documented_formats():
    assert load_formats().ids == sorted(API_FORMAT_IDS)


@pytest.mark.parametrize("format_id", API_FORMAT_IDS)
def test_every_format_has_its_metadata_and_a_sound_schema(format_id):
    fmt = load_formats().get(format_id)
    assert fmt.title and fmt.description and fmt.vendor
    Draft7Validator.check_schema(fmt.schema)
    assert fmt.schema.get("$schema") == "http://json-schema.org/draft-07/schema#"


@pytest.mark.parametrize("format_id", API_FORMAT_IDS)
def test_every_format_has_valid_cases_and_mutations(format_id):
    expects = [_load(path)[2] for fmt, path in CASES if fmt == format_id]
    valid = [e for e in expects if e["status"] == "valid"]
    invalid = [e for e in expects if e["status"] == "invalid"]
    assert len(valid) >= 3, format_id
    assert len(invalid) >= 4, format_id
    if format_id in SEED_EXAMPLES:
        names = [path.stem for fmt, path in CASES if fmt == format_id]
        assert any("seed" in name for name in names), names


@pytest.mark.parametrize(("format_id", "path"), CASES, ids=IDS)
def test_fixture_is_detected_and_judged_as_expected(validation, format_id, path):
    body, content_type, expect = _load(path)
    parsed = parse_body(body, content_type)
    result = validation.check(parsed, "auto", None)
    assert result is not None, f"{path.name}: not recognised ({parsed.kind}, {parsed.error})"
    assert (result["format"], result["detected"]) == (expect["format"], True)
    assert result["status"] == expect["status"], result["errors"]
    for wanted in expect.get("errors", []):
        at_path = [e["message"] for e in result["errors"] if e["path"] == wanted["path"]]
        assert at_path, f"no error at {wanted['path']!r}: {result['errors']}"
        assert any(wanted["contains"] in message for message in at_path), at_path


@pytest.mark.parametrize(("format_id", "path"), CASES, ids=IDS)
def test_pinning_the_format_gives_the_same_verdict(validation, format_id, path):
    body, content_type, expect = _load(path)
    result = validation.check(parse_body(body, content_type), expect["format"], None)
    assert result["status"] == expect["status"]
    assert result["detected"] is True  # the pinned format also recognises its own payloads


def test_detection_table_over_all_fixtures(validation):
    """One table, so a change to any identify rule shows every payload it moves."""
    table = {}
    for format_id, path in CASES:
        body, content_type, _ = _load(path)
        result = validation.check(parse_body(body, content_type), "auto", None)
        table[f"{format_id}/{path.stem}"] = result["format"] if result else None
    wrong = {case: got for case, got in table.items() if got != case.split("/")[0]}
    assert not wrong, wrong
    assert len(table) >= 13 * 7


@pytest.mark.parametrize("payload", [
    {"id": "evt_1", "type": "charge.succeeded", "data": {"object": {"amount": 5}}},
    {"action": "opened", "pull_request": {"number": 1}, "repository": {"name": "x"}},
    {"events": "mixed", "type": "x", "project": {"id": 1}},  # two vendors' keys: neither
    [], "text", 42, None, {},
])
def test_other_payloads_are_unknown(validation, payload):
    parsed = parse_body(json.dumps(payload).encode(), "application/json")
    assert validation.check(parsed, "auto", None) is None


def test_detection_is_deterministic_when_two_could_match(validation):
    """A payload carrying both a Flows comment path and the flows/comments key is a packet
    comment (the more specific format has the higher priority), every time."""
    body = json.dumps({"operationType": "created", "entityKey": "flows/comments",
                       "entityPath": "pipelinesPackets/p1/comments/c1"}).encode()
    results = {validation.check(parse_body(body, "application/json"), "auto", None)["format"]
               for _ in range(5)}
    assert results == {"flows.packet-comment"}


def test_a_pinned_format_on_a_body_that_is_not_json_is_invalid(validation):
    result = validation.check(parse_body(b"\xff\xfe\x00", "application/octet-stream"),
                              "flows.entity-event", None)
    assert result["status"] == "invalid"
    assert result["errors"][0]["message"] == "the body is binary, not a JSON document"


def test_format_none_checks_nothing(validation):
    body = json.dumps({"operationType": "renamed", "entityPath": "x"}).encode()
    assert validation.check(parse_body(body, "application/json"), "none", None) is None


def test_custom_schema_replaces_the_format(validation):
    schema = {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}
    good = validation.check(parse_body(b'{"id": 1}', "application/json"), "auto", schema)
    assert good == {"format": "custom", "detected": False, "status": "valid", "errors": []}
    bad = validation.check(parse_body(b'{"id": "x", "n": {}}', "application/json"),
                           "flows.entity-event", schema)
    assert bad["errors"] == [{"path": "/id", "message": "expected integer, got string"}]


def test_all_errors_are_reported_not_just_the_first(validation):
    body = json.dumps({"operationType": "renamed", "entityPath": 5, "entityId": 7}).encode()
    result = validation.check(parse_body(body, "application/json"), "auto", None)
    paths = {e["path"] for e in result["errors"]}
    assert {"/operationType", "/entityPath", "/entityId"} <= paths


@pytest.mark.parametrize(("format_id", "path"), CASES, ids=IDS)
def test_the_fast_road_and_the_judge_agree_on_every_fixture(format_id, path):
    body, content_type, _ = _load(path)
    from hookscope.formats import document_of
    found, document = document_of(parse_body(body, content_type))
    fmt = load_formats().get(format_id)
    assert found
    judge_finds_errors = bool(list(fmt.checker.full.iter_errors(document)))
    assert fmt.checker.rust.is_valid(document) is not judge_finds_errors


@pytest.mark.parametrize("stamp", ["2024-01-01T00:00:00Z\n",
                                   "\u0662\u0660\u0662\u0664-01-01T00:00:00Z"])
def test_a_regex_the_dialects_disagree_on_is_still_invalid(validation, stamp):
    """Python's `$` accepts a trailing newline and its `\\d` any Unicode digit; Rust's do not.
    The disagreement must end as invalid, never as valid."""
    base = next(json.loads(p.read_text())["body"] for f, p in CASES
                if f == "flows.entity-event" and "seed" in p.stem)
    body = json.dumps(dict(base, eventTimestamp=stamp)).encode()
    result = validation.check(parse_body(body, "application/json"), "auto", None)
    assert result["status"] == "invalid"
    assert result["errors"]


def test_ndjson_lines_that_only_parse_together_are_invalid(validation):
    row = json.dumps({"event_id": "e", "event_name": "n", "event_type": "event"})
    base = next(json.loads(p.read_text())["body"] for f, p in CASES
                if f == "avo.ndjson" and json.loads(p.read_text())["expect"]["status"] == "valid")
    envelope = dict(base, events=f'{{"x": [{{}}\n{{}}]}}\n{row},{row}')
    result = validation.check(parse_body(json.dumps(envelope).encode(), "application/json"),
                              "avo.ndjson", None)
    assert result["status"] == "invalid"
    assert {"/events/0", "/events/1", "/events/2"} <= {e["path"] for e in result["errors"]}


def test_errors_are_capped_and_a_huge_payload_does_not_stall(validation):
    base = next(json.loads(p.read_text())["body"] for f, p in CASES
                if f == "flows.entity-event" and "seed" in p.stem)
    data = dict(base["data"], updateMask=[0] * 200_000)
    body = json.dumps(dict(base, data=data)).encode()
    started = time.monotonic()
    result = validation.check(parse_body(body, "application/json"), "auto", None)
    assert time.monotonic() - started < 5
    assert result["status"] == "invalid"
    assert len(result["errors"]) == 100


def test_ndjson_with_very_many_bad_lines_is_capped(validation):
    base = next(json.loads(p.read_text())["body"] for f, p in CASES
                if f == "avo.ndjson" and json.loads(p.read_text())["expect"]["status"] == "valid")
    envelope = dict(base, events="\n".join(["{}"] * 50_000))
    started = time.monotonic()
    result = validation.check(parse_body(json.dumps(envelope).encode(), "application/json"),
                              "avo.ndjson", None)
    assert time.monotonic() - started < 5
    assert len(result["errors"]) == 100


def test_a_circleci_webhook_is_not_taken_for_virtuoso(validation):
    circleci = {"type": "workflow-completed", "id": "3888f21b",
                "happened_at": "2021-09-01T22:49:34.317Z",
                "webhook": {"id": "cf8c4fdd", "name": "Sample"},
                "project": {"id": "84996744", "name": "webhook-test"},
                "organization": {"id": "f22b6566", "name": "circleci"},
                "workflow": {"id": "fda08377", "name": "welcome"},
                "pipeline": {"id": "1285fe1d", "number": 2}}
    parsed = parse_body(json.dumps(circleci).encode(), "application/json")
    assert validation.check(parsed, "auto", None) is None


def test_a_catastrophic_regex_in_a_custom_schema_cannot_stall(validation):
    schema = {"type": "object", "properties": {"name": {"type": "string",
                                                        "pattern": "^(a+)+$"}}}
    body = json.dumps({"name": "a" * 40 + "!"}).encode()
    started = time.monotonic()
    result = validation.check(parse_body(body, "application/json"), "auto", schema)
    assert time.monotonic() - started < 2
    assert result["status"] == "invalid"


def test_a_custom_schema_with_an_unusable_ref_is_reported_not_raised(validation):
    result = validation.check(parse_body(b"{}", "application/json"), "auto",
                              {"$ref": "#/definitions/missing"})
    assert result["status"] == "invalid"
    assert "cannot be used" in result["errors"][0]["message"]
