"""What changed between two contracts (JSON Schemas), each change breaking or additive, at the
JSON pointer into the payload it concerns: `hookscope schema diff OLD NEW`, and
GET /api/endpoints/{key}/schema?against=pinned (the pinned contract against what traffic shows).

A change is breaking when a payload that OLD accepts may be refused by NEW, or when NEW no longer
promises what OLD did: a required property removed, a type changed or narrowed, an enum value
removed, a property made required, a new required property, an optional property removed from
an object that refuses other properties, a constraint added or changed, a format that no longer
holds. It is additive when NEW accepts or promises more: a new optional property, a type
widened, an enum value added, a constraint removed, a format added. Annotations (title,
description, examples, ...) are not compared.

Paths are data paths, what a user thinks in: `/data/object/amount`, an array's items as `*`
(`/items/*/sku`). Contracts grouped by event type (hookscope.ops.infer's `x-hookscope`) are
compared group by group, each change naming its group; an event type that went is breaking, a new
one additive. Pure, and iterative where schemas nest: the CLI uses it offline.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from hookscope.ops.pointer import token, tokens

BREAKING = "breaking"
ADDITIVE = "additive"
ALL_TYPES = frozenset({"object", "array", "string", "integer", "number", "boolean", "null"})
# Keywords that constrain a value beyond those compared one by one below: added or changed they
# may refuse what was accepted (breaking), removed they accept more (additive).
CONSTRAINTS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
               "minLength", "maxLength", "pattern", "minItems", "maxItems", "uniqueItems",
               "minProperties", "maxProperties", "anyOf", "oneOf", "allOf", "not", "if", "then",
               "else", "patternProperties", "propertyNames", "dependentRequired",
               "dependentSchemas", "contains", "prefixItems", "unevaluatedProperties",
               "unevaluatedItems")
MAX_DEPTH = 256


@dataclass(frozen=True)
class Change:
    kind: str  # BREAKING or ADDITIVE
    change: str  # a short name: type-changed, required-removed, ...
    path: str
    message: str
    group: str | None = None
    old: Any = None
    new: Any = None

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "change": self.change, "path": self.path,
                "group": self.group, "message": self.message, "old": self.old, "new": self.new}


def diff_schemas(old: Any, new: Any) -> dict[str, Any]:
    """{"breaking": bool, "counts": {"breaking": n, "additive": n}, "changes": [...]}."""
    changes = list(_changes(old, new))
    changes.sort(key=lambda c: (c.group or "", c.path, c.kind, c.change))
    counts = {BREAKING: sum(c.kind == BREAKING for c in changes),
              ADDITIVE: sum(c.kind == ADDITIVE for c in changes)}
    return {"breaking": counts[BREAKING] > 0, "counts": counts,
            "changes": [c.as_json() for c in changes]}


def groups_of(schema: Any) -> tuple[str, dict[str, Any]] | None:
    """(group_by, {event type: its schema}) of a contract grouped by event type."""
    if not isinstance(schema, dict):
        return None
    meta = schema.get("x-hookscope")
    if not isinstance(meta, dict) or not isinstance(meta.get("groups"), dict):
        return None
    found: dict[str, Any] = {}
    for event, name in meta["groups"].items():
        target = schema.get("$defs", {}).get(name) if isinstance(name, str) else None
        if target is None:
            return None
        found[event] = target
    return str(meta.get("group_by", "")), found


def _changes(old: Any, new: Any) -> Iterator[Change]:
    old_groups, new_groups = groups_of(old), groups_of(new)
    if old_groups is None and new_groups is None:
        yield from _compare(old, new, old, new, None)
        return
    if new_groups is None:
        # One side tells event types apart, the other does not: each type against the whole.
        for event, schema in sorted(old_groups[1].items()):  # type: ignore[index]
            yield from _compare(old, new, schema, new, event)
        return
    if old_groups is None:
        for event, schema in sorted(new_groups[1].items()):
            yield from _compare(old, new, old, schema, event)
        return
    if old_groups[0] != new_groups[0]:
        yield Change(BREAKING, "grouping-changed", "", f"event types were told apart by "
                     f"{old_groups[0]}, now by {new_groups[0]}", None, old_groups[0],
                     new_groups[0])
    before, after = old_groups[1], new_groups[1]
    for event in sorted(before.keys() - after.keys()):
        yield Change(BREAKING, "event-type-removed", "", f"event type {event!r} removed", event)
    for event in sorted(after.keys() - before.keys()):
        yield Change(ADDITIVE, "event-type-added", "", f"event type {event!r} added", event)
    for event in sorted(before.keys() & after.keys()):
        yield from _compare(old, new, before[event], after[event], event)


def _resolve(root: Any, schema: Any) -> Any:
    """A schema with its local $ref followed (`#/$defs/x`, `#/definitions/x`, `#`)."""
    for _ in range(MAX_DEPTH):
        if not isinstance(schema, dict) or not isinstance(schema.get("$ref"), str):
            return schema
        ref = schema["$ref"]
        if not ref.startswith("#"):
            return schema
        target: Any = root
        for name in [t for t in tokens(unquote(ref[1:])) if t]:
            target = target.get(name) if isinstance(target, dict) else None
        if target is None:
            return schema
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**target, **rest} if isinstance(target, dict) and rest else target
    return schema


def _types(schema: dict[str, Any]) -> frozenset[str]:
    """The types a schema lets through (`integer` within `number`)."""
    kinds = schema.get("type")
    if kinds is None:
        found = set(ALL_TYPES)
    else:
        found = set(kinds if isinstance(kinds, list) else [kinds]) & ALL_TYPES
    if "number" in found:
        found.add("integer")
    return frozenset(found)


def _said(schema: dict[str, Any]) -> str:
    kinds = schema.get("type")
    if kinds is None:
        return "any"
    return " or ".join(kinds) if isinstance(kinds, list) else str(kinds)


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _child(path: str, name: str) -> str:
    return f"{path}/{token(name)}"


def _compare(old_root: Any, new_root: Any, old: Any, new: Any,
             group: str | None) -> Iterator[Change]:
    pending = [(old, new, "")]
    seen: set[tuple[int, int]] = set()
    # A $ref with siblings resolves to a new dict each time: kept here for the whole walk, so
    # its id() is not reused by another schema and taken for a pair already compared.
    resolved: list[Any] = []
    while pending:
        a, b, path = pending.pop()
        a, b = _resolve(old_root, a), _resolve(new_root, b)
        resolved.extend((a, b))
        if (id(a), id(b)) in seen or len(path.split("/")) > MAX_DEPTH:
            continue  # a recursive schema: this pair is being compared already
        seen.add((id(a), id(b)))

        def change(kind: str, name: str, message: str, was: Any = None, now: Any = None,
                   where: str = path) -> Change:
            return Change(kind, name, where, message, group, was, now)

        if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, dict) \
                or not isinstance(b, dict):
            if _key(a) != _key(b):
                widened = b is True or b == {}
                yield change(ADDITIVE if widened else BREAKING,
                             "widened" if widened else "narrowed",
                             "now accepts anything" if widened else "schema changed", a, b)
            continue
        yield from _scalar_changes(a, b, change)
        yield from _object_changes(a, b, path, change, pending)
        items_a, items_b = a.get("items", True), b.get("items", True)
        if _key(items_a) != _key(items_b) and ("array" in _types(a) & _types(b)):
            pending.append((items_a, items_b, f"{path}/*"))


def _scalar_changes(a: dict[str, Any], b: dict[str, Any], change: Any) -> Iterator[Change]:
    lost, gained = _types(a) - _types(b), _types(b) - _types(a)
    if lost:
        verb = "changed" if gained or not _types(b) else "narrowed"
        yield change(BREAKING, f"type-{verb}", f"type {verb}: {_said(a)} → {_said(b)}",
                     a.get("type"), b.get("type"))
    elif gained:
        yield change(ADDITIVE, "type-widened", f"type widened: {_said(a)} → {_said(b)}",
                     a.get("type"), b.get("type"))
    if "enum" in a or "enum" in b:
        if "enum" not in a:
            yield change(BREAKING, "enum-added", f"enum added: only {_listed(b['enum'])} "
                         "allowed", None, b["enum"])
        elif "enum" not in b:
            yield change(ADDITIVE, "enum-removed", "enum removed: any value of the type allowed",
                         a["enum"], None)
        else:
            before = {_key(v): v for v in a["enum"] or ()}
            after = {_key(v): v for v in b["enum"] or ()}
            for value in [before[k] for k in sorted(before.keys() - after.keys())]:
                yield change(BREAKING, "enum-value-removed", f"enum value {_shown(value)} "
                             "removed", value, None)
            for value in [after[k] for k in sorted(after.keys() - before.keys())]:
                yield change(ADDITIVE, "enum-value-added", f"enum value {_shown(value)} added",
                             None, value)
    if _key(a.get("const")) != _key(b.get("const")) or ("const" in a) != ("const" in b):
        if "const" not in b:
            yield change(ADDITIVE, "const-removed", "const removed", a["const"], None)
        else:
            yield change(BREAKING, "const-changed" if "const" in a else "const-added",
                         f"const {_shown(a['const']) + ' → ' if 'const' in a else ''}"
                         f"{_shown(b['const'])}", a.get("const"), b["const"])
    # A format is an annotation in 2020-12 (no validator refuses on it), so it is judged as a
    # promise: one that OLD made and NEW no longer does (a value that stopped being a date-time)
    # breaks, one that NEW adds does not.
    was_format, now_format = a.get("format"), b.get("format")
    if was_format != now_format:
        if was_format is None:
            yield change(ADDITIVE, "format-added", f"format {now_format} added", None,
                         now_format)
        else:
            yield change(BREAKING, "format-changed" if now_format else "format-removed",
                         f"format {was_format} → {now_format}" if now_format
                         else f"format {was_format} no longer holds", was_format, now_format)
    for keyword in CONSTRAINTS:
        if keyword in ("anyOf", "oneOf", "allOf", "if", "then", "else", "not") and (
                "x-hookscope" in a or "x-hookscope" in b):
            continue  # a grouped contract's combination: compared group by group
        if _key(a.get(keyword)) == _key(b.get(keyword)):
            continue
        if keyword not in b:
            yield change(ADDITIVE, "constraint-removed", f"{keyword} removed", a[keyword], None)
        else:
            yield change(BREAKING, "constraint-changed" if keyword in a else "constraint-added",
                         f"{keyword} {'changed' if keyword in a else 'added'}", a.get(keyword),
                         b[keyword])


def _object_changes(a: dict[str, Any], b: dict[str, Any], path: str, change: Any,
                    pending: list[tuple[Any, Any, str]]) -> Iterator[Change]:
    if not ({"object"} & _types(a) & _types(b)):
        return
    props_a: Mapping[str, Any] = a.get("properties") or {}
    props_b: Mapping[str, Any] = b.get("properties") or {}
    required_a, required_b = set(a.get("required") or ()), set(b.get("required") or ())
    closed_a, closed_b = a.get("additionalProperties") is False, b.get(
        "additionalProperties") is False
    names = list(dict.fromkeys([*props_a, *props_b, *sorted(required_a | required_b)]))
    for name in names:
        where = _child(path, name)
        in_a, in_b = name in props_a or name in required_a, name in props_b or name in required_b
        if in_a and in_b:
            if name in required_b and name not in required_a:
                yield change(BREAKING, "made-required", "property made required", where=where)
            elif name in required_a and name not in required_b:
                yield change(ADDITIVE, "made-optional", "property made optional", where=where)
            if name in props_a or name in props_b:
                pending.append((props_a.get(name, True), props_b.get(name, True), where))
        elif in_a:
            if name in required_a:
                yield change(BREAKING, "required-removed", "required property removed",
                             where=where)
            elif closed_b:
                yield change(BREAKING, "property-removed", "optional property removed (now "
                             "refused, as any property not listed)", where=where)
            else:
                yield change(ADDITIVE, "property-removed", "optional property no longer "
                             "described", where=where)
        elif name in required_b:
            yield change(BREAKING, "required-added", "new required property", where=where)
        else:
            yield change(ADDITIVE, "property-added", "new optional property", where=where)
    if closed_a and not closed_b:
        yield change(ADDITIVE, "properties-opened", "other properties now allowed",
                     False, b.get("additionalProperties"))
    elif closed_b and not closed_a:
        yield change(BREAKING, "properties-closed", "other properties now refused",
                     a.get("additionalProperties"), False)


def _shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _listed(values: Any) -> str:
    shown = [_shown(v) for v in (values or [])]
    return ", ".join(shown[:10]) + (", ..." if len(shown) > 10 else "")
