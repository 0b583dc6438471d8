"""Body -> parsed view. Never raises: a body that does not parse is reported in `error`.

The raw bytes stay the source of truth; this view is derived from them (the kind and error at
capture time, the value again whenever a capture is read in full). JSON, NDJSON and forms are
parsed here; multipart bodies in multipart.py, XML in xml_tree.py.

The kind comes from the Content-Type; when that is missing or generic (text/plain,
application/octet-stream) or the declared kind fails to parse, the body is sniffed: `{`/`[` ->
JSON (or NDJSON when every line is JSON), `<` -> XML. XML is parsed with defusedxml with DTDs
forbidden outright, so entity expansion (billion laughs) and external entities cannot happen.
"""

from __future__ import annotations

import codecs
import json
import logging
import math
import re
from typing import Any
from urllib.parse import parse_qsl

import orjson

from hookscope.ingest.multipart import parse_multipart
from hookscope.ingest.parsed import Parsed, short_error
from hookscope.ingest.xml_tree import parse_xml

log = logging.getLogger("hookscope.parse")

NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl",
                "application/x-jsonlines", "application/jsonlines")
GENERIC_TYPES = ("", "text/plain", "application/octet-stream")
# What the parsed view of a large body takes at most: the body itself is always stored whole.
# Each is far beyond what a webhook sends, and keeps a view's cost bounded whatever the body.
MAX_NDJSON_LINES = 10_000
MAX_FORM_FIELDS = 10_000
# JSON (and NDJSON) larger than this is not decoded: a decoder makes every value in one call that
# holds the interpreter, and so the event loop, for as long as it takes (which grows with the
# number of values, not the bytes), in whatever thread it runs. docs/performance.md has figures.
MAX_JSON_BYTES = 2 * 1024 * 1024
NOT_PARSED_JSON = (f"a JSON body over {MAX_JSON_BYTES >> 20} MiB is not parsed; body_text has it "
                   "as sent")
_PROBE = 4096  # bytes of a large body checked for UTF-8 before the whole of it
_FORM_LIKE = re.compile(rb"[A-Za-z0-9_.\-\[\]%+]+=[^\s&]*(&[A-Za-z0-9_.\-\[\]%+]+=[^\s&]*)*")


# Deeper than this, a parsed value is reported rather than shown (see parse_for_display).
MAX_SHOWN_DEPTH = 512
# Larger than this, a body is not parsed again to be shown (its parsed value would take many
# times its size in memory, and in the reply); it was parsed to be validated when it came.
MAX_SHOWN_BYTES = 2 * 1024 * 1024
NOT_SHOWN = (f"a body over {MAX_SHOWN_BYTES >> 20} MiB is not shown parsed; body_text has it as "
             "sent")


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_body(body: bytes, content_type: str | None) -> Parsed:
    try:
        return _parse(body, content_type)
    except Exception as exc:
        # The parsers below catch what they are known to raise; one that raises something else
        # (an XML encoding lookup once did) must not cost the capture, nor its full view.
        log.exception("could not parse a body of type %r", content_type)
        return Parsed(_plain(body).kind, None,
                      f"could not be parsed ({type(exc).__name__}: {short_error(exc)})")


def _parse(body: bytes, content_type: str | None) -> Parsed:
    if not body:
        return Parsed("empty")
    mt = media_type(content_type)
    if mt == "application/json" or mt.endswith("+json"):
        parsed = _json(body)
        return (_sniffed(body, parsed) or parsed) if parsed.error else parsed
    if mt in NDJSON_TYPES:
        return _ndjson(body)
    if mt == "application/x-www-form-urlencoded":
        # A JSON body sent with the form type (a common sender bug) is JSON.
        return _sniffed(body, None) or _form(body)
    if mt.startswith("multipart/"):
        return parse_multipart(body, content_type or "")
    if mt in ("application/xml", "text/xml") or mt.endswith("+xml"):
        return parse_xml(body)
    if mt in GENERIC_TYPES:
        sniffed = _sniffed(body, None)
        if sniffed is not None:
            return sniffed
        if _FORM_LIKE.fullmatch(body.strip()):
            return _form(body)
    return _plain(body)


def unparsed(body: bytes, content_type: str | None, reason: str) -> Parsed:
    """The view of a body that was not parsed (its budget ran out): its kind as declared, no
    value, and why, which also keeps it from being validated."""
    mt = media_type(content_type)
    if not body:
        kind = "empty"
    elif mt == "application/json" or mt.endswith("+json"):
        kind = "json"
    elif mt in NDJSON_TYPES:
        kind = "ndjson"
    elif mt == "application/x-www-form-urlencoded":
        kind = "form"
    elif mt.startswith("multipart/"):
        kind = "multipart"
    elif mt in ("application/xml", "text/xml") or mt.endswith("+xml"):
        kind = "xml"
    else:
        kind = "binary"
    return Parsed(kind, None, reason, reason)


def _plain(body: bytes) -> Parsed:
    try:
        # A failed decode copies the whole body into the exception, which is slow for a large
        # one: most binary bodies show themselves in their first bytes, so look there first.
        if len(body) > _PROBE:
            codecs.getincrementaldecoder("utf-8")().decode(body[:_PROBE], final=False)
        return Parsed("text", body.decode("utf-8"))
    except UnicodeDecodeError:
        return Parsed("binary")


def parse_for_display(body: bytes, content_type: str | None) -> Parsed:
    """parse_body for a view that is written out as JSON (a capture in full).

    Python's JSON parser and writer share one recursion limit but start at different stack
    depths, and so does every Python client that reads the view: a body nested just shallowly
    enough to parse here (~960 levels) could fail to be written out, or be read back. So a value
    nested deeper than MAX_SHOWN_DEPTH is reported, whatever the stack. Not on the capture path:
    the walk costs about as much as the parse, and only bodies with that many brackets pay it.
    """
    parsed = parse_body(body, content_type)
    if (isinstance(parsed.value, (dict, list))
            and body.count(b"[") + body.count(b"{") + body.count(b"<") > MAX_SHOWN_DEPTH
            and deeper_than(parsed.value, MAX_SHOWN_DEPTH)):
        return Parsed(parsed.kind, None, f"nested more than {MAX_SHOWN_DEPTH} levels deep: not "
                                         "shown parsed (body_text has it as sent)")
    return parsed


def deeper_than(value: Any, limit: int) -> bool:
    """Do lists and objects nest more than `limit` deep? Level by level, no recursion."""
    level = [value]
    for _ in range(limit):
        level = [item for container in level
                 for item in (container.values() if type(container) is dict else container)
                 if type(item) is dict or type(item) is list]
        if not level:
            return False
    return True


def _sniffed(body: bytes, declared: Parsed | None) -> Parsed | None:
    """What the body is when its Content-Type does not say (or says wrong); `declared` is kept
    when nothing better is found."""
    start = body.lstrip()[:1]
    if start in (b"{", b"["):
        parsed = _json(body) if declared is None else declared
        if parsed.error is None:
            return parsed
        lines = _ndjson(body)
        if lines.error is None and len(lines.value) > 1:
            return lines
        return declared if declared is not None else None
    if start == b"<":
        parsed = parse_xml(body)
        if parsed.error is None or "refused" in (parsed.error or ""):
            return parsed
    return declared


# -- JSON ----------------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (math.inf, -math.inf):
        raise ValueError(f"number {text[:40]} is too large for a 64-bit float")
    return value


# One strict decoder for every body and every API request: JSON has no NaN or Infinity, and a
# number that overflows to infinity could not be written back out. (json.loads() with any option
# would also build a new decoder per call.)
STRICT_JSON = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


# orjson decodes a document several times faster than the standard library (a visible share of
# a capture's cost, docs/performance.md). Where the two could differ, the standard library decides:
# orjson turns integers beyond 64 bits into floats (so any run of 19 digits goes to the
# standard library), and everything orjson refuses (lone surrogates, a BOM, UTF-16, nesting
# past 1024, NaN, 1e400, and what is not JSON at all) is decided, and explained, by it. So is
# anything that could nest deeper than the standard library goes (about 990 levels, less the
# caller's stack), which orjson would accept and then json.dumps could not write out.
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_NUMBER = b"0" * 19
_MAX_OPENINGS = 900
ORJSON_ALONE_BYTES = 1024 * 1024


def loads_strict(data: bytes) -> Any:
    """Decode JSON bytes (UTF-8/16/32); ValueError or RecursionError when it is not JSON."""
    if len(data) > ORJSON_ALONE_BYTES:
        # The standard library's decoder holds the interpreter for the whole document, and so
        # holds the event loop up, wherever it runs, and is slower than orjson: a document this
        # large is orjson's alone (integers beyond 64 bits become floats, and
        # what orjson refuses, a lone surrogate say, is not JSON here).
        return orjson.loads(data)
    # (find(), not `in`: bytes.__contains__ first tries its argument as an integer, and raising
    # and dropping that TypeError costs more than the search.)
    if data.translate(_DIGITS_TO_ZERO).find(_LONG_NUMBER) < 0:
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
        else:
            # Nesting n deep takes 2n bytes; past that many brackets, the depth is looked at
            # (in Python, which lets a waiting event loop in; the standard library's decoder
            # would hold the interpreter for the whole of a large document).
            if (len(data) <= 2 * _MAX_OPENINGS
                    or data.count(b"[") + data.count(b"{") <= _MAX_OPENINGS
                    or not deeper_than(value, _MAX_OPENINGS)):
                return value
    return STRICT_JSON.decode(data.decode(json.detect_encoding(data)))


def _json(body: bytes) -> Parsed:
    if len(body) > MAX_JSON_BYTES:
        return Parsed("json", None, None, NOT_PARSED_JSON)
    try:
        return Parsed("json", loads_strict(body))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        return Parsed("json", None, f"invalid JSON: {short_error(exc)}")


def duplicate_keys(body: bytes) -> list[str]:
    """Keys that appear twice in one JSON object (the parsed value keeps the last, like every
    parser). Only for showing a capture in full: the capture path does not pay for it."""
    found: list[str] = []

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen and key not in found:
                found.append(key)
            seen.add(key)
        return dict(pairs)

    try:
        json.loads(body, object_pairs_hook=hook, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return []
    return found


def _ndjson(body: bytes) -> Parsed:
    if len(body) > MAX_JSON_BYTES:
        return Parsed("ndjson", None, None, NOT_PARSED_JSON)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Parsed("ndjson", None, f"NDJSON is not UTF-8: {short_error(exc)}")
    # Lines end at LF (CRLF too); a JSON string may hold U+2028 and the like, which are not
    # line ends here.
    lines = text.split("\n", MAX_NDJSON_LINES)
    partial = None
    if len(lines) > MAX_NDJSON_LINES and lines.pop().strip():
        total = text.count("\n") + (not text.endswith("\n"))
        partial = (f"only the first {MAX_NDJSON_LINES:,} of {total:,} lines are parsed; "
                   "body_text has them all")
    rows = []
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(loads_strict(line.encode()))
        except (ValueError, RecursionError) as exc:
            return Parsed("ndjson", None, f"line {number + 1} is not JSON: {short_error(exc)}")
    return Parsed("ndjson", rows, None, partial)


# -- forms ---------------------------------------------------------------------------------------


def _form(body: bytes) -> Parsed:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Parsed("form", None, f"form body is not UTF-8: {short_error(exc)}")
    fields = text.split("&", MAX_FORM_FIELDS)
    partial = None
    if len(fields) > MAX_FORM_FIELDS and fields.pop():
        partial = (f"only the first {MAX_FORM_FIELDS:,} of {text.count('&') + 1:,} fields are "
                   "parsed; body_text has them all")
    pairs = parse_qsl("&".join(fields), keep_blank_values=True, strict_parsing=False)
    return Parsed("form", [[k, v] for k, v in pairs], None, partial)


