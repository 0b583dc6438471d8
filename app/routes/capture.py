"""ANY /h/{key}[/{rest}]: store the request, then answer it.

A pure ASGI middleware in front of the whole Starlette app (hookscope.main.Hookscope) that takes
every request under /h/ before Starlette sees it: a capture URL takes any method (a function route
answers 405 to methods it does not list), and the hot path skips Starlette's error and exception
middleware, the route table and a Request object it does not need (a large share of the capture
path's CPU; docs/performance.md). So it answers an unexpected bug with the JSON error shape
itself.

Order matters: the reply is sent only after the store has committed the capture, so a 2xx is a
promise that the request is on disk. An endpoint's `forward` is handed the capture after the
commit and never waited for (hookscope.ops.forwarder).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from starlette.types import Receive, Scope, Send

from hookscope.errors import send_error
from hookscope.formats import Validation
from hookscope.ingest.capture import Disconnected, build_capture, read_body, signed_request
from hookscope.ingest.limits import RateLimiter
from hookscope.ingest.offload import BUDGET_EXCEEDED, INLINE_BODY_BYTES, Offload
from hookscope.ingest.protocol import HEAD_WITHIN
from hookscope.live import Publisher
from hookscope.models import Capture, Endpoint, now_us
from hookscope.ops.forwarder import Forwarder
from hookscope.settings import Settings
from hookscope.storage import Gone, Store
from hookscope.verify import check_signature

log = logging.getLogger("hookscope.capture")


# Asks for a request's rate-limit token: (endpoint id, its cap) -> 0, or seconds to wait.
Admit = Callable[[int, "float | None"], Awaitable[int]]


class CaptureMiddleware:
    def __init__(self, app: Any, store: Store, settings: Settings, validation: Validation,
                 hub: Publisher, limiter: RateLimiter, offload: Offload,
                 admit: Admit | None = None, forwarder: Forwarder | None = None) -> None:
        self.app = app
        self.store = store
        self.settings = settings
        self.validation = validation
        self.hub = hub
        self.limiter = limiter
        self.offload = offload
        # On a shared store (PostgreSQL), the counts of every process are kept in the database.
        self.admit = admit or self._admit_here
        self.forwarder = forwarder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and not scope.get(HEAD_WITHIN)
                and (size := head_size(scope)) > self.settings.max_header_bytes):
            # A head that never ended is refused by the protocol (ingest.protocol) before it
            # is all in memory, and one it counted within the limit is marked so; any other is
            # measured here, the same for every route.
            await _error(scope, receive, send, 431, "headers_too_large",
                         f"the request head is {size} bytes, more than the "
                         f"{self.settings.max_header_bytes} this server accepts "
                         "(HOOKSCOPE_MAX_HEADER_BYTES); nothing was stored")
            return
        if scope["type"] == "http" and scope["path"].startswith("/h/"):
            key = scope["path"][3:].split("/", 1)[0]
            if key:
                try:
                    await self.capture(key, scope, receive, send)
                except Exception:
                    # Every answer is sent last, so nothing was sent yet, unless sending itself
                    # failed: then this raises too, and the server closes the connection.
                    log.exception("the capture path failed for endpoint %r", key)
                    await _error(scope, receive, send, 500, "internal",
                                 "internal error; the server log has the details")
                return
        await self.app(scope, receive, send)

    async def capture(self, key: str, scope: Scope, receive: Receive, send: Send) -> None:
        received_at = now_us()
        try:
            endpoint = await self.store.capture_target(key)
        except Exception:
            # An endpoint this process keeps no copy of is read from the database, which may
            # be out of reach (PostgreSQL restarting): the sender is told to try again, as when
            # a commit fails, never given a 500.
            log.exception("could not look up endpoint %r for a capture", key)
            await _error(scope, receive, send, 503, "unavailable",
                         "the endpoint could not be looked up and the request was NOT "
                         "captured; try again")
            return
        if endpoint is None:
            await _error(scope, receive, send, 404, "not_found",
                         f"no endpoint with token or alias {key!r}")
            return
        if endpoint.is_expired(received_at):
            await _error(scope, receive, send, 410, "gone", f"endpoint {key!r} has expired")
            return
        if self.limiter.applies(endpoint.rate_limit):  # not even an await otherwise
            retry_after = await self.admit(endpoint.id, endpoint.rate_limit)
            if retry_after:
                await _error(scope, receive, send, 429, "rate_limited",
                             f"too many requests for {key!r}; retry in {retry_after} s",
                             headers={"retry-after": str(retry_after)})
                return
        try:
            body, truncated = await read_body(receive, self.settings.max_body_bytes)
        except Disconnected:
            return
        try:
            if len(body) <= INLINE_BODY_BYTES:  # the common case: no thread, not even an await
                capture = self._examine(endpoint, scope, received_at, body, truncated, True)
            else:
                capture = await self.offload.run(len(body), self._examine, endpoint, scope,
                                                 received_at, body, truncated, True)
        except TimeoutError:
            log.warning("a capture for endpoint %s is stored unparsed: %s", endpoint.token,
                        BUDGET_EXCEEDED)
            capture = self._examine(endpoint, scope, received_at, body, truncated, False)
        refusal = self._refusal(endpoint, capture)
        capture.response_status = refusal[0] if refusal else endpoint.response["status"]
        try:
            await self.store.add_capture(capture)
        except Gone:
            await _error(scope, receive, send, 404, "not_found", f"endpoint {key!r} was deleted")
            return
        except Exception:
            log.exception("could not store a capture for endpoint %s", endpoint.token)
            await _error(scope, receive, send, 503, "unavailable",
                         "the request could not be stored and was NOT captured; try again")
            return
        # Published after the commit, never before; skipped when nobody is watching.
        if self.hub.wanted(endpoint.id):
            self.hub.publish(endpoint.id, capture.seq, json.dumps(capture.as_json(full=False)))
        # Queued, not awaited: the sender's answer never waits for the target. Every stored
        # capture goes, also one answered with an error (the target judges it for itself).
        if endpoint.forward is not None and self.forwarder is not None:
            self.forwarder.submit(capture, endpoint.forward)
        if refusal:
            await _error(scope, receive, send, *refusal, capture_id=capture.id)
            return
        if endpoint.response["delay_ms"]:
            await asyncio.sleep(endpoint.response["delay_ms"] / 1000)
        reply = endpoint.reply
        if reply is None or reply.config is not endpoint.response:
            reply = endpoint.reply = _reply_for(endpoint.response)
        await _reply(send, reply, capture.id)

    def _examine(self, endpoint: Endpoint, scope: Scope, received_at: int, body: bytes,
                 truncated: bool, parse: bool) -> Capture:
        """The capture of a request, its body parsed (unless told not to), its signature
        checked and its payload validated."""
        capture = build_capture(scope, endpoint_id=endpoint.id, endpoint_token=endpoint.token,
                                received_at=received_at, body=body, truncated=truncated,
                                parse=parse)
        if endpoint.verify is not None:
            capture.signature = check_signature(endpoint.verify, signed_request(capture),
                                                received_at / 1_000_000, truncated=truncated)
        if capture.parsed is not None and not truncated:
            capture.validation = self._validate(endpoint, capture)
        return capture

    async def _admit_here(self, endpoint_id: int, rate: float | None) -> int:
        return self.limiter.admit(endpoint_id, rate)

    def _validate(self, endpoint: Endpoint, capture: Capture) -> dict[str, Any] | None:
        assert capture.parsed is not None  # parsed on the capture path before this
        try:
            return self.validation.check(capture.parsed, endpoint.format, endpoint.schema,
                                         headers=capture.headers, path=capture.path)
        except Exception as exc:  # a validator bug must never cost a capture
            log.exception("validation failed for endpoint %s", endpoint.token)
            message = f"could not validate ({type(exc).__name__})"
            return {"format": None, "detected": False, "status": "unknown",
                    "errors": [{"path": "", "message": message}]}

    def _refusal(self, endpoint: Endpoint, capture: Capture) -> tuple[int, str, str] | None:
        """(status, code, message) when the capture is answered with an error, not the
        configured response. The capture is stored either way."""
        limit = self.settings.max_body_bytes
        if capture.truncated:
            return (413, "too_large", f"body is larger than {limit} bytes; its first {limit} "
                                      f"bytes were captured as {capture.id}")
        signature = capture.signature
        if (endpoint.reject["bad_signature"] and signature is not None
                and signature["status"] in ("failed", "missing")):
            return (401, "bad_signature", f"signature {signature['status']} "
                                          f"({signature['scheme']}): {signature['reason']}")
        validation = capture.validation
        if (endpoint.reject["invalid_payload"] and validation is not None
                and validation["status"] == "invalid"):
            first = validation["errors"][0] if validation["errors"] else {"path": "",
                                                                         "message": "invalid"}
            return (422, "invalid_payload",
                    f"payload is not valid {validation['format']}: {first['path'] or '/'}: "
                    f"{first['message']} ({len(validation['errors'])} errors in all)")
        return None


def head_size(scope: Scope) -> int:
    """A request head's size as sent, near enough: its request line and its header lines."""
    size = len(scope["method"]) + len(scope.get("raw_path") or b"") + 11  # spaces, version, CRLF
    if query := scope.get("query_string"):
        size += len(query) + 1
    for name, value in scope["headers"]:
        size += len(name) + len(value) + 4  # ": " and CRLF
    return size


class _Reply(NamedTuple):
    """An endpoint's configured answer, made once per Endpoint object (Endpoint.reply): on every
    capture only the capture's id goes in."""

    config: dict[str, Any]  # the response config this was made from
    status: int
    headers: tuple[tuple[bytes, bytes], ...]  # those before the capture's own
    body: bytes | None  # None: the default JSON naming the capture
    after: tuple[tuple[bytes, bytes], ...]  # those after it: _INERT, or none


def _reply_for(config: dict[str, Any]) -> _Reply:
    status = config["status"]
    headers = [(name.lower().encode("latin-1"), value.encode("latin-1"))
               for name, value in config["headers"].items()]
    body = None if config["body"] is None else config["body"].encode()
    if not any(name == b"content-type" for name, _ in headers):
        default_type = b"application/json" if body is None else _guess_type(config["body"])
        headers.append((b"content-type", default_type))
    if status in (204, 304):
        body = b""
    elif body is not None:
        headers.append((b"content-length", str(len(body)).encode()))
    # A configured body (HTML, say), or the default one under configured headers (a
    # Content-Type, say), is served from Hookscope's own origin: a browser must never run it
    # there. Webhook senders ignore both headers. The default reply, JSON that only names the
    # capture, needs neither (uvicorn checks each header it sends, on every capture).
    inert = _INERT if config["body"] is not None or config["headers"] else ()
    return _Reply(config, status, tuple(headers), body, inert)


async def _reply(send: Send, reply: _Reply, capture_id: str) -> None:
    capture_header = (b"x-hookscope-capture", capture_id.encode())
    content = reply.body
    if content is None:
        # Capture ids are [0-9a-f_] only, so this is valid JSON without an encoder.
        content = b'{"ok": true, "id": "' + capture_header[1] + b'"}'
        headers = [*reply.headers, (b"content-length", str(len(content)).encode()),
                   capture_header, *reply.after]
    else:
        headers = [*reply.headers, capture_header, *reply.after]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": content})


_INERT_HEADERS = {"content-security-policy": "sandbox", "x-content-type-options": "nosniff"}
_INERT = tuple((name.encode(), value.encode()) for name, value in _INERT_HEADERS.items())


async def _error(scope: Scope, receive: Receive, send: Send, status: int, code: str,
                 message: str, capture_id: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
    extra = {**_INERT_HEADERS, **(headers or {})}
    if capture_id is not None:
        extra["x-hookscope-capture"] = capture_id
    await send_error(scope, receive, send, status, message, code=code, headers=extra)


def _guess_type(body: str) -> bytes:
    try:
        json.loads(body)
    except ValueError:
        return b"text/plain; charset=utf-8"
    return b"application/json"
