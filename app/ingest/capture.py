"""ASGI request -> Capture: raw bytes, the path as sent, ordered header pairs, the peer address.

Works on the raw ASGI scope rather than a framework Request: the capture path is the hot path, and
everything it needs (raw_path, query_string, the header list with duplicates in order) is already
there as bytes. Header bytes are decoded as Latin-1, which maps every byte to one character, so
nothing is lost.
"""

from __future__ import annotations

from urllib.parse import quote

from starlette.types import Receive, Scope

from hookscope.ingest.offload import BUDGET_EXCEEDED
from hookscope.ingest.parse import parse_body, unparsed
from hookscope.models import Capture, new_capture_id
from hookscope.verify import SCHEMES
from hookscope.verify.base import SignedRequest

# After the body limit is reached, read (and discard) at most this much more so that a sender
# still uploading gets to read our 413 instead of a reset connection; then stop reading.
DRAIN_LIMIT = 64 * 1024 * 1024


class Disconnected(Exception):
    """The client went away before its request was complete: there is nothing to answer."""


async def read_body(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """Return (body cut at `limit`, truncated)."""
    chunks: list[bytes] = []
    size = 0
    dropped = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk = message.get("body", b"")
        if size < limit:
            kept = chunk[: limit - size]
            chunks.append(kept)
            size += len(kept)
            dropped += len(chunk) - len(kept)
        else:
            dropped += len(chunk)
        if not message.get("more_body", False) or dropped > DRAIN_LIMIT:
            return b"".join(chunks), dropped > 0


# Header names most webhooks carry, decoded once (the capture path decodes every name and value
# of every request): the common ones and every one a signature scheme reads.
_NAMES = {name.encode(): name for name in (
    "host", "user-agent", "accept", "accept-encoding", "content-type", "content-length",
    "connection", "x-forwarded-for", "x-forwarded-proto", "x-request-id",
    *(header for scheme in SCHEMES.values() for header in scheme.headers))}


def build_capture(scope: Scope, *, endpoint_id: int, endpoint_token: str,
                  received_at: int, body: bytes, truncated: bool, parse: bool = True) -> Capture:
    """The capture of a request; its response status is filled in once it is decided. With
    `parse` false, its body's view says it ran out of budget (hookscope.ingest.offload)."""
    headers = [[_NAMES.get(name) or name.decode("latin-1"), value.decode("latin-1")]
               for name, value in scope["headers"]]
    content_type = None
    for name, value in headers:
        if name == "content-type":
            content_type = value
            break
    raw_path = scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else quote(scope["path"])
    client = scope.get("client")
    parsed = (parse_body(body, content_type) if parse
              else unparsed(body, content_type, BUDGET_EXCEEDED))
    # Positional, in field order: a class called with keywords packs them into a dict and
    # unpacks them again on every call, a visible share of a capture's cost (bench/instructions;
    # docs/performance.md). tests/test_capture.py holds the order, so a field added to Capture
    # cannot shift the others unnoticed.
    return Capture(
        new_capture_id(received_at),  # id
        endpoint_id,
        endpoint_token,
        received_at,
        scope["method"],
        path,
        scope.get("query_string", b"").decode("latin-1"),  # query
        headers,
        client[0] if client else None,  # remote_addr
        content_type,
        len(body),  # body_size
        truncated,
        0,  # response_status, decided later
        parsed.kind,
        parsed.error,
        0,  # seq, given by the store
        body,
        parsed,
    )


def signed_request(capture: Capture) -> SignedRequest:
    """The parts of a capture that a signature covers."""
    # Positional: keywords to a class cost a dict on every capture.
    return SignedRequest(capture.headers, capture.query, capture.body or b"",
                         capture.content_type)
