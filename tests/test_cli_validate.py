"""`hookscope validate FILE`: offline, on every format fixture, good and bad, raw or exported."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from hookscope.formats import load_formats
from tests.clirun import hookscope, hookscope_process, unused_port_url

FIXTURES = Path(__file__).parent / "fixtures" / "formats"
CASES = sorted(FIXTURES.glob("*/*.json"))
# The file name a user would give each kind of body (it decides the parser when no type is given).
SUFFIXES = {"application/json": ".json", "application/xml": ".xml", "text/xml": ".xml",
            "application/x-ndjson": ".ndjson"}


def _case(path: Path) -> tuple[bytes, str, dict]:
    case = json.loads(path.read_text())
    body = (case["body_text"].encode() if "body_text" in case
            else json.dumps(case["body"]).encode())
    return body, case.get("content_type", "application/json"), case["expect"]


def _payload_file(tmp_path: Path, path: Path) -> tuple[Path, str, dict]:
    body, content_type, expect = _case(path)
    target = tmp_path / (path.stem + SUFFIXES.get(content_type, ".txt"))
    target.write_bytes(body)
    return target, content_type, expect


@pytest.mark.parametrize("path", CASES, ids=[f"{p.parent.name}/{p.stem}" for p in CASES])
def test_validate_judges_every_fixture_like_the_server(tmp_path, path):
    target, content_type, expect = _payload_file(tmp_path, path)
    result = hookscope("validate", str(target), "--content-type", content_type)
    first = result.out.splitlines()[0].split()
    if expect["status"] == "valid":
        assert result.code == 0, result.out
        assert first == ["valid", expect["format"]]
    else:
        assert result.code == 1, result.out
        assert first[:2] == ["invalid", expect["format"]]
        for wanted in expect.get("errors", []):
            lines = [line.strip() for line in result.out.splitlines()[1:]]
            shown = wanted["path"] or "(root)"
            assert any(line.startswith(f"{shown}: ") and wanted["contains"] in line
                       for line in lines), (wanted, lines)


def test_validate_reads_the_type_from_the_file_name_and_sniffs_the_rest(tmp_path):
    ping, _, _ = _payload_file(tmp_path, FIXTURES / "virtuoso.ping" / "form-encoded.json")
    assert ping.suffix == ".txt"  # a form body: recognised by its shape
    assert hookscope("validate", str(ping)).out.split() == ["valid", "virtuoso.ping"]
    xml, _, _ = _payload_file(tmp_path, FIXTURES / "webengage.feedback" / "xml-bare.json")
    assert hookscope("validate", str(xml)).out.split() == ["valid", "webengage.feedback"]


def test_validate_with_format_checks_against_that_format(tmp_path):
    target, _, _ = _payload_file(tmp_path, FIXTURES / "flows.entity-event" / "seed-example.json")
    assert hookscope("validate", str(target), "--format", "flows.entity-event").code == 0
    other = hookscope("validate", str(target), "--format", "virtuoso.ping")
    assert other.code == 1
    assert other.out.startswith("invalid  virtuoso.ping  (")
    assert "(root): 'type' is a required property" in other.out


def test_validate_with_an_unknown_format_exits_2_listing_the_known_ones(tmp_path):
    target = tmp_path / "x.json"
    target.write_text("{}")
    result = hookscope("validate", str(target), "--format", "avo.nope")
    assert result.code == 2
    assert "unknown format 'avo.nope'; known: " + ", ".join(load_formats().ids) in result.err


def test_validate_a_body_no_format_recognises_exits_1_saying_why(tmp_path):
    target = tmp_path / "stripe.json"
    target.write_text('{"id": "evt_1", "type": "charge.succeeded"}')
    result = hookscope("validate", str(target))
    assert result.code == 1
    assert result.out.startswith("unknown  no known format recognises this body (it is json)")
    broken = tmp_path / "broken.json"
    broken.write_text('{"id": ')
    result = hookscope("validate", str(broken))
    assert result.code == 1
    assert "it does not parse: invalid JSON" in result.out


def test_validate_reads_stdin_and_prints_json(tmp_path):
    body, _, _ = _case(FIXTURES / "avo.json-schema" / "invalid-missing-name.json")
    result = hookscope("validate", "-", "--json", stdin=body)
    assert result.code == 1
    verdict = json.loads(result.out)
    assert verdict == {"format": "avo.json-schema", "detected": True, "status": "invalid",
                       "errors": [{"path": "", "message": "'name' is a required property"}],
                       "parsed": {"kind": "json", "error": None}}


@pytest.mark.parametrize("encoding", ["text", "base64"])
def test_validate_an_export_fixture_uses_its_body_and_content_type(tmp_path, encoding):
    body, content_type, expect = _case(FIXTURES / "virtuoso.ping" / "form-encoded.json")
    assert content_type == "application/x-www-form-urlencoded"
    fixture = {"hookscope_fixture": 1, "id": "c_1", "method": "POST", "path": "/h/k",
               "headers": [["content-type", content_type]], "content_type": content_type,
               "body_size": len(body),
               "body_text": body.decode() if encoding == "text" else None,
               "body_base64": base64.b64encode(body).decode() if encoding == "base64" else None}
    target = tmp_path / "export.json"
    target.write_text(json.dumps(fixture))
    result = hookscope("validate", str(target))
    assert (result.code, result.out.split()) == (0, ["valid", expect["format"]])


def test_validate_needs_no_server(tmp_path):
    target, _, _ = _payload_file(tmp_path, FIXTURES / "webengage.event" / "system-email-open.json")
    result = hookscope_process("validate", str(target), server_url=unused_port_url())
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["valid", "webengage.event"]


def test_validate_a_missing_file_exits_2(tmp_path):
    result = hookscope("validate", str(tmp_path / "nope.json"))
    assert result.code == 2
    assert f"cannot read {tmp_path / 'nope.json'}: No such file or directory" in result.err
