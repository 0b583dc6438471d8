"""Body -> parsed view. Never raises: a body that does not parse is reported in `error`.

The raw bytes stay the source of truth; this view is derived from them (the kind and error at
capture time, the value again whenever a capture is read in full).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl


@dataclass(frozen=True)
class Parsed:
    kind: str  # json | form | text | binary | empty
    value: Any = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value, "error": self.error}


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_body(body: bytes, content_type: str | None) -> Parsed:
    if not body:
        return Parsed("empty")
    mt = media_type(content_type)
    if mt == "application/json" or mt.endswith("+json"):
        return _json(body)
    if mt == "application/x-www-form-urlencoded":
        return _form(body)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return Parsed("binary")
    if not mt and text.lstrip()[:1] in ("{", "["):
        sniffed = _json(body)
        if sniffed.error is None:
            return sniffed
    return Parsed("text", text)


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


def loads_strict(data: bytes) -> Any:
    """Decode JSON bytes (UTF-8/16/32); ValueError or RecursionError when it is not JSON."""
    return STRICT_JSON.decode(data.decode(json.detect_encoding(data)))


def _json(body: bytes) -> Parsed:
    try:
        return Parsed("json", loads_strict(body))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        return Parsed("json", None, f"invalid JSON: {exc}")


def _form(body: bytes) -> Parsed:
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError as exc:
        return Parsed("form", None, f"form body is not UTF-8: {exc}")
    return Parsed("form", [[k, v] for k, v in pairs])
