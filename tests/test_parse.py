"""Body parsing: every kind, sniffing, and hostile bodies that must not hurt the server."""

from __future__ import annotations

import json
import time

import pytest

from hookscope.formats import Validation, load_formats
from hookscope.ingest.parse import (
    MAX_FORM_FIELDS,
    MAX_JSON_BYTES,
    MAX_NDJSON_LINES,
    ORJSON_ALONE_BYTES,
    duplicate_keys,
    loads_strict,
    parse_body,
    parse_for_display,
)
from hookscope.ingest.xml_tree import MAX_XML_ELEMENTS

MULTIPART = (b'--XX\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n'
             b'--XX\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n'
             b"Content-Type: application/octet-stream\r\n\r\n\x00\x01\x02\r\n--XX--\r\n")


@pytest.mark.parametrize(("body", "content_type", "kind", "value"), [
    (b"", "application/json", "empty", None),
    (b'{"a": [1, 2.5, null]}', "application/json", "json", {"a": [1, 2.5, None]}),
    (b'{"a": 1}', "application/vnd.api+json", "json", {"a": 1}),
    (b'{"a": 1}\n{"b": 2}\n', "application/x-ndjson", "ndjson", [{"a": 1}, {"b": 2}]),
    (b"a=1&b=x%20y&a=3", "application/x-www-form-urlencoded", "form",
     [["a", "1"], ["b", "x y"], ["a", "3"]]),
    (b"<r><k>v</k></r>", "application/xml", "xml", {"k": "v"}),
    (b"just words", "text/plain", "text", "just words"),
    (b"\xff\xfe\x00", "application/octet-stream", "binary", None),
])
def test_each_kind_by_content_type(body, content_type, kind, value):
    parsed = parse_body(body, content_type)
    assert (parsed.kind, parsed.value, parsed.error) == (kind, value, None)


@pytest.mark.parametrize(("body", "content_type", "kind"), [
    (b'{"a": 1}', None, "json"),
    (b'{"a": 1}', "text/plain", "json"),
    (b'{"a": 1}\n{"a": 2}', "application/json", "ndjson"),  # declared wrong
    (b"<a><b>1</b></a>", None, "xml"),
    (b"<a><b>1</b></a>", "application/octet-stream", "xml"),
    (b"{not json", None, "text"),
])
def test_sniffing_when_the_type_is_missing_or_wrong(body, content_type, kind):
    assert parse_body(body, content_type).kind == kind


def test_xml_to_dict_convention():
    body = (b'<root><fields><id>1</id><value class="text">a</value></fields>'
            b"<fields><id>2</id></fields><empty/></root>")
    parsed = parse_body(body, "text/xml")
    assert parsed.value == {"fields": [{"id": "1", "value": {"@class": "text", "#text": "a"}},
                                       {"id": "2"}], "empty": ""}


def test_multipart_fields_and_files():
    parsed = parse_body(MULTIPART, "multipart/form-data; boundary=XX")
    assert parsed.error is None
    assert parsed.value == [
        {"name": "note", "filename": None, "content_type": "text/plain", "size": 5,
         "text": "hello"},
        {"name": "file", "filename": "a.bin", "content_type": "application/octet-stream",
         "size": 3, "text": None}]


@pytest.mark.parametrize(("body", "content_type", "error"), [
    (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
     b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
     b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
     b"<lolz>&lol3;</lolz>", "application/xml", "XML refused"),
    (b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>', "text/xml",
     "XML refused"),
    (b"<r><unclosed></r>", "application/xml", "invalid XML"),
    (b'<?xml version="1.0" encoding="bogus"?><r/>', "application/xml", "unknown encoding"),
    (b'<?xml version="1.0" encoding="rot13"?><r/>', "text/xml", "not a text encoding"),
    (b"[" * 100_000 + b"]" * 100_000, "application/json", "invalid JSON"),
    (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "application/json", "invalid JSON"),
    (b"1" * 100_000, "application/json", "invalid JSON"),
    (b"[NaN, Infinity]", "application/json", "invalid JSON"),
    (b'{"a": 1}\n{broken\n', "application/x-ndjson", "line 2 is not JSON"),
    (MULTIPART[:60], "multipart/form-data; boundary=XX", "malformed multipart"),
    (MULTIPART, "multipart/form-data", "no boundary"),
    (b"a=\xff", "application/x-www-form-urlencoded", "not UTF-8"),
])
def test_hostile_bodies_are_reported_not_raised(body, content_type, error):
    started = time.monotonic()
    parsed = parse_body(body, content_type)
    assert parsed.error is not None and error in parsed.error
    assert time.monotonic() - started < 5  # and they do not hang the server


def test_deep_xml_is_refused_cleanly():
    body = b"<a>" * 100_000 + b"</a>" * 100_000
    parsed = parse_body(body, "application/xml")
    assert parsed.kind == "xml" and parsed.error is not None


def test_huge_numbers_parse_or_fail_quickly_with_a_reason():
    started = time.monotonic()
    fraction = parse_body(b"[" + b"9" * 50_000 + b".5]", "application/json")
    assert fraction.error is not None and "too large for a 64-bit float" in fraction.error
    integer = parse_body(b"[" + b"9" * 50_000 + b"]", "application/json")
    assert integer.error is not None and "4300" in integer.error
    assert parse_body(b"[" + b"9" * 4000 + b"]", "application/json").value == [int("9" * 4000)]
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("document", [
    b"[18446744073709551615, 18446744073709551616, -9223372036854775808, -9223372036854775809]",
    b'{"big": 123456789012345678901234567890, "long": 0.12345678901234567890123}',
    b'["\\ud800 alone", "\\ud83d\\ude00", "caf\xc3\xa9"]',
    b"\xef\xbb\xbf" + b'{"after": "a BOM"}',
    '{"utf16": true}'.encode("utf-16"),
    b'{"a": 1, "a": 2, "n": [-0, -0.0, 1e-400, 1E5, 0.1000000000000000055511151231257827]}',
    b"[" * 500 + b"]" * 500,
])
def test_json_decodes_exactly_as_the_standard_library_does(document):
    expected = json.loads(document)
    assert repr(loads_strict(document)) == repr(expected)


@pytest.mark.parametrize("document", [b"[NaN]", b"[Infinity]", b"[1e400]", b"[-1e400]", b"[1,]",
                                      b'{"a": "\x01"}', b'"\xff"', b"[" * 1000 + b"]" * 1000,
                                      b"[" * 1100 + b"]" * 1100,
                                      b"[" * 200_000])
def test_what_is_not_strict_json_is_refused_with_the_standard_librarys_reason(document):
    with pytest.raises((ValueError, RecursionError)) as refused:
        loads_strict(document)
    assert "orjson" not in type(refused.value).__module__


def test_duplicate_keys_are_found_at_every_depth():
    assert duplicate_keys(b'{"a": 1, "b": {"c": 1, "c": 2}, "a": 3}') == ["c", "a"]
    assert duplicate_keys(b'{"a": 1}') == []
    assert duplicate_keys(b"not json") == []


@pytest.mark.parametrize(("body", "content_type", "kind"), [
    (b'{"type": "PING"}', "application/x-www-form-urlencoded", "json"),
    (b"<r><a>1</a></r>", "application/json", "xml"),
    (b"payload=%7B%22type%22%3A%22PING%22%7D", None, "form"),
    (b"payload=%7B%22type%22%3A%22PING%22%7D", "text/plain", "form"),
])
def test_sniffing_corrects_a_wrong_or_missing_type(body, content_type, kind):
    assert parse_body(body, content_type).kind == kind


def test_a_multipart_body_of_very_many_parts_is_reported_quickly():
    body = b"--XX\r\n\r\n\r\n" * 300_000 + b"--XX--\r\n"
    started = time.monotonic()
    parsed = parse_body(body, "multipart/form-data; boundary=XX")
    assert time.monotonic() - started < 2
    assert "more than 1000 are not parsed" in parsed.error


def _xml_with_lists(levels: int) -> bytes:
    """Each level is an object holding a list (repeated <a>s): two levels of value per element."""
    xml = b"<a/>"
    for _ in range(levels):
        xml = b"<a>" + xml + b"<a/></a>"
    return b"<r>" + xml + b"</r>"


def test_a_view_shows_values_up_to_512_levels_deep_and_reports_deeper_ones():
    for body in (b"[" * 512 + b"]" * 512, b'{"a":' * 511 + b"[1]" + b"}" * 511,
                 _xml_with_lists(200)):
        assert parse_for_display(body, None) == parse_body(body, None)
        assert parse_for_display(body, None).value is not None
    for body, content_type in [(b"[" * 513 + b"]" * 513, "application/json"),
                               (b"[" * 513 + b"]" * 513 + b"\n[]", "application/x-ndjson"),
                               (_xml_with_lists(300), "application/xml")]:
        assert parse_body(body, content_type).error is None  # it parses...
        shown = parse_for_display(body, content_type)  # ...but is too deep to show
        assert (shown.kind, shown.value) == (parse_body(body, content_type).kind, None)
        assert "nested more than 512 levels deep" in shown.error


def test_exactly_1000_multipart_parts_are_parsed_and_1001_are_not():
    part = b'--XX\r\nContent-Disposition: form-data; name="f"\r\n\r\nv\r\n'
    parsed = parse_body(part * 1000 + b"--XX--\r\n", "multipart/form-data; boundary=XX")
    assert parsed.error is None and len(parsed.value) == 1000
    parsed = parse_body(part * 1001 + b"--XX--\r\n", "multipart/form-data; boundary=XX")
    assert parsed.error == "multipart body has 1001 parts; more than 1000 are not parsed"


def test_a_boundary_missing_from_the_body_is_named():
    parsed = parse_body(MULTIPART, "multipart/form-data; boundary=YY")
    assert (parsed.kind, parsed.value) == ("multipart", None)
    assert parsed.error == "the Content-Type's boundary 'YY' is not in the body"


@pytest.mark.parametrize(("body", "kind"), [
    ("é" * 5000, "text"),  # a two-byte character split by the 4096-byte probe
    ("a" * 4095 + "€" + "b" * 100, "text"),  # a three-byte one across it
    ("a" * 9000, "text"),
])
def test_large_text_is_text_across_the_utf8_probe(body, kind):
    parsed = parse_body(body.encode(), "application/octet-stream")
    assert (parsed.kind, parsed.value) == (kind, body)


@pytest.mark.parametrize("body", [
    b"\x00\xef\xde" + b"x" * 10_000,  # binary from the first bytes
    b"a" * 10_000 + b"\xff",  # valid for the probe, not after it
])
def test_large_binary_is_binary_wherever_its_first_bad_byte_is(body):
    assert parse_body(body, None).kind == "binary"


def test_ndjson_past_its_line_cap_is_parsed_up_to_it_and_says_so():
    body = b'{"n": 1}\n' * (MAX_NDJSON_LINES + 5)
    parsed = parse_body(body, "application/x-ndjson")
    assert (parsed.kind, parsed.error) == ("ndjson", None)
    assert parsed.value == [{"n": 1}] * MAX_NDJSON_LINES
    assert parsed.partial == ("only the first 10,000 of 10,005 lines are parsed; body_text has "
                              "them all")
    assert parsed.as_json()["notes"] == [parsed.partial]
    exactly = parse_body(b'{"n": 1}\n' * MAX_NDJSON_LINES, "application/x-ndjson")
    assert (len(exactly.value), exactly.partial) == (MAX_NDJSON_LINES, None)


def test_a_form_past_its_field_cap_is_parsed_up_to_it_and_says_so():
    body = b"&".join(b"f%d=v" % i for i in range(MAX_FORM_FIELDS + 1))
    parsed = parse_body(body, "application/x-www-form-urlencoded")
    assert parsed.value[-1] == [f"f{MAX_FORM_FIELDS - 1}", "v"]
    assert len(parsed.value) == MAX_FORM_FIELDS
    assert parsed.partial == ("only the first 10,000 of 10,001 fields are parsed; body_text has "
                              "them all")


def test_xml_past_its_element_cap_is_not_parsed_and_says_so():
    body = b"<r>" + b"<a/>" * MAX_XML_ELEMENTS + b"</r>"  # the root makes one too many
    parsed = parse_body(body, "application/xml")
    assert (parsed.kind, parsed.value) == ("xml", None)
    assert parsed.error == parsed.partial == ("XML of more than 10,000 elements is not parsed; "
                                              "body_text has it as sent")
    assert parse_body(b"<r>" + b"<a/>" * (MAX_XML_ELEMENTS - 1) + b"</r>",
                      "application/xml").error is None


def test_a_json_string_holding_a_line_separator_is_one_ndjson_line():
    body = '{"a": "x\u2028y"}\n{"b": 2}\n'.encode()
    assert parse_body(body, "application/x-ndjson").value == [{"a": "x\u2028y"}, {"b": 2}]


@pytest.mark.parametrize(("body", "content_type"), [
    (b'{"n": 1}\n' * (MAX_NDJSON_LINES + 1), "application/x-ndjson"),
    (b"<r>" + b"<a/>" * MAX_XML_ELEMENTS + b"</r>", "application/xml"),
])
def test_a_body_past_a_cap_is_not_validated(body, content_type):
    validation = Validation(load_formats())
    for mode, schema in (("auto", None), ("avo.json-schema", None), ("none", {"type": "array"})):
        found = validation.check(parse_body(body, content_type), mode, schema)
        assert found is not None and found["status"] == "unknown"
        assert found["errors"][0]["message"].startswith("not validated: ")


@pytest.mark.parametrize("content_type", ["application/json", "application/x-ndjson", None])
def test_json_over_its_size_cap_is_not_decoded_and_says_so(content_type):
    body = b"[" + b"[1]," * (MAX_JSON_BYTES // 4) + b"[1]]"
    parsed = parse_body(body, content_type)
    assert (parsed.kind, parsed.value, parsed.error) == (
        "ndjson" if content_type == "application/x-ndjson" else "json", None, None)
    assert parsed.partial == "a JSON body over 2 MiB is not parsed; body_text has it as sent"
    just_under = b"[" + b"1," * ((MAX_JSON_BYTES - 3) // 2) + b"1]"
    assert len(just_under) <= MAX_JSON_BYTES and parse_body(just_under, content_type).value


def test_json_over_1_mib_is_orjsons_alone():
    big = b'{"n": 123456789012345678901234, "pad": "' + b"x" * ORJSON_ALONE_BYTES + b'"}'
    assert parse_body(big, "application/json").value["n"] == 1.2345678901234568e+23
    small = b'{"n": 123456789012345678901234}'
    assert parse_body(small, "application/json").value["n"] == 123456789012345678901234
