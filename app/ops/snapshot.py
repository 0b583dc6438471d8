"""Snapshots: which of an endpoint's captures become fixture files, and their names.

Captures are put in groups by event type (hookscope.ops.groups), and within a group one capture
is kept for each distinct *shape*, the first to arrive of it. A shape is the body's parsed kind
and media type, and, for the kinds whose parsed view is a value (JSON, NDJSON, a form, XML), that
value's structure: every path in it with the type found there (object, array, string, integer,
number, boolean, null), array items all at `[]`. Two `order.paid` events that differ only in
amounts and ids are one shape; one with a `refund` object, or a `note` that is null instead of a
string, is another. A text, binary, multipart or empty body, or one that fails to parse or is
too large to show parsed, has no structure: one fixture per group and media type.

`per_group` asks for up to N fixtures per group instead: the first of each shape, then more
captures in the order they arrived, N in all. Files are named `<group slug>-<seq>.json` by the
capture's sequence number, so a snapshot taken again of the same captures writes the same files.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hookscope.formats import json_type
from hookscope.ingest.parse import media_type
from hookscope.ops import groups
from hookscope.ops.pointer import token

STRUCTURED = frozenset({"json", "ndjson", "form", "xml"})
MAX_SLUG = 60
_UNSAFE = re.compile(r"[^a-z0-9._-]+")


@dataclass(frozen=True)
class Chosen:
    """A capture (as the JSON export holds it) picked for a fixture file."""

    capture: dict[str, Any]
    group: str
    shape: str

    @property
    def file_name(self) -> str:
        return f"{slug(self.group)}-{self.capture['seq']}.json"


def sample(capture: dict[str, Any]) -> groups.Sample:
    parsed = capture.get("parsed") or {}
    body = parsed.get("value") if parsed.get("kind") == "json" else None
    return groups.Sample(headers=capture["headers"], path=capture["path"], body=body)


def shape(capture: dict[str, Any]) -> str:
    """The capture's shape (see the module's notes), as one line of text."""
    parsed = capture.get("parsed") or {}
    kind = parsed.get("kind") or "empty"
    head = f"{kind} {media_type(capture.get('content_type')) or '-'}"
    if kind not in STRUCTURED or parsed.get("error") or parsed.get("value") is None:
        return head
    return " ".join([head, *sorted(_paths(parsed["value"], ""))])


def _paths(value: Any, at: str) -> set[str]:
    if isinstance(value, dict):
        found = {f"{at}:object"}
        for key, item in value.items():
            found |= _paths(item, f"{at}/{token(key)}")
        return found
    if isinstance(value, list):
        found = {f"{at}:array"}
        for item in value:
            found |= _paths(item, f"{at}/[]")
        return found
    return {f"{at}:{json_type(value)}"}


def choose(captures: Iterable[dict[str, Any]], group_by: str = "auto",
           per_group: int | None = None) -> tuple[str, list[Chosen]]:
    """The grouping used (`auto` resolved) and the captures picked from `captures` (oldest
    first), in the order they arrived."""
    listed = list(captures)
    samples = [sample(capture) for capture in listed]
    if group_by == "auto":
        group_by = groups.choose(samples)
    members: dict[str, list[Chosen]] = {}
    for capture, one in zip(listed, samples, strict=True):
        group = groups.key(one, group_by)
        members.setdefault(group, []).append(Chosen(capture, group, shape(capture)))
    picked: list[Chosen] = []
    for group_members in members.values():
        seen: set[str] = set()
        firsts: list[Chosen] = []
        others: list[Chosen] = []
        for chosen in group_members:
            (others if chosen.shape in seen else firsts).append(chosen)
            seen.add(chosen.shape)
        picked += firsts if per_group is None else (firsts + others)[:per_group]
    picked.sort(key=lambda chosen: int(chosen.capture["seq"]))
    return group_by, picked


def slug(group: str) -> str:
    """A group as the start of a file name: lower-case ASCII letters, digits, `.`, `_` and `-`
    (accents dropped, anything else a `-`), at most MAX_SLUG characters; `all` for the one group
    of `none`, `root` for the path `/`."""
    ascii_text = unicodedata.normalize("NFKD", group).encode("ascii", "ignore").decode("ascii")
    text = _UNSAFE.sub("-", ascii_text.lower())[:MAX_SLUG].strip("-.")
    return text or {"*": "all", "/": "root"}.get(group, "group")
