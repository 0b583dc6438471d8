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

The cookie holds an HMAC of the token, not the token: it survives restarts, stops working when
the token changes, and reveals nothing if it leaks from a browser profile.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import quote, urlsplit

COOKIE = "hookscope_session"
OPEN_PREFIXES = ("/static/", "/login", "/logout")
OPEN_PATHS = frozenset({"/healthz", "/favicon.ico"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def session_value(token: str) -> str:
    return hmac.new(token.encode(), b"hookscope browser session v1", hashlib.sha256).hexdigest()


def check_token(token: str, offered: str) -> bool:
    return hmac.compare_digest(token.encode(), offered.encode())


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def cross_site(scope: dict[str, Any], public_url: str = "") -> bool:
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


def authenticated(scope: dict[str, Any], token: str) -> bool:
    authorization = _header(scope, b"authorization") or ""
    scheme, _, offered = authorization.partition(" ")
    if scheme.lower() == "bearer" and check_token(token, offered.strip()):
        return True
    cookie = _header(scope, b"cookie")
    if cookie:
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(cookie)
        except Exception:  # a malformed Cookie header is simply no session
            return False
        morsel = jar.get(COOKIE)
        if morsel is not None:
            return hmac.compare_digest(morsel.value.encode(), session_value(token).encode())
    return False


class AccessMiddleware:
    """Cross-site refusal always; token checks when a token is set. Runs after the capture
    middleware, so capture URLs never reach it."""

    def __init__(self, app: Any, token: str, public_url: str) -> None:
        self.app = app
        self.token = token
        self.public_url = public_url

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if scope["method"] not in SAFE_METHODS and cross_site(scope, self.public_url):
            await _deny(send, 403, "forbidden", "cross-site request refused: this page may not "
                                                "change Hookscope's data")
            return
        if (not self.token or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)
                or authenticated(scope, self.token)):
            await self.app(scope, receive, send)
            return
        if path.startswith("/api/"):
            await _deny(send, 401, "unauthorized",
                        "this Hookscope needs its token: send 'Authorization: Bearer <token>' "
                        "(HOOKSCOPE_TOKEN on the server)",
                        [(b"www-authenticate", b'Bearer realm="hookscope"')])
            return
        target = path + ("?" + scope["query_string"].decode("latin-1")
                         if scope["query_string"] else "")
        await send({"type": "http.response.start", "status": 303, "headers": [
            (b"location", b"/login?next=" + quote(target, safe="").encode()),
            (b"content-length", b"0"), (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": b""})


async def _deny(send: Any, status: int, code: str, message: str,
                extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"error": {"code": code, "message": message, "details": []}}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)),
        (b"x-content-type-options", b"nosniff"), (b"cache-control", b"no-store"),
        *(extra or [])]})
    await send({"type": "http.response.body", "body": body})
