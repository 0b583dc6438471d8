"""Payload formats: one JSON Schema file per format id, read into one registry.

The registry drives detection (`format: "auto"`), validation, GET /api/formats and the docs test;
docs/formats.md says how a schema file is written. Validation has two roads: jsonschema-rs
(compiled, in Rust) answers "valid" quickly, the capture path's common case (bench/validate compares
it with the alternatives); only a payload it refuses takes the slower jsonschema road to the full
list of errors, each with a JSON pointer and a message. jsonschema is the judge: an error list it
finds empty means valid.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jsonschema_rs
from jsonschema import Draft7Validator
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

from hookscope.formats.cost import schema_cost
from hookscope.ingest.parse import STRICT_JSON
from hookscope.ingest.parsed import Parsed
from hookscope.ops import groups
from hookscope.ops.pointer import token

SCHEMA_DIR = Path(__file__).parent / "schemas"
MAX_ERRORS = 100


MAX_MESSAGE = 300
# Under a custom schema, a document's errors are all listed only when its values times the
# schema's cost stay below this; else the first one (Checker.custom_cost).
LIST_ALL_BELOW = 10_000
FIRST_ERROR_ONLY = ("only the first error is listed: listing them all would check this document "
                    "against too many subschemas")


class SchemaUnusable(ValueError):
    """A schema that cannot be compiled: a $ref that does not resolve or points off this
    machine, a pattern that is not a regex, ..."""


def refuse_remote(uri: str) -> Any:
    raise ValueError(f"$ref {uri} is not fetched: Hookscope never loads schemas from the network")


# Patterns run on the regex crate, in time linear in the string: fancy-regex, jsonschema-rs's
# default, backtracks for lookaround and backreferences (`(?!.*b)x` is quadratic in the string's
# length), so a sender's long string could hold the server. Such a pattern is refused when the
# schema is saved, with this message's pattern named.
_LINEAR_PATTERNS = jsonschema_rs.RegexOptions()
_NOT_A_REGEX = ' is not a "regex"'


def compile_rust(schema: Mapping[str, Any]) -> Any:
    """jsonschema-rs validator; every $ref resolved now, none fetched from the network."""
    try:
        return jsonschema_rs.validator_for(dict(schema), retriever=refuse_remote,
                                           pattern_options=_LINEAR_PATTERNS)
    except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError,
            TypeError) as exc:
        message = str(exc).split("\n", 1)[0]
        if message.endswith(_NOT_A_REGEX):
            message = (f"pattern {message.removesuffix(_NOT_A_REGEX)} is refused: patterns run in "
                       "linear time here, so lookaround and backreferences are not supported")
        raise SchemaUnusable(_short(message)) from None


@dataclass(frozen=True)
class Checker:
    """A compiled schema: the fast yes/no (jsonschema-rs) and the full error list.

    For the documented formats the full list comes from python-jsonschema, whose messages the
    fixtures and users read; should it find nothing where the fast road found a problem (the two
    regex dialects differ: Python's `$` accepts a trailing newline, its `\\d` any Unicode digit),
    jsonschema-rs's own errors are reported, so a disagreement never turns into "valid". A
    user's own schema is judged by jsonschema-rs alone: its patterns run in linear time, and one
    draft default applies everywhere.
    """

    rust: Any
    full: Validator | None
    # A custom schema's cost (formats.cost), when it is one: jsonschema-rs makes all of a
    # document's errors at once, each costing up to that many subschemas' checks (anyOf of
    # $refs fans out), for every failing item of an array. So all are listed only when the
    # document and the cost are both small (LIST_ALL_BELOW), else only the first, which costs
    # one value's check.
    custom_cost: int | None = None

    @classmethod
    def compile(cls, schema: Mapping[str, Any]) -> Checker:
        return cls(compile_rust(schema), validator_for(schema, default=Draft7Validator)(schema))

    @classmethod
    def compile_custom(cls, schema: Mapping[str, Any]) -> Checker:
        return cls(compile_rust(schema), None, schema_cost(dict(schema)))

    def errors(self, document: Any, prefix: str = "") -> list[dict[str, str]]:
        try:
            if self.rust.is_valid(document):
                return []
        except (ValueError, TypeError, OverflowError, RecursionError):
            pass  # e.g. an integer beyond 64 bits: the Python road decides
        found: list[dict[str, str]] = []
        try:
            if self.full is not None:
                found = [_error(prefix, e.absolute_path, e.message)
                         for e in islice(self.full.iter_errors(document), MAX_ERRORS)]
            if not found and self.custom_cost is not None and not _small(
                    document, LIST_ALL_BELOW // max(self.custom_cost, 1)):
                try:
                    self.rust.validate(document)
                except jsonschema_rs.ValidationError as error:
                    found = [*_rust_errors(prefix, error), _error(prefix, (), FIRST_ERROR_ONLY)]
            elif not found:
                found = [e for error in islice(self.rust.iter_errors(document), MAX_ERRORS)
                         for e in _rust_errors(prefix, error)][:MAX_ERRORS]
        except RecursionError:
            return [_error(prefix, (), "document is nested too deeply to validate")]
        except (ValueError, TypeError, OverflowError) as exc:
            return [_error(prefix, (), f"could not validate: {_short(str(exc))}")]
        found.sort(key=lambda e: e["path"])
        return found


def _small(document: Any, limit: int) -> bool:
    """Does `document` hold at most `limit` values (containers and scalars, at any depth)?"""
    seen = 1
    level = [document]
    while level and seen <= limit:
        level = [item for container in level if isinstance(container, (dict, list))
                 for item in (container.values() if isinstance(container, dict) else container)]
        seen += len(level)
    return seen <= limit


def _error(prefix: str, path: Iterable[Any], message: str) -> dict[str, str]:
    return {"path": prefix + pointer(path), "message": _short(message)}


# JSON's names for a value's type, in the order a message lists them.
_TYPE_ORDER = ("object", "array", "string", "integer", "number", "boolean", "null")


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _rust_errors(prefix: str, error: Any) -> list[dict[str, str]]:
    """A jsonschema-rs error as the verdict reports it. The three a contract's drift mostly is
    (docs/contracts.md) say what changed, at the pointer of the field concerned: "unexpected
    property /data/foo", "expected integer, got string", "missing required /id". jsonschema-rs's
    own words name the object rather than the field, and quote the whole object."""
    kind = error.kind
    path = list(error.instance_path)
    try:
        name = kind.name
        if name == "type":
            types = sorted(kind.types, key=lambda t: _TYPE_ORDER.index(t)
                           if t in _TYPE_ORDER else len(_TYPE_ORDER))
            return [_error(prefix, path, f"expected {' or '.join(types)}, "
                                         f"got {json_type(error.instance)}")]
        if name == "required" and isinstance(kind.property, str):
            where = prefix + pointer([*path, kind.property])
            return [{"path": where, "message": _short(f"missing required {where}")}]
        if name == "additionalProperties" and kind.unexpected:
            found = []
            for extra in kind.unexpected:
                where = prefix + pointer([*path, extra])
                found.append({"path": where, "message": _short(f"unexpected property {where}")})
            return found
    except (AttributeError, TypeError, ValueError):
        pass  # an error kind of another shape: its own message says it
    return [_error(prefix, path, error.message)]


def _short(text: str) -> str:
    """Messages quote the offending value first and say what is wrong last ("[...] is not of
    type 'string'"): a long value is cut in the middle so the verdict stays readable."""
    if len(text) <= MAX_MESSAGE:
        return text
    return text[:100] + " ... " + text[-(MAX_MESSAGE - 105):]


def pointer(parts: Iterable[Any]) -> str:
    """JSON pointer (RFC 6901) of a path."""
    return "".join("/" + token(p) for p in parts)


@dataclass(frozen=True)
class Format:
    id: str
    title: str
    vendor: str
    description: str
    priority: int
    schema: dict[str, Any]
    checker: Checker
    identify: Callable[[Any], bool]
    # From `identify`: sets of key paths (("data", "licenseCode") = document["data"]
    # ["licenseCode"]), one of which every payload of this format has in full. These lookups
    # spare most documents the identify call, by far the dearer (docs/performance.md).
    # Each alternative is split into its top-level keys (one C-level subset check) and the
    # deeper paths, looked at only when the top-level keys are all there.
    key_sets: tuple[tuple[frozenset[str], tuple[tuple[str, ...], ...]], ...]
    # Compiled `definitions` named *Line: row schemas of line-based fields (Avo NDJSON), and a
    # fast check of all rows at once.
    lines: Mapping[str, Checker]
    line_arrays: Mapping[str, Callable[[Any], bool]]

    def as_json(self) -> dict[str, str]:
        return {"id": self.id, "title": self.title, "vendor": self.vendor,
                "description": self.description}

    def recognises(self, document: Any) -> bool:
        """Has the document this format's identifying shape?"""
        if not isinstance(document, dict):
            return False
        keys = document.keys()
        for top, deeper in self.key_sets:
            if top <= keys and all(_has(document, path) for path in deeper):
                break
        else:
            return False
        return _fast_says_valid(self.identify, document)


class FormatRegistry:
    def __init__(self, formats: Iterable[Format]) -> None:
        self.formats = sorted(formats, key=lambda f: (-f.priority, f.id))
        self._by_id = {f.id: f for f in self.formats}
        # One required path from each identifying alternative, its deepest (the rarest): a
        # document that has no anchor of a format cannot have its shape, so only the formats
        # whose anchor it has are asked (asking every format was a visible share of the capture
        # path, and top-level anchors alone still sent any {"data": ...} document, Stripe's
        # events say, through three WebEngage formats).
        # Keyed by the path's first key, then the rest of the path.
        self._anchors: dict[str, dict[tuple[str, ...], set[str]]] = {}
        self._anchorless: set[str] = set()
        for f in self.formats:
            for top, deeper in f.key_sets:
                if not top:
                    self._anchorless.add(f.id)
                    continue
                path = min(deeper, key=lambda p: (-len(p), p)) if deeper else (min(top),)
                rests = self._anchors.setdefault(path[0], {})
                rests.setdefault(path[1:], set()).add(f.id)

    @property
    def ids(self) -> list[str]:
        return sorted(self._by_id)

    def get(self, format_id: str) -> Format | None:
        return self._by_id.get(format_id)

    def detect(self, document: Any) -> Format | None:
        """The first format, by priority then id, whose identifying shape the document has."""
        if not isinstance(document, dict):
            return None
        candidates = set(self._anchorless)
        for key in self._anchors.keys() & document.keys():
            value = document[key]
            for rest, ids in self._anchors[key].items():
                if not rest or _has(value, rest):
                    candidates |= ids
        if not candidates:
            return None
        return next((f for f in self.formats if f.id in candidates and f.recognises(document)),
                    None)

    def errors(self, fmt: Format, document: Any) -> list[dict[str, str]]:
        found = fmt.checker.errors(document)
        extra = _EXTRA_CHECKS.get(fmt.id)
        if extra is not None and isinstance(document, dict):
            found += extra(fmt, document)
        return found[:MAX_ERRORS]


def _load_format(path: Path) -> Format:
    schema = json.loads(path.read_text())
    meta = schema.get("x-hookscope", {})
    identify = meta.get("identify", {})
    definitions = schema.get("definitions", {})
    line_names = [name for name in definitions if name.endswith("Line")]
    lines = {name: Checker.compile({"$schema": schema.get("$schema"),
                                    "$ref": f"#/definitions/{name}", "definitions": definitions})
             for name in line_names}
    line_arrays = {name: _fast({"$schema": schema.get("$schema"), "type": "array",
                                "items": {"$ref": f"#/definitions/{name}"},
                                "definitions": definitions})
                   for name in line_names}
    return Format(
        id=path.stem, title=schema.get("title", path.stem), vendor=meta.get("vendor", ""),
        description=schema.get("description", ""), priority=int(meta.get("priority", 0)),
        schema=schema, checker=Checker.compile(schema),
        identify=_fast(identify),
        key_sets=tuple((frozenset(path[0] for path in paths if len(path) == 1),
                        tuple(path for path in paths if len(path) > 1))
                       for paths in _key_sets(identify)),
        lines=lines, line_arrays=line_arrays)


def _fast(schema: Mapping[str, Any]) -> Callable[[Any], bool]:
    return compile_rust(schema).is_valid  # type: ignore[no-any-return]


def _fast_says_valid(is_valid: Callable[[Any], bool], document: Any) -> bool:
    try:
        return is_valid(document)
    except (ValueError, TypeError, OverflowError, RecursionError):
        return False  # e.g. an integer beyond 64 bits: let the full road decide


def _has(document: dict[str, Any], path: tuple[str, ...]) -> bool:
    value: Any = document
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return False
        value = value[key]
    return True


def _key_sets(schema: Any, limit: int = 64) -> list[frozenset[tuple[str, ...]]]:
    """Alternatives of key paths a schema requires: `required` keys (and what their
    `properties` subschemas require below them), allOf combines, anyOf/oneOf branch.
    Conservative: anything else (not, if/then) requires nothing more."""
    if not isinstance(schema, dict):
        return [frozenset()]
    required = [key for key in schema.get("required", []) if isinstance(key, str)]
    alternatives: list[frozenset[tuple[str, ...]]] = [frozenset((key,) for key in required)]
    for key in required:
        below = schema.get("properties", {}).get(key)
        if isinstance(below, dict):
            nested = [frozenset((key, *path) for path in paths)
                      for paths in _key_sets(below, limit)]
            alternatives = [a | b for a in alternatives for b in nested]
    for sub in schema.get("allOf", []):
        alternatives = [a | b for a in alternatives for b in _key_sets(sub, limit)]
    for keyword in ("anyOf", "oneOf"):
        if keyword in schema:
            branches = [b for sub in schema[keyword] for b in _key_sets(sub, limit)]
            alternatives = [a | b for a in alternatives for b in branches]
    if len(alternatives) > limit:  # too many to be worth it: only what all of them share
        return [frozenset.intersection(*alternatives)]
    return alternatives


@functools.cache
def load_formats(directory: Path = SCHEMA_DIR) -> FormatRegistry:
    """Read and compile every schema file once per process (compiling is the slow part)."""
    return FormatRegistry(_load_format(p) for p in sorted(directory.glob("*.json")))


# -- what JSON Schema cannot say ----------------------------------------------------------------


def _ndjson_rows(fmt: Format, envelope: dict[str, Any]) -> list[dict[str, str]]:
    """Avo NDJSON: `events` and `properties` hold one JSON object per line; each line is checked
    against its row schema, errors at /events/<line>/... and /properties/<line>/..."""
    errors: list[dict[str, str]] = []
    for field, definition in (("events", "eventLine"), ("properties", "propertyLine")):
        text = envelope.get(field)
        checker = fmt.lines.get(definition)
        if not isinstance(text, str) or checker is None:
            continue  # the envelope's own schema already reports a wrong type
        rows: list[tuple[int, Any]] = []
        for number, line in enumerate(text.splitlines()):
            if not line.strip():
                continue
            try:
                rows.append((number, STRICT_JSON.decode(line)))
            except (ValueError, RecursionError) as exc:
                errors.append(_error(f"/{field}/{number}", (),
                                     f"line {number} is not valid JSON: {exc}"))
        # All rows in one fast call; only a refusal takes the row-by-row road.
        if _fast_says_valid(fmt.line_arrays[definition], [row for _, row in rows]):
            continue
        for number, row in rows:
            if len(errors) >= MAX_ERRORS:
                break
            errors += checker.errors(row, prefix=f"/{field}/{number}")
    return errors[:MAX_ERRORS]


_EXTRA_CHECKS: dict[str, Callable[[Format, dict[str, Any]], list[dict[str, str]]]] = {
    "avo.ndjson": _ndjson_rows,
}


# -- from a parsed body to a verdict -------------------------------------------------------------


def document_of(parsed: Parsed) -> tuple[bool, Any]:
    """(found, document): the JSON value a format applies to, if the body has one. JSON as is;
    a form whose only field `payload` holds JSON (Virtuoso) that JSON; XML its parsed view."""
    if parsed.error is not None:
        return False, None
    if parsed.kind in ("json", "xml"):
        return True, parsed.value
    if parsed.kind == "form" and len(parsed.value) == 1 and parsed.value[0][0] == "payload":
        try:
            return True, STRICT_JSON.decode(parsed.value[0][1])
        except (ValueError, RecursionError):
            return False, None
    return False, None


def verdict(format_id: str | None, detected: bool, errors: list[dict[str, str]] | None,
            status: str | None = None) -> dict[str, Any]:
    return {"format": format_id, "detected": detected,
            "status": status or ("invalid" if errors else "valid"), "errors": errors or []}


def documents_of(parsed: Parsed) -> list[tuple[str, Any]] | None:
    """The JSON values an endpoint's own schema applies to (and a contract is inferred from), each
    with the pointer its errors start with: the document of `document_of`; each line of NDJSON,
    at /<row> (its index in the parsed view, blank lines not counted); a form's fields as an
    object of strings (a repeated name keeps its last value). None when the body has none."""
    found, document = document_of(parsed)
    if found:
        return [("", document)]
    if parsed.error is not None or parsed.value is None:
        return None
    if parsed.kind == "ndjson":
        return [(f"/{row}", line) for row, line in enumerate(parsed.value)]
    if parsed.kind == "form":
        return [("", {name: value for name, value in parsed.value})]
    return None


def contract_groups(schema: Mapping[str, Any]) -> tuple[str, dict[str, str]] | None:
    """(group_by, {event type: name in $defs}) of a contract whose event types only the request
    can tell apart (a header, the sub-path), as hookscope.ops.infer writes it; None otherwise.
    A body field names its own group within the schema (if/then), so needs nothing here."""
    meta = schema.get("x-hookscope")
    if not isinstance(meta, dict):
        return None
    group_by, names = meta.get("group_by"), meta.get("groups")
    if (not isinstance(group_by, str) or not group_by.startswith(("header:", "path"))
            or not isinstance(names, dict)
            or not all(isinstance(v, str) for v in names.values())):
        return None
    return group_by, names


def _group_ref(name: str) -> str:
    return "#/$defs/" + quote(token(name), safe="")


class Validation:
    """Decides a capture's validation verdict from the endpoint's `format` and `schema`."""

    def __init__(self, registry: FormatRegistry) -> None:
        self.registry = registry
        # Keyed by the schema object (held here, so its id cannot be reused while cached): the
        # capture path sees the same Endpoint object until it changes, and serialising the
        # schema for a key on every capture would cost more than validating. Each schema's
        # checkers: the whole (None), and one per event type of a contract grouped by request.
        self._custom: dict[int, tuple[Mapping[str, Any], dict[str | None, Checker]]] = {}

    def check(self, parsed: Parsed, mode: str, schema: Mapping[str, Any] | None, *,
              headers: Sequence[Sequence[str]] | None = None, path: str | None = None
              ) -> dict[str, Any] | None:
        """`headers` and `path` are the request's, for a contract whose event types a header or
        the sub-path names; without them such a contract is checked whole (its anyOf)."""
        if schema is None and mode == "none":
            return None
        if parsed.partial is not None:
            # A cap or the budget left part of the body unread: no verdict on the rest.
            format_id = "custom" if schema is not None else (None if mode == "auto" else mode)
            return verdict(format_id, False, [{"path": "", "message": "not validated: "
                                               f"{parsed.partial}"}], status="unknown")
        if schema is not None:
            return self._custom_verdict(parsed, schema, headers, path)
        found, document = document_of(parsed)
        if mode == "auto":
            fmt = self.registry.detect(document) if found else None
            if fmt is None:
                return None  # nothing recognisable: unknown (stored as NULL)
            return verdict(fmt.id, True, self.registry.errors(fmt, document))
        fmt = self.registry.get(mode)
        if fmt is None:
            return verdict(mode, False, [{"path": "", "message": f"unknown format {mode!r}"}])
        if not found:
            return verdict(fmt.id, False, [{"path": "", "message": _no_document(parsed)}])
        return verdict(fmt.id, fmt.recognises(document), self.registry.errors(fmt, document))

    def _custom_verdict(self, parsed: Parsed, schema: Mapping[str, Any],
                        headers: Sequence[Sequence[str]] | None,
                        path: str | None) -> dict[str, Any]:
        documents = documents_of(parsed)
        if documents is None:
            return verdict("custom", False, [{"path": "", "message": _no_document(parsed)}])
        group: str | None = None
        grouped = contract_groups(schema) if headers is not None and path is not None else None
        if grouped is not None:
            group_by, names = grouped
            event = groups.key(groups.Sample(headers or [], path or "", None), group_by)
            if event not in names:
                known = ", ".join(repr(name) for name in names) or "none"
                return verdict("custom", False, [{"path": "", "message": _short(
                    f"no event type {event!r} in the contract ({group_by}); it has {known}")}])
            group = names[event]
        try:
            checker = self._checker(schema, group)
        except SchemaUnusable as exc:
            return verdict("custom", False, [{"path": "", "message": f"the endpoint's "
                                              f"schema cannot be used: {exc}"}])
        errors: list[dict[str, str]] = []
        for prefix, document in documents:
            if len(errors) >= MAX_ERRORS:
                break
            errors += checker.errors(document, prefix)
        return verdict("custom", False, errors[:MAX_ERRORS])

    def _checker(self, schema: Mapping[str, Any], group: str | None) -> Checker:
        cached = self._custom.get(id(schema))
        if cached is None or cached[0] is not schema:
            if len(self._custom) > 256:
                self._custom.clear()
            cached = self._custom[id(schema)] = (schema, {})
        checkers = cached[1]
        if group not in checkers:
            if group is None:
                checkers[group] = Checker.compile_custom(schema)
            else:
                below = {"$defs": schema.get("$defs", {}), "$ref": _group_ref(group)}
                if "$schema" in schema:
                    below["$schema"] = schema["$schema"]
                checkers[group] = Checker.compile_custom(below)
        return checkers[group]


def _no_document(parsed: Parsed) -> str:
    if parsed.error:
        return f"the body could not be parsed: {parsed.error}"
    return f"the body is {parsed.kind}, not a JSON document"
