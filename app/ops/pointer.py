"""JSON pointers (RFC 6901): the escaping of their reference tokens, and following one into a
document. Diffs, contracts, event types and snapshots all name places in a body this way."""

from __future__ import annotations

from typing import Any


def token(key: str | int) -> str:
    """One reference token: "~" as "~0", then "/" as "~1"."""
    return str(key).replace("~", "~0").replace("/", "~1")


def tokens(pointer: str) -> list[str]:
    """A pointer's reference tokens, unescaped ("" names the whole document: none)."""
    if not pointer:
        return []
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def resolve(value: Any, pointer: str) -> Any:
    """The value at `pointer` in `value`, or None when there is none."""
    for name in tokens(pointer):
        if isinstance(value, dict):
            if name not in value:
                return None
            value = value[name]
        elif isinstance(value, list) and name.isdigit() and int(name) < len(value):
            value = value[int(name)]
        else:
            return None
    return value
