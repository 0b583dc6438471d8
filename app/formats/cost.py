"""What an endpoint's own JSON Schema may cost, checked when it is saved.

Every capture to the endpoint is validated against it, so a schema is work that anyone who can
reach the capture URL can start. Three bounds: its size (MAX_SCHEMA_BYTES), its nesting
(MAX_SCHEMA_DEPTH), and how many subschemas one value can be checked against, counting each
`$ref` as the schema it points to (MAX_SCHEMA_COST). The last is what grows exponentially:
eighteen chained levels of `anyOf: [{$ref: next}, {$ref: next}]` are 1.3 KB, and listing why a
value fails them visits 2^18 subschemas. The count is made once per distinct subschema (a memo),
so it costs what the schema's size does. A `$ref` back into a schema being counted is counted
once: recursion follows the value, whose own size bounds it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import orjson

from hookscope.ingest.parse import deeper_than

MAX_SCHEMA_BYTES = 256 * 1024
MAX_SCHEMA_DEPTH = 64
MAX_SCHEMA_COST = 20_000

# Keywords whose value is a subschema, a list of them, or an object of them.
_ONE = ("additionalProperties", "additionalItems", "contains", "propertyNames", "if", "then",
        "else", "not", "items", "unevaluatedProperties", "unevaluatedItems", "contentSchema")
_LIST = ("allOf", "anyOf", "oneOf", "prefixItems", "items")
_MAP = ("properties", "patternProperties", "dependentSchemas", "dependencies")


def schema_problem(schema: dict[str, Any]) -> str | None:
    """Why `schema` costs too much to be an endpoint's, or None."""
    if deeper_than(schema, MAX_SCHEMA_DEPTH):  # first: orjson writes out 255 levels at most
        return f"schema nests more than {MAX_SCHEMA_DEPTH} levels deep"
    try:
        size = len(orjson.dumps(schema))
    except orjson.JSONEncodeError:  # a whole number beyond 64 bits: no validator compares it
        return "schema holds a whole number beyond 64 bits (from -2**63 to 2**64-1 are accepted)"
    if size > MAX_SCHEMA_BYTES:
        return f"schema is {size} bytes as JSON; at most {MAX_SCHEMA_BYTES} are accepted"
    try:
        _Count(schema).cost(schema)
    except _TooCostly:
        return (f"schema could check one value against more than {MAX_SCHEMA_COST:,} subschemas "
                "(counting each $ref as the schema it points to); simplify its $refs")
    except RecursionError:
        return "schema's $refs chain too deep to follow"
    return None


def schema_cost(schema: dict[str, Any]) -> int:
    """How many subschemas one value could be checked against; past MAX_SCHEMA_COST (a schema
    saved before the bound held), more than it."""
    try:
        return _Count(schema).cost(schema)
    except (_TooCostly, RecursionError):
        return MAX_SCHEMA_COST + 1


class _TooCostly(Exception):
    pass


class _Count:
    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.memo: dict[int, int] = {}
        self.counting: set[int] = set()

    def cost(self, node: Any) -> int:
        if not isinstance(node, dict):
            return 1  # true, false
        key = id(node)
        if key in self.memo:
            return self.memo[key]
        if key in self.counting:
            return 1
        self.counting.add(key)
        total = 1
        ref = node.get("$ref")
        if isinstance(ref, str) and (target := self._resolve(ref)) is not None:
            total += self.cost(target)
        for keyword in _ONE:
            if isinstance(value := node.get(keyword), (dict, bool)):
                total += self.cost(value)
        for keyword in _LIST:
            if isinstance(value := node.get(keyword), list):
                total += sum(self.cost(item) for item in value)
        for keyword in _MAP:
            if isinstance(value := node.get(keyword), dict):
                total += sum(self.cost(item) for item in value.values()
                             if isinstance(item, (dict, bool)))
        if total > MAX_SCHEMA_COST:
            raise _TooCostly
        self.counting.discard(key)
        self.memo[key] = total
        return total

    def _resolve(self, ref: str) -> Any:
        """The subschema a local `#/json/pointer` names; None for anything else (an anchor,
        another document: jsonschema-rs resolves those, or refuses the schema)."""
        if not ref.startswith("#"):
            return None
        node: Any = self.root
        for part in ref[1:].split("/")[1:]:
            part = unquote(part).replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return None
        return node
