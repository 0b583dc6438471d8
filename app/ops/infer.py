"""Contracts from traffic: a JSON Schema (2020-12) inferred from the documents an endpoint received,
one sub-schema per event type (hookscope.ops.groups), for GET /api/endpoints/{key}/schema and
`hookscope schema infer`.

genson merges the samples of each group: types (an integer widens to a number, a field that is
sometimes null takes both), array items across every element, and `required` as the keys every
sample of the group has. What Hookscope adds, through genson's strategies:

- `format` (date-time, date, uri, email, uuid) on a string only when every sample matches it;
- `enum` of a string's values, when asked and the values repeat (at most MAX_ENUM of them);
- `additionalProperties: false` on every object, unless asked otherwise, so that a property the
  samples never had is drift ("unexpected property /data/foo");
- one schema per group, combined so each is checked against its own shape: for a body field
  (`pointer:`), an `allOf` of `if` {the field is the group's value} `then` {its schema}, and the
  field's `enum` of the values seen; for a header or the sub-path, which the body cannot name,
  an `anyOf` of the group schemas (what any validator understands), and in `x-hookscope` the
  grouping and the group schemas' names, by which Hookscope's own validation picks the one group
  a capture's header or path names (hookscope.formats.Validation).

Pure: the caller reads the captures (through the store) and parses them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from genson import SchemaBuilder
from genson.schema.node import SchemaNode
from genson.schema.strategies import String

from hookscope.ops.groups import MISSING, Sample, choose, key
from hookscope.ops.pointer import resolve, tokens

DRAFT = "https://json-schema.org/draft/2020-12/schema"
MAX_ENUM = 20
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000

# Each format's test, strict enough that a value passing it passes a format checker too.
_DATE_TIME = re.compile(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)")
_DATE = re.compile(r"\d{4}-\d\d-\d\d")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_EMAIL = re.compile(r"[^@\s:/]+@[^@\s:/]+\.[^@\s:/]+")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s<>\"{}|\\^`]+")
# When several match every sample, the first is said.
FORMATS = ("date-time", "date", "uuid", "email", "uri")


def formats_of(text: str) -> set[str]:
    """The formats `text` is an instance of."""
    found = set()
    if _DATE_TIME.fullmatch(text):
        try:
            datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
            found.add("date-time")
        except ValueError:
            pass
    elif _DATE.fullmatch(text):
        try:
            date.fromisoformat(text)
            found.add("date")
        except ValueError:
            pass
    elif _UUID.fullmatch(text):
        found.add("uuid")
    elif _EMAIL.fullmatch(text):
        found.add("email")
    elif _URI.fullmatch(text):
        found.add("uri")
    return found


class _FormattedString(String):  # type: ignore[misc]
    """A string's formats: those every sample matched."""

    ENUMS = False

    def __init__(self, node_class: type) -> None:
        super().__init__(node_class)
        self._formats: set[str] | None = None
        self._values: set[str] = set()
        self._count = 0

    def add_object(self, obj: str) -> None:
        super().add_object(obj)
        self._count += 1
        seen = formats_of(obj)
        self._formats = seen if self._formats is None else self._formats & seen
        if self.ENUMS and len(self._values) <= MAX_ENUM:
            self._values.add(obj)

    def to_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = super().to_schema()
        chosen = [f for f in FORMATS if f in (self._formats or ())]
        if chosen:
            schema["format"] = chosen[0]
        # Only values that repeat make an enum: an id or a timestamp never does.
        if self.ENUMS and 0 < len(self._values) <= MAX_ENUM and len(self._values) < self._count:
            schema["enum"] = sorted(self._values)
        return schema


class _EnumString(_FormattedString):
    ENUMS = True


class _Node(SchemaNode):  # type: ignore[misc]
    """genson's node, except that the schemas of a value's several types are merged into one with
    a list of types rather than an anyOf: their keywords apply to different types (format to a
    string, properties to an object), and one schema gives one precise error ("expected integer
    or null, got string") where an anyOf gives "not valid under any of the given schemas"."""

    def to_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = super().to_schema()
        if "anyOf" not in schema:
            return schema
        types: list[str] = []
        merged: dict[str, Any] = {}
        for part in schema["anyOf"]:
            kinds = part.get("type", [])
            types += kinds if isinstance(kinds, list) else [kinds]
            merged.update({k: v for k, v in part.items() if k != "type"})
        if "enum" in merged:  # an enum holds every type's values, so only a string's and null
            if set(types) <= {"string", "null"}:
                merged["enum"] = merged["enum"] + [None] * ("null" in types)
            else:
                del merged["enum"]
        return {"type": sorted(set(types)), **merged}


class _Builder(SchemaBuilder):  # type: ignore[misc]
    EXTRA_STRATEGIES = (_FormattedString,)
    NODE_CLASS = _Node


class _EnumBuilder(SchemaBuilder):  # type: ignore[misc]
    EXTRA_STRATEGIES = (_EnumString,)
    NODE_CLASS = _Node


# genson's metaclass makes NODE_CLASS from STRATEGIES; the merging node takes them over.
for _builder in (_Builder, _EnumBuilder):
    _builder.NODE_CLASS = type(f"{_builder.__name__}Node", (_Node,),  # type: ignore[assignment]
                               {"STRATEGIES": _builder.STRATEGIES})


@dataclass(frozen=True)
class Options:
    group_by: str = "auto"
    enums: bool = False
    # False: every object says additionalProperties: false, so a new property is drift.
    additional_properties: bool = False


def infer(samples: Sequence[Sample], options: Options = Options()) -> dict[str, Any]:
    """{"schema", "samples", "group_by", "groups": [{"key", "samples"}]} for the documents of
    `samples` (each Sample's body is one document: a JSON body, one NDJSON line, a form)."""
    group_by = choose(samples) if options.group_by == "auto" else options.group_by
    grouped: dict[str, list[Any]] = {}
    values: dict[str, Any] = {}  # the value a pointer grouping found, for its `const`
    for sample in samples:
        name = key(sample, group_by)
        grouped.setdefault(name, []).append(sample.body)
        if group_by.startswith("pointer:") and name not in values and name != MISSING:
            values[name] = resolve(sample.body, group_by.partition(":")[2])
    schemas = {name: _merge(documents, options) for name, documents in grouped.items()}
    if group_by == "none" or not schemas:
        schema = {"$schema": DRAFT, **(schemas.get("*") or {})}
    else:
        schema = _combine(group_by, schemas, values)
    return {"schema": schema, "samples": len(samples), "group_by": group_by,
            "groups": [{"key": name, "samples": len(documents)}
                       for name, documents in sorted(grouped.items(),
                                                     key=lambda item: (-len(item[1]), item[0]))]}


def _merge(documents: Iterable[Any], options: Options) -> dict[str, Any]:
    builder = (_EnumBuilder if options.enums else _Builder)(schema_uri=None)
    for document in documents:
        builder.add_object(document)
    schema: dict[str, Any] = builder.to_schema()
    if not options.additional_properties:
        _close(schema)
    return schema


def _close(schema: Any) -> None:
    """additionalProperties: false on every object schema within (iteratively: a deep document
    makes a deep schema)."""
    pending = [schema]
    while pending:
        node = pending.pop()
        if not isinstance(node, dict):
            continue
        kinds = node.get("type")
        if kinds == "object" or (isinstance(kinds, list) and "object" in kinds):
            node.setdefault("additionalProperties", False)
        pending += node.get("properties", {}).values()
        if isinstance(node.get("items"), dict):
            pending.append(node["items"])


def _nested(tokens: list[str], leaf: dict[str, Any], *, require: bool = True) -> dict[str, Any]:
    """A schema that puts `leaf` at the property path `tokens`; with `require`, each level an
    object that has the next (so no other value, an array say, passes it by default)."""
    schema = leaf
    for token in reversed(tokens):
        level: dict[str, Any] = {"properties": {token: schema}}
        schema = {"type": "object", **level, "required": [token]} if require else level
    return schema


def def_names(keys: Iterable[str]) -> dict[str, str]:
    """A readable, unique $defs name for each group key (letters, digits, '.', '_' and '-')."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for group in keys:
        base = re.sub(r"[^A-Za-z0-9._-]+", "-", group).strip("-") or "group"
        name, n = base, 2
        while name in taken:
            name, n = f"{base}-{n}", n + 1
        taken.add(name)
        names[group] = name
    return names


def _combine(group_by: str, schemas: dict[str, dict[str, Any]],
             values: dict[str, Any]) -> dict[str, Any]:
    names = def_names(sorted(schemas))
    defs = {names[group]: schemas[group] for group in sorted(schemas)}
    meta = {"group_by": group_by, "groups": names}
    refs = [{"$ref": f"#/$defs/{names[group]}"} for group in sorted(schemas)]
    if not group_by.startswith("pointer:"):
        return {"$schema": DRAFT, "x-hookscope": meta, "anyOf": refs, "$defs": defs}
    field = tokens(group_by.partition(":")[2])
    seen = [values[group] for group in sorted(values)]
    branches = []
    for group, ref in zip(sorted(schemas), refs, strict=True):
        if group == MISSING:
            condition: dict[str, Any] = {"not": _nested(field, {})}
        else:
            condition = _nested(field, {"const": values[group]})
        branches.append({"if": condition, "then": ref})
    # The field itself: one of the values seen (a new event type is drift too), and required
    # unless some samples lacked it.
    top = _nested(field, {"enum": seen}, require=MISSING not in schemas)
    return {"$schema": DRAFT, "x-hookscope": meta, **top, "allOf": branches, "$defs": defs}
