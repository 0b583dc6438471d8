"""Send a captured request again, to any http(s) URL, and report what came back.

Deliberate choices, so nobody "fixes" them:

- The request is built by hand (httpx.Request, then client.send) rather than client.post(): the
  client's own User-Agent, Accept, Accept-Encoding and Connection would otherwise join the
  capture's headers. httpx adds only Host and, where the capture had none, Content-Length.
- No redirects are followed (the 3xx is the answer), no proxy or .netrc is read from the
  environment (trust_env=False), no cookies are kept: one replay, one exchange.
- The reply body is read raw (not decompressed) and kept up to MAX_RESPONSE_BODY, then the
  connection is dropped: an endless or compressed-bomb reply cannot fill the memory.
- `timeout` bounds the whole exchange, connect to last byte, not each read: a target that
  trickles a byte a second still ends in a 504 on time.
- What the target does is never a 500: unreachable is a 502, too slow a 504.
"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx

from hookscope.errors import ApiError
from hookscope.models import Capture, body_fields

MAX_RESPONSE_BODY = 256 * 1024
DEFAULT_TIMEOUT = 10.0
MAX_TIMEOUT = 60.0


@dataclass(frozen=True)
class ReplayOptions:
    url: str
    # Set (replacing every captured value of that name) or, with None, remove.
    headers: dict[str, str | None] = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT


def replay_headers(capture: Capture, overrides: dict[str, str | None]) -> list[list[str]]:
    """The capture's resent headers with the overrides applied (names match in any case): a set
    header takes the place of the first one of its name, or goes last; None removes the name."""
    pending = {name.lower(): (name, value) for name, value in overrides.items()}
    overridden = set(pending)
    headers: list[list[str]] = []
    for name, value in capture.resent_headers():
        if name.lower() not in overridden:
            headers.append([name, value])
            continue
        new_name, new_value = pending.pop(name.lower(), (name, None))  # later ones: dropped
        if new_value is not None:
            headers.append([new_name, new_value])
    headers.extend([name, value] for name, value in pending.values() if value is not None)
    return headers


async def replay(capture: Capture, options: ReplayOptions) -> dict[str, Any]:
    request = httpx.Request(
        capture.method, options.url, content=capture.body or b"",
        headers=[(name.encode("latin-1"), value.encode("latin-1"))
                 for name, value in replay_headers(capture, options.headers)])
    started = time.perf_counter()
    try:
        with anyio.fail_after(options.timeout):
            async with httpx.AsyncClient(follow_redirects=False, trust_env=False,
                                         timeout=options.timeout) as client:
                response = await client.send(request, stream=True)
                try:
                    body, truncated = await _read_capped(response, MAX_RESPONSE_BODY)
                finally:
                    await response.aclose()
    except (TimeoutError, httpx.TimeoutException):
        message = f"{options.url} did not answer within {options.timeout:g} s"
        raise ApiError(504, message) from None
    except httpx.HTTPError as exc:
        raise ApiError(502, f"could not reach {options.url}: {_reason(exc)}") from None
    elapsed_ms = (time.perf_counter() - started) * 1000
    return {
        "capture": capture.id,
        "request": {"method": request.method, "url": str(request.url),
                    "headers": _pairs(request.headers.raw)},
        "response": {"status": response.status_code, "headers": _pairs(response.headers.raw),
                     **body_fields(body), "body_size": len(body), "truncated": truncated},
        "elapsed_ms": round(elapsed_ms, 1),
    }


async def _read_capped(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """Up to `limit` bytes of the body, and whether the target had more to send."""
    body = bytearray()
    async for chunk in response.aiter_raw():
        room = limit - len(body)
        if len(chunk) > room:
            body += chunk[:room]
            return bytes(body), True
        body += chunk
    return bytes(body), False


def _pairs(raw: list[tuple[bytes, bytes]]) -> list[list[str]]:
    return [[name.decode("latin-1"), value.decode("latin-1")] for name, value in raw]


def _reason(exc: httpx.HTTPError) -> str:
    """Why the target could not be reached, in a few words, from the innermost cause."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return f"the host name did not resolve ({cause.strerror})"
        if isinstance(cause, ssl.SSLError):
            return f"TLS failed ({cause.reason or cause})"
        cause = cause.__cause__ or cause.__context__
    return str(exc) or type(exc).__name__
