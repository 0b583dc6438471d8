"""What differs between two captures: method, path, query, headers and the parsed body.

Pure functions of two Captures. Names and values are reported as the API shows them elsewhere:
query parameters decoded, header names lower-cased, a repeated name's values joined with ", "
(compared as lists, so order and count matter). Bodies are compared as parsed values when both
parse (JSON, NDJSON as a list, a form as a dict of lists, XML as a dict), with RFC 6901 pointers;
otherwise as bytes, reported as one change at "" (text, or {"base64": ...} when not UTF-8).
Lists are compared by index: an insertion near the front shows as changes after it, which is
what a reader of two webhook payloads expects more often than a guessed alignment.
Walking is iterative: a payload nested as deep as the parser allows cannot overflow the stack.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from hookscope.ingest.parse import parse_body
from hookscope.models import Capture, body_fields
from hookscope.ops.pointer import token

STRUCTURED = ("json", "ndjson", "form", "xml")


def diff_captures(a: Capture, b: Capture) -> dict[str, Any]:
    body = diff_bodies(a, b)
    result: dict[str, Any] = {
        "a": a.id,
        "b": b.id,
        "identical": False,
        "method": _either(a.method, b.method),
        "path": _either(a.path, b.path),
        "query": diff_pairs(parse_qsl(a.query, keep_blank_values=True),
                            parse_qsl(b.query, keep_blank_values=True)),
        "headers": diff_pairs([(n.lower(), v) for n, v in a.headers],
                              [(n.lower(), v) for n, v in b.headers]),
        "body": body,
    }
    result["identical"] = (result["method"] is None and result["path"] is None
                           and not any(_changes(result["query"]))
                           and not any(_changes(result["headers"]))
                           and body["kind"] is None and not any(_changes(body)))
    return result


def _either(a: str, b: str) -> dict[str, str] | None:
    return None if a == b else {"a": a, "b": b}


def _changes(diff: dict[str, Any]) -> tuple[list[Any], ...]:
    return diff["added"], diff["removed"], diff["changed"]


def _grouped(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for name, value in pairs:
        groups.setdefault(name, []).append(value)
    return groups


def diff_pairs(a: list[tuple[str, str]], b: list[tuple[str, str]]) -> dict[str, list[Any]]:
    """Name/value lists (query, headers), names in order of first appearance."""
    old, new = _grouped(a), _grouped(b)
    return {
        "added": [{"name": n, "value": ", ".join(v)} for n, v in new.items() if n not in old],
        "removed": [{"name": n, "value": ", ".join(v)} for n, v in old.items() if n not in new],
        "changed": [{"name": n, "a": ", ".join(v), "b": ", ".join(new[n])}
                    for n, v in old.items() if n in new and new[n] != v],
    }


def _body_view(capture: Capture) -> tuple[str, Any, bool]:
    """(kind, value, structured): the parsed value when the body parsed, else its bytes shown as
    text or base64."""
    body = capture.body or b""
    parsed = parse_body(body, capture.content_type)
    if parsed.kind in STRUCTURED and parsed.error is None:
        value = parsed.value
        if parsed.kind == "form":
            value = _grouped([(name, v) for name, v in value])
        return parsed.kind, value, True
    fields = body_fields(body)
    raw = fields["body_text"] if fields["body_text"] is not None else {
        "base64": fields["body_base64"]}
    return parsed.kind, raw, False


def diff_bodies(a: Capture, b: Capture) -> dict[str, Any]:
    kind_a, value_a, structured_a = _body_view(a)
    kind_b, value_b, structured_b = _body_view(b)
    result: dict[str, Any] = {"kind": None if kind_a == kind_b else {"a": kind_a, "b": kind_b},
                              "added": [], "removed": [], "changed": []}
    if structured_a and structured_b:
        diff_values(value_a, value_b, result)
    elif (a.body or b"") != (b.body or b""):
        result["changed"].append({"path": "", "a": value_a, "b": value_b})
    return result


def _same(a: Any, b: Any) -> bool:
    # True == 1 == 1.0 in Python; in a payload they are different values.
    return type(a) is type(b) and a == b


def diff_values(a: Any, b: Any, out: dict[str, list[Any]]) -> None:
    """Append to out's added/removed/changed what turns `a` into `b`, in document order."""
    stack: list[tuple[Any, Any, str]] = [(a, b, "")]
    while stack:
        old, new, path = stack.pop()
        children: list[tuple[Any, Any, str]] = []
        if isinstance(old, dict) and isinstance(new, dict):
            for key, value in old.items():
                where = f"{path}/{token(key)}"
                if key in new:
                    children.append((value, new[key], where))
                else:
                    out["removed"].append({"path": where, "value": value})
            out["added"].extend({"path": f"{path}/{token(key)}", "value": value}
                                for key, value in new.items() if key not in old)
        elif isinstance(old, list) and isinstance(new, list):
            children = [(old[i], new[i], f"{path}/{i}") for i in range(min(len(old), len(new)))]
            out["removed"].extend({"path": f"{path}/{i}", "value": old[i]}
                                  for i in range(len(new), len(old)))
            out["added"].extend({"path": f"{path}/{i}", "value": new[i]}
                                for i in range(len(old), len(new)))
        elif not _same(old, new):
            out["changed"].append({"path": path, "a": old, "b": new})
        stack.extend(reversed(children))
