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
- Where it may go is a policy (TargetPolicy), checked on the addresses the host name resolves to,
  and then kept to: a target is connected to at the address that was checked (its Host header
  still names the host, and over TLS so do SNI and the certificate check), so a name that resolves
  elsewhere a moment later changes nothing. Link-local addresses (cloud metadata services among
  them) are always refused, and private and loopback ones too when the server listens on an
  address others can reach, unless HOOKSCOPE_REPLAY_ALLOW names them; a Hookscope on loopback
  replays into the developer's own machine and network. (Redirects are not followed, so there is
  no other hop to check.)
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx

from hookscope.errors import ApiError, Problems
from hookscope.models import (
    HEADER_VALUE_RULE,
    HOP_BY_HOP,
    Capture,
    body_fields,
    header_name_ok,
    header_value_ok,
)

MAX_RESPONSE_BODY = 256 * 1024
DEFAULT_TIMEOUT = 10.0
MAX_TIMEOUT = 60.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port -> the addresses it resolves to
Resolver = Callable[[str, int], Awaitable[list[str]]]
# Cloud metadata services outside the link-local ranges.
_METADATA = (ipaddress.ip_network("100.100.100.200/32"), ipaddress.ip_network("fd00:ec2::254/128"))


async def resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True)
class TargetPolicy:
    """Where a replay may be sent (see the module's notes). `allow`: HOOKSCOPE_REPLAY_ALLOW's
    items, CIDRs or host names."""

    server_on_loopback: bool
    allow: tuple[str, ...] = ()
    resolver: Resolver = resolve

    @classmethod
    def for_server(cls, host: str, allow: str, resolver: Resolver = resolve) -> TargetPolicy:
        on_loopback = host == "localhost" or _is_loopback(host)
        items = tuple(item.strip().lower() for item in allow.split(",") if item.strip())
        return cls(on_loopback, items, resolver)

    async def address(self, host: str, port: int, action: str = "replay") -> str:
        """The address to send to: the first that `host` resolves to, once every one of them is
        found allowed; ApiError(403) naming the first that is not (`action`: what is refused)."""
        name = host.strip("[]").lower()
        try:
            addresses = [name] if _is_address(name) else await self.resolver(name, port)
        except OSError as exc:
            raise ApiError(502, f"could not reach {host}: the host name did not resolve "
                                f"({getattr(exc, 'strerror', None) or exc})") from None
        if not addresses:
            raise ApiError(502, f"could not reach {host}: the host name did not resolve")
        for text in addresses:
            if (problem := self._refused(name, ipaddress.ip_address(text.split("%", 1)[0]))):
                raise ApiError(403, f"{action} to {host} ({text}) is refused: {problem}; "
                                    "HOOKSCOPE_REPLAY_ALLOW can admit it", code="forbidden")
        return addresses[0]

    def _refused(self, name: str, address: IPAddress) -> str | None:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:169.254.169.254 is 169.254.169.254
        if name in self.allow or any(address in ipaddress.ip_network(item, strict=False)
                                     for item in self.allow if _is_network(item)):
            return None
        if address.is_link_local or any(address in net for net in _METADATA):
            return "link-local and cloud metadata addresses are never replayed to"
        if address.is_unspecified or address.is_multicast:
            return "it is not an address to send to"
        if (address.is_loopback or address.is_private) and not self.server_on_loopback:
            return ("private and loopback addresses are replayed to only by a Hookscope that "
                    "listens on loopback itself")
        return None


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_loopback(text: str) -> bool:
    try:
        return ipaddress.ip_address(text.strip("[]")).is_loopback
    except ValueError:
        return False


def _is_network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


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


@dataclass
class Exchange:
    """One request sent and what came back (the reply's body read up to a cap)."""

    method: str
    address: str
    request_headers: list[list[str]]
    status: int
    headers: list[list[str]]
    body: bytes
    truncated: bool
    elapsed_ms: float


async def exchange(method: str, target: str, headers: list[list[str]], body: bytes, *,
                   timeout: float, policy: TargetPolicy | None,
                   body_limit: int = MAX_RESPONSE_BODY, action: str = "replay") -> Exchange:
    """Send one request to `target` as the module's notes say (to an address `policy` allows,
    when there is one). Raises ApiError: 403 refused by the policy, 502 unreachable, 504 too
    slow."""
    url = httpx.URL(target)
    raw_headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]
    started = time.perf_counter()
    address = url.host
    extensions: dict[str, Any] = {}
    if policy is not None:
        port = url.port or (443 if url.scheme == "https" else 80)
        address = await policy.address(url.host, port, action)
        if address != url.host:
            # Connect to the address that was checked; the Host header names the host, and
            # over TLS so does the name sent and the certificate is checked against.
            if not any(name.lower() == b"host" for name, _ in raw_headers):
                raw_headers.insert(0, (b"host", url.netloc))
            if url.scheme == "https":
                extensions["sni_hostname"] = url.host
            url = url.copy_with(host=address)
    request = httpx.Request(method, url, content=body, headers=raw_headers,
                            extensions=extensions)
    try:
        with anyio.fail_after(timeout):
            async with httpx.AsyncClient(follow_redirects=False, trust_env=False,
                                         timeout=timeout) as client:
                response = await client.send(request, stream=True)
                try:
                    content, truncated = await _read_capped(response, body_limit)
                finally:
                    await response.aclose()
    except (TimeoutError, httpx.TimeoutException):
        raise ApiError(504, f"{target} did not answer within {timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise ApiError(502, f"could not reach {target}: {_reason(exc)}") from None
    return Exchange(method=request.method, address=address,
                    request_headers=_pairs(request.headers.raw), status=response.status_code,
                    headers=_pairs(response.headers.raw), body=content, truncated=truncated,
                    elapsed_ms=round((time.perf_counter() - started) * 1000, 1))


async def replay(capture: Capture, options: ReplayOptions,
                 policy: TargetPolicy) -> dict[str, Any]:
    sent = await exchange(capture.method, options.url, replay_headers(capture, options.headers),
                          capture.body or b"", timeout=options.timeout, policy=policy)
    return {
        "capture": capture.id,
        "request": {"method": sent.method, "url": options.url, "address": sent.address,
                    "headers": sent.request_headers},
        "response": {"status": sent.status, "headers": sent.headers, **body_fields(sent.body),
                     "body_size": len(sent.body), "truncated": sent.truncated},
        "elapsed_ms": sent.elapsed_ms,
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


# What POST /api/captures/{id}/replay and `hookscope replay --to` accept, checked the same way.
REPLAY_FIELDS = ("url", "headers", "timeout")
MAX_URL = 8192
MAX_OVERRIDES = 100
# The framing is the HTTP client's to write for the new body; Host may be set on purpose.
_NOT_OVERRIDABLE = HOP_BY_HOP | {"content-length"}


def check_replay_fields(body: Any) -> ReplayOptions:
    if not isinstance(body, dict):
        raise ApiError(422, 'expected a JSON object such as {"url": "http://127.0.0.1:9000/hook"}')
    problems = Problems()
    for key in body:
        if key not in REPLAY_FIELDS:
            problems.add(key, f"unknown field {key!r}; known: {', '.join(REPLAY_FIELDS)}")
    url = _replay_url(body.get("url"), problems)
    headers = _replay_headers(body.get("headers"), problems)
    timeout = body.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not (
            0 < timeout <= MAX_TIMEOUT):
        problems.add("timeout", f"timeout must be a number of seconds, more than 0 and at most "
                                f"{MAX_TIMEOUT:g}")
    problems.raise_any()
    return ReplayOptions(url=url, headers=headers, timeout=float(timeout))


def _replay_url(value: Any, problems: Problems) -> str:
    if (problem := url_problem(value)) is not None:
        problems.add("url", problem)
    return value if isinstance(value, str) else ""


def url_problem(value: Any, *, most: int = MAX_URL,
                example: str = "such as http://127.0.0.1:9000/hook") -> str | None:
    """What is wrong with `value` as an http:// or https:// URL to send to, or None."""
    if value is None:
        return f"url is required: the http:// or https:// URL to send to, {example}"
    if not isinstance(value, str) or not value or len(value) > most:
        return f"url must be a string of at most {most} characters, {example}"
    try:
        url = httpx.URL(value)
        port = url.port
    except (httpx.InvalidURL, ValueError) as exc:
        return f"url is not a valid URL ({exc}); expected one {example}"
    if url.scheme not in ("http", "https"):
        given = f"not {url.scheme}://" if url.scheme else "and be absolute"
        return f"url must start with http:// or https://, {given}; {example}"
    if not url.host:
        return f"url must name a host, {example}"
    if port is not None and not 0 < port < 65536:
        return f"url's port must be from 1 to 65535, got {port}"
    return None


def _replay_headers(value: Any, problems: Problems) -> dict[str, str | None]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_OVERRIDES:
        problems.add("headers", f"headers must be an object of at most {MAX_OVERRIDES} "
                                'names, such as {"X-Extra": "1", "User-Agent": null}')
        return {}
    for name, header_value in value.items():
        if not header_name_ok(name) or name.lower() in _NOT_OVERRIDABLE:
            problems.add(f"headers.{name}", f"{name!r} cannot be set: not a header name, or one "
                                            "the HTTP client writes (Content-Length, "
                                            "Transfer-Encoding, Connection...)")
        elif header_value is not None and not header_value_ok(header_value):
            problems.add(f"headers.{name}", HEADER_VALUE_RULE + ", or null to remove the header")
    return value
