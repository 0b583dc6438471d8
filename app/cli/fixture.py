"""Files the commands read: a raw payload, or a capture exported with `hookscope export --as json`
(an object with "hookscope_fixture": 1: the capture in full, its body in body_text or
body_base64), which stands for the request it records."""

from __future__ import annotations

import base64
import binascii
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hookscope.cli.base import USAGE, Failed
from hookscope.ingest.parse import loads_strict
from hookscope.models import Capture

# A raw payload's Content-Type by its file name; anything else is sniffed (JSON, XML, form).
_TYPES = {".json": "application/json", ".ndjson": "application/x-ndjson",
          ".jsonl": "application/x-ndjson", ".xml": "application/xml"}


@dataclass(frozen=True)
class Payload:
    body: bytes
    content_type: str | None
    fixture: dict[str, Any] | None  # the export, when the file is one

    def as_capture(self) -> Capture:
        """The exported request as a Capture (what hookscope.ops.replay and forward send)."""
        fixture = self.fixture or {}
        return Capture(
            id=str(fixture.get("id") or ""), endpoint_id=0,
            endpoint_token=str(fixture.get("endpoint") or ""), received_at=0,
            method=str(fixture.get("method") or "POST"), path=str(fixture.get("path") or "/"),
            query=str(fixture.get("query") or ""),
            headers=[[str(k), str(v)] for k, v in fixture.get("headers") or []],
            remote_addr=None, content_type=self.content_type, body_size=len(self.body),
            truncated=bool(fixture.get("truncated")), response_status=0,
            seq=int(fixture.get("seq") or 0), body=self.body)


def read_bytes(name: str) -> bytes:
    """The file's bytes; `-` is stdin."""
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(name).read_bytes()
    except OSError as exc:
        raise Failed(USAGE, f"cannot read {name}: {exc.strerror or exc}") from None


def as_fixture(data: bytes) -> dict[str, Any] | None:
    if data.lstrip()[:1] != b"{":
        return None
    try:
        value = loads_strict(data)
    except (ValueError, RecursionError):
        return None
    if isinstance(value, dict) and value.get("hookscope_fixture") is not None:
        return value
    return None


def read_payload(name: str, content_type: str | None = None) -> Payload:
    """A file as the request body it stands for. `content_type` overrides what the file says
    (a fixture's recorded type, or the type its name suggests)."""
    data = read_bytes(name)
    fixture = as_fixture(data)
    if fixture is None:
        return Payload(data, content_type or _TYPES.get(Path(name).suffix.lower()), None)
    return Payload(fixture_body(fixture, name), content_type or fixture.get("content_type"),
                   fixture)


def fixture_body(fixture: dict[str, Any], name: str) -> bytes:
    text, encoded = fixture.get("body_text"), fixture.get("body_base64")
    if isinstance(text, str):
        return text.encode("utf-8")
    if isinstance(encoded, str):
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise Failed(USAGE, f"{name}: body_base64 is not base64") from None
    if fixture.get("body_size"):
        raise Failed(USAGE, f"{name} is a Hookscope export without its body (body_text and "
                            "body_base64 are both missing)")
    return b""
