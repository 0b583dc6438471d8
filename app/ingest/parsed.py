"""A body's parsed view: the type every parser returns (ingest/parse.py dispatches to them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KINDS = ("json", "ndjson", "form", "multipart", "xml", "text", "binary", "empty")


@dataclass(slots=True)
class Parsed:
    """A body's parsed view, made on every capture. Not frozen: a frozen dataclass sets each
    field through object.__setattr__, several times the cost of building this one. Treat it as
    immutable all the same."""

    kind: str  # one of KINDS
    value: Any = None
    error: str | None = None
    # What a cap left out: the view shows the part before it (or nothing, for XML), the raw
    # bytes stay whole, and the body is not validated.
    partial: str | None = None

    def as_json(self) -> dict[str, Any]:
        view = {"kind": self.kind, "value": self.value, "error": self.error}
        if self.partial is not None:
            view["notes"] = [self.partial]
        return view


def short_error(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "..."
