"""Who may use Hookscope's API and pages, and from where.

- With HOOKSCOPE_TOKEN set, the API, the live stream and the pages need it: an
  `Authorization: Bearer <token>` header (the CLI, scripts, the pytest plugin), or the session
  cookie the login page sets for a browser. Capture URLs (/h/...) stay open: senders cannot
  log in. So do /healthz, /static and the login page itself.
- Always, whatever the token: a request that changes something (any method but GET, HEAD and
  OPTIONS) and that a browser marks as coming from another page than this server's
  (`Sec-Fetch-Site: cross-site` or `same-site`, or without that header an `Origin` that is not
  this server's) is refused with 403. Browsers send those headers on every cross-site POST; a
  page elsewhere cannot use a logged-in browser, or a Hookscope on 127.0.0.1, to change
  anything. Clients that are not browsers send neither and pass.

- Without a token, the API and pages answer only to a Host that is an IP address, localhost,
  the public URL's host or one listed in HOOKSCOPE_ALLOWED_HOSTS: a web page cannot rebind its
  own name to 127.0.0.1 and use the API from the victim's browser.

The cookie holds its issue time, a random nonce and an HMAC of both under the token, not the
token: it survives restarts, expires after 30 days on the server's side too, stops working when
the token changes, and reveals nothing about the token if it leaks from a browser profile.
Logging out revokes it on the server (the store keeps its nonce until it would have expired),
so a copy of the cookie signs in no more, in any process.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NamedTuple
from urllib.parse import quote, urlsplit

from starlette.requests import cookie_parser
from starlette.types import Receive, Scope, Send

from hookscope.errors import send_error
from hookscope.ingest.limits import FailureThrottle

COOKIE = "hookscope_session"
SESSION_S = 30 * 24 * 3600
OPEN_PREFIXES = ("/static/", "/login", "/logout")
OPEN_PATHS = frozenset({"/healthz", "/favicon.ico"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CLEAR_COOKIE = f"{COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=lax"


class Session(NamedTuple):
    issued: int  # seconds since the epoch
    nonce: str


def session_value(token: str, issued: int | None = None, nonce: str | None = None) -> str:
    """`<issued>.<nonce>.<HMAC of both under the token>`: checked on every request, so a copied
    cookie stops working after SESSION_S, when the token changes, and once it is logged out."""
    issued = int(time.time()) if issued is None else issued
    nonce = secrets.token_hex(8) if nonce is None else nonce
    return f"{issued}.{nonce}.{_signature(token, issued, nonce)}"


def _signature(token: str, issued: int, nonce: str) -> str:
    return hmac.new(token.encode(), b"hookscope browser session v3 %d %s" % (issued,
                                                                           nonce.encode()),
                    hashlib.sha256).hexdigest()


def session_of(token: str, value: str, now: float | None = None) -> Session | None:
    """The session a cookie value names, if it is one of this token's and not expired."""
    issued_text, _, rest = value.partition(".")
    nonce, _, signature = rest.partition(".")
    if (not issued_text.isdigit() or len(issued_text) > 12 or len(nonce) != 16
            or not nonce.isalnum() or not nonce.isascii()):
        return None
    issued = int(issued_text)
    now = time.time() if now is None else now
    if not now - SESSION_S < issued <= now + 60:
        return None
    if not hmac.compare_digest(signature.encode(), _signature(token, issued, nonce).encode()):
        return None
    return Session(issued, nonce)


def valid_session(token: str, value: str, now: float | None = None) -> bool:
    return session_of(token, value, now) is not None


def session_cookie(scope: Scope) -> str | None:
    cookie = _header(scope, b"cookie")
    if not cookie:
        return None
    # Starlette's lenient parser: another app on localhost may set a cookie that the stdlib's
    # strict one stops at, hiding ours behind it.
    return cookie_parser(cookie).get(COOKIE)


def check_token(token: str, offered: str) -> bool:
    return hmac.compare_digest(token.encode(), offered.encode())


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def cross_site(scope: Scope, public_url: str = "") -> bool:
    """Does a browser say this request comes from a page that is not this server's?

    Sec-Fetch-Site, where the browser sends it, is the answer ("same-site" too is refused: a
    page on another port of the same host is same-site). Otherwise the Origin header decides.
    """
    fetch_site = _header(scope, b"sec-fetch-site")
    if fetch_site in ("same-origin", "none"):  # "none": typed in, bookmarked
        return False
    if fetch_site in ("cross-site", "same-site"):
        return True
    origin = _header(scope, b"origin")
    if origin is None:
        return False
    if origin == "null":  # sandboxed frames, file:// pages, some redirects
        return True
    allowed = {_header(scope, b"host") or ""}
    if public_url:
        allowed.add(urlsplit(public_url).netloc)
    return urlsplit(origin).netloc not in allowed


def authenticated(scope: Scope, token: str) -> Session | bool:
    """True for the right Bearer token; the Session for a valid session cookie (whose
    revocation the caller checks); False otherwise."""
    authorization = _header(scope, b"authorization") or ""
    scheme, _, offered = authorization.partition(" ")
    if scheme.lower() == "bearer" and check_token(token, offered.strip()):
        return True
    value = session_cookie(scope)
    if value is not None:
        return session_of(token, value) or False
    return False


def offers_bearer(scope: Scope) -> bool:
    return (_header(scope, b"authorization") or "").partition(" ")[0].lower() == "bearer"


def has_session_cookie(scope: Scope) -> bool:
    cookie = _header(scope, b"cookie")
    return cookie is not None and COOKIE in cookie_parser(cookie)


def client_address(scope: Mapping[str, Any]) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


def host_allowed(scope: Scope, allowed: frozenset[str]) -> bool:
    """Is the Host one this server answers to? An IP address always is (DNS rebinding needs a
    name); a name only when listed. Without a token this is what stops a page on
    evil.example, whose name was made to point at 127.0.0.1, from using the API."""
    host = _header(scope, b"host")
    if host is None or "*" in allowed:
        return True
    name = host if host.endswith("]") else host.rsplit(":", 1)[0]
    name = name.strip("[]").lower()
    if name in allowed:
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class AccessMiddleware:
    """Cross-site refusal always; token checks when a token is set. Runs after the capture
    middleware, so capture URLs never reach it."""

    def __init__(self, app: Any, token: str, public_url: str, allowed_hosts: str = "",
                 throttle: FailureThrottle | None = None,
                 revoked: Callable[[str], Awaitable[bool]] | None = None) -> None:
        """`revoked`: whether a session's nonce was logged out (the store's)."""
        self.app = app
        self.token = token
        self.revoked = revoked
        self.throttle = throttle or FailureThrottle()
        self.public_url = public_url
        names = {"localhost", *(h.strip().lower() for h in allowed_hosts.split(",") if h.strip())}
        if public_url:
            names.add((urlsplit(public_url).hostname or "").lower())
        self.allowed_hosts = frozenset(names)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # Hookscope has none; refused before any route
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":  # lifespan
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if (not self.token and path not in OPEN_PATHS and not path.startswith("/static/")
                and not host_allowed(scope, self.allowed_hosts)):
            await _deny(scope, receive, send, 403, "forbidden",
                        f"this Hookscope does not answer to the host "
                        f"{_header(scope, b'host')!r} without a token: add it to "
                        "HOOKSCOPE_ALLOWED_HOSTS, or set HOOKSCOPE_PUBLIC_URL or HOOKSCOPE_TOKEN")
            return
        if scope["method"] not in SAFE_METHODS and cross_site(scope, self.public_url):
            await _deny(scope, receive, send, 403, "forbidden",
                        "cross-site request refused: this page may not change Hookscope's data")
            return
        if not self.token or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        address = client_address(scope)
        retry_after = self.throttle.blocked(address)
        if retry_after:  # credentials are not even looked at
            if path.startswith("/api/"):
                await _deny(scope, receive, send, 429, "rate_limited",
                            f"too many failed attempts with a wrong token from {address}; "
                            f"retry in {retry_after} s", {"retry-after": str(retry_after)})
            else:  # the login form says how long
                await _to_login(scope, send)
            return
        found = authenticated(scope, self.token)
        if found is True or (found and not (self.revoked is not None
                                             and await self.revoked(found.nonce))):
            await self.app(scope, receive, send)
            return
        # A wrong Bearer token or a session cookie that does not check out is a guess at the
        # token; a plain visit, or another scheme's Authorization, is not. A stale cookie (the
        # token changed, 30 days passed, or it was logged out) is cleared, so an open tab stops
        # counting.
        stale = has_session_cookie(scope)
        if stale or offers_bearer(scope):
            self.throttle.failed(address)
        clear = {"set-cookie": CLEAR_COOKIE} if stale else {}
        if path.startswith("/api/"):
            await _deny(scope, receive, send, 401, "unauthorized",
                        "this Hookscope needs its token: send 'Authorization: Bearer <token>' "
                        "(HOOKSCOPE_TOKEN on the server)",
                        {"www-authenticate": 'Bearer realm="hookscope"', **clear})
        else:
            await _to_login(scope, send, clear)


async def _to_login(scope: Scope, send: Send, headers: dict[str, str] | None = None
                    ) -> None:
    """A page without a session: to the login form, and back here afterwards."""
    target = scope["path"] + ("?" + scope["query_string"].decode("latin-1")
                              if scope["query_string"] else "")
    await send({"type": "http.response.start", "status": 303, "headers": [
        (b"location", b"/login?next=" + quote(target, safe="").encode()),
        (b"content-length", b"0"), (b"cache-control", b"no-store"),
        *((name.encode(), value.encode()) for name, value in (headers or {}).items())]})
    await send({"type": "http.response.body", "body": b""})


async def _deny(scope: Scope, receive: Receive, send: Send, status: int, code: str,
                message: str, headers: dict[str, str] | None = None) -> None:
    await send_error(scope, receive, send, status, message, code=code, headers={
        "x-content-type-options": "nosniff", "cache-control": "no-store", **(headers or {})})
