"""Plain data: endpoints, captures and how they look in the JSON API."""

from __future__ import annotations

import base64
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hookscope.ingest.offload import BUDGET_EXCEEDED
from hookscope.ingest.parse import (
    MAX_SHOWN_BYTES,
    NOT_SHOWN,
    duplicate_keys,
    parse_for_display,
    unparsed,
)
from hookscope.ingest.parsed import Parsed

ALIAS_PATTERN = r"[a-z0-9][a-z0-9_-]{2,63}"  # matched whole (re.fullmatch)

DEFAULT_RESPONSE: dict[str, Any] = {"status": 200, "headers": {}, "body": None, "delay_ms": 0}
DEFAULT_REJECT: dict[str, bool] = {"bad_signature": False, "invalid_payload": False}

UNCHECKED_SIGNATURE: dict[str, Any] = {
    "scheme": None, "status": "unchecked", "reason": None, "secret_index": None}
UNKNOWN_VALIDATION: dict[str, Any] = {
    "format": None, "detected": False, "status": "unknown", "errors": []}

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer",
                        "transfer-encoding", "upgrade"})
_TOKEN_CHARS = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # always fullmatch: `$` allows "\n"
HEADER_VALUE_RULE = "header values must be strings of printable Latin-1 characters"
# The longest response delay an endpoint may ask for; a stopping server waits this long for
# the answers it owes.
MAX_DELAY_MS = 30_000


def header_name_ok(name: str) -> bool:
    return _TOKEN_CHARS.fullmatch(name) is not None


def header_value_ok(value: Any) -> bool:
    return isinstance(value, str) and not any(
        (ord(c) < 32 and c != "\t") or ord(c) == 127 or ord(c) > 255 for c in value)


class _RandomPool:
    """Cryptographic random bytes, fetched 4 KiB at a time: a getrandom() call per capture
    costs a large share of making the id."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._buffer = b""
        self._used = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bytes:
        with self._lock:
            start = self._used
            if start + n > len(self._buffer):
                self._buffer = os.urandom(max(self._size, n))
                start = 0
            self._used = start + n
            # Never handed out twice: each take moves past what it returned.
            return self._buffer[start:start + n]


_random = _RandomPool()


def new_token() -> str:
    """144 random bits, URL-safe and unguessable. Creation refuses a token equal to an alias.
    Never starting with "-", so a token in a shell command never reads as an option."""
    while (token := secrets.token_urlsafe(18)).startswith("-"):
        pass
    return token


def new_capture_id(now_us: int) -> str:
    """`c_` + 32 hex digits: 48 bits of milliseconds, then 80 random bits.

    Sortable by arrival across endpoints and unguessable, so an id alone never exposes someone
    else's capture.
    """
    return "c_" + (now_us // 1000).to_bytes(6, "big").hex() + _random.take(10).hex()


def now_us() -> int:
    return time.time_ns() // 1000


def format_time(us: int | None) -> str | None:
    """Microsecond UTC timestamp -> `2026-11-22T10:00:00.123456Z`."""
    if us is None:
        return None
    return datetime.fromtimestamp(us / 1_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def mask_secret(secret: str) -> str:
    """`s3cret` -> `s3****`: enough to tell secrets apart, never enough to use one."""
    return (secret[:2] if len(secret) >= 6 else "") + "****"


@dataclass
class Endpoint:
    id: int
    token: str
    alias: str | None
    name: str | None
    created_at: int
    max_captures: int
    expires_at: int | None = None
    verify: dict[str, Any] | None = None
    format: str = "auto"
    schema: dict[str, Any] | None = None
    response: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_RESPONSE))
    reject: dict[str, bool] = field(default_factory=lambda: dict(DEFAULT_REJECT))
    max_bytes: int | None = None
    rate_limit: float | None = None
    # Where the server sends each capture after committing it (hookscope.ops.forward), or None.
    forward: dict[str, Any] | None = None
    capture_count: int = 0
    stored_bytes: int = 0
    last_seq: int = 0
    last_capture_at: int | None = None
    # The capture path's answer made ready from `response` on first use (hookscope.routes.capture):
    # it lives as long as this object, which the store replaces when the endpoint changes.
    reply: Any = field(default=None, init=False, repr=False, compare=False)

    def config(self) -> dict[str, Any]:
        """The JSON-stored part: what the capture path reads besides identity and limits."""
        return {"verify": self.verify, "format": self.format, "schema": self.schema,
                "response": self.response, "reject": self.reject, "rate_limit": self.rate_limit,
                "forward": self.forward}

    def is_expired(self, at_us: int) -> bool:
        return self.expires_at is not None and at_us >= self.expires_at

    def as_json(self, base_url: str) -> dict[str, Any]:
        verify = None
        if self.verify is not None:
            verify = dict(self.verify)
            verify["secrets"] = [mask_secret(s) for s in self.verify.get("secrets", [])]
        return {
            "token": self.token,
            "alias": self.alias,
            "name": self.name,
            "verify": verify,
            "format": self.format,
            "schema": self.schema,
            "response": self.response,
            "reject": self.reject,
            "max_captures": self.max_captures,
            "max_bytes": self.max_bytes,
            "rate_limit": self.rate_limit,
            "forward": self.forward,
            "expires_at": format_time(self.expires_at),
            "created_at": format_time(self.created_at),
            "capture_count": self.capture_count,
            "stored_bytes": self.stored_bytes,
            "last_seq": self.last_seq,
            "last_capture_at": format_time(self.last_capture_at),
            "url": f"{base_url}/h/{self.token}",
            "alias_url": f"{base_url}/h/{self.alias}" if self.alias else None,
            "inspect_url": f"{base_url}/e/{self.token}",
            "stream_url": f"{base_url}/api/endpoints/{self.token}/stream",
            "captures_url": f"{base_url}/api/endpoints/{self.token}/captures",
        }


@dataclass
class Capture:
    """One request exactly as received. `body` is None when only the summary was loaded."""

    id: str
    endpoint_id: int
    endpoint_token: str
    received_at: int
    method: str
    path: str
    query: str
    headers: list[list[str]]
    remote_addr: str | None
    content_type: str | None
    body_size: int
    truncated: bool
    response_status: int
    parsed_kind: str = "empty"
    parsed_error: str | None = None
    seq: int = 0
    body: bytes | None = None
    # The parsed view made on the capture path (not stored: the raw bytes are).
    parsed: Parsed | None = field(default=None, repr=False, compare=False)
    # None: not checked (no verify config, no format) -- the common case, stored as NULL.
    signature: dict[str, Any] | None = None
    validation: dict[str, Any] | None = None

    def as_json(self, *, full: bool, parse: bool = True) -> dict[str, Any]:
        """The API's object; `full` adds the body and its parsed view (with `parse` false, a view
        that says its budget ran out: hookscope.ingest.offload)."""
        data: dict[str, Any] = {
            "id": self.id,
            "endpoint": self.endpoint_token,
            "seq": self.seq,
            "received_at": format_time(self.received_at),
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "remote_addr": self.remote_addr,
            "content_type": self.content_type,
            "body_size": self.body_size,
            "truncated": self.truncated,
            "signature": self.signature or UNCHECKED_SIGNATURE,
            "validation": self.validation or UNKNOWN_VALIDATION,
            "response": {"status": self.response_status},
        }
        if full and self.body is not None:
            data.update(body_fields(self.body))
            if not parse:
                parsed = unparsed(self.body, self.content_type, BUDGET_EXCEEDED)
            elif len(self.body) > MAX_SHOWN_BYTES and self.parsed_kind != "multipart":
                parsed = Parsed(self.parsed_kind, None, self.parsed_error, NOT_SHOWN)
            else:
                parsed = parse_for_display(self.body, self.content_type)
            data["parsed"] = parsed.as_json()
            if parsed.kind == "json" and parsed.value is not None:
                duplicates = duplicate_keys(self.body)
                if duplicates:
                    data["parsed"]["notes"] = [
                        f"key {key!r} appears more than once in an object; the last value is "
                        "kept, as every JSON parser does" for key in duplicates]
        else:
            data["parsed"] = {"kind": self.parsed_kind, "error": self.parsed_error}
        return data

    def resent_headers(self) -> list[list[str]]:
        """The headers to send when this request is sent again (replay, curl export), in order
        with duplicates. Hop-by-hop headers belonged to the sender's connection and Host to
        Hookscope, so they go; Content-Length stays where it stood but states the stored body's
        length (a body cut at the size limit is shorter than its sender said)."""
        headers: list[list[str]] = []
        length_seen = False
        for name, value in self.headers:
            lower = name.lower()
            if lower in HOP_BY_HOP or lower == "host" or (lower == "content-length"
                                                          and length_seen):
                continue
            if lower == "content-length":
                length_seen = True
                value = str(len(self.body or b""))
            headers.append([name, value])
        return headers


def body_fields(body: bytes) -> dict[str, str | None]:
    """`body_text` when the bytes are UTF-8, else `body_base64`: either way, byte for byte."""
    try:
        return {"body_text": body.decode("utf-8"), "body_base64": None}
    except UnicodeDecodeError:
        return {"body_text": None, "body_base64": base64.b64encode(body).decode("ascii")}


# A delivery (a forwarding attempt recorded on a capture, hookscope.ops.forward) as live streams
# carry it: everything but the target's reply, which the capture's own record holds.
DELIVERY_SUMMARY = ("id", "capture", "seq", "at", "target", "by", "attempt", "status", "error",
                    "elapsed_ms", "outcome")


def delivery_summary(delivery: dict[str, Any]) -> dict[str, Any]:
    return {key: delivery.get(key) for key in DELIVERY_SUMMARY}
