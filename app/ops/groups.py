"""Event types: which group a capture belongs to, for contracts inferred per event type and for
snapshots taken one per shape.

A grouping (`group_by`) is one of:

- `header:<Name>`: the value of a header (case-insensitive name; the first when repeated), as
  GitHub's `X-GitHub-Event` or Shopify's `X-Shopify-Topic`;
- `pointer:<JSON pointer>`: the string (or number, or boolean) at a pointer into the JSON body,
  as Stripe's and Standard Webhooks' `/type`, WebEngage's `/event_name`, Flows' `/operationType`;
- `path`: the capture's sub-path after /h/KEY (`/` when there is none);
- `none`: one group for everything.

`choose` picks one for a set of captures when the user did not: the first of AUTO_CANDIDATES that
every capture has, with at most MAX_GROUPS distinct values, else `none`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from hookscope.ops.forward import sub_path
from hookscope.ops.pointer import resolve

MISSING = "(missing)"
MAX_GROUPS = 50
# Senders' event-type headers first (they name the event whatever the body's shape), then the
# body fields the seed formats and common senders use for it, most specific first.
AUTO_CANDIDATES = (
    "header:X-GitHub-Event",
    "header:X-Gitlab-Event",
    "header:X-Shopify-Topic",
    "header:X-Event-Key",
    "pointer:/type",
    "pointer:/event_name",
    "pointer:/operationType",
    "pointer:/event/type",
    "pointer:/event_type",
    "pointer:/eventType",
    "pointer:/event",
)


@dataclass(frozen=True)
class Sample:
    """What grouping looks at in one capture."""

    headers: Sequence[Sequence[str]]
    path: str
    body: Any  # the parsed JSON value, or None when the body is not JSON


def check(group_by: str) -> str:
    """`group_by` as given when it is one of the forms above; ValueError saying why not."""
    kind, _, rest = group_by.partition(":")
    if group_by in ("path", "none", "auto"):
        return group_by
    if kind == "header" and rest and all(33 <= ord(c) < 127 and c != ":" for c in rest):
        return group_by
    if kind == "pointer" and (rest == "" or rest.startswith("/")):
        return group_by
    raise ValueError(f"group_by must be auto, none, path, header:<Name> or pointer:</json/pointer>"
                     f", got {group_by!r}")


def key(sample: Sample, group_by: str) -> str:
    """The group `sample` belongs to under `group_by` (MISSING when it lacks the field)."""
    kind, _, rest = group_by.partition(":")
    if kind == "header":
        wanted = rest.lower()
        return next((value for name, value in sample.headers if name.lower() == wanted),
                    MISSING)
    if kind == "pointer":
        value = resolve(sample.body, rest)
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value) if isinstance(value, str | int | float) else MISSING
    if kind == "path":
        return sub_path(sample.path) or "/"
    return "*"


def choose(samples: Iterable[Sample]) -> str:
    """The grouping for `samples` when none was asked for (see the module's notes)."""
    listed = list(samples)
    if not listed:
        return "none"
    for candidate in AUTO_CANDIDATES:
        keys = {key(sample, candidate) for sample in listed}
        if MISSING not in keys and len(keys) <= MAX_GROUPS:
            return candidate
    return "none"
