"""The browser pages: server-rendered shells; everything they show comes from the JSON API.

Every page is sent with a Content-Security-Policy that allows no inline script or style, so a
hostile capture rendered by mistake as markup still could not run; the page scripts only ever
put payload data into the page as text.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from hookscope.routes.access import (
    COOKIE,
    SESSION_S,
    check_token,
    client_address,
    session_of,
    session_value,
)
from hookscope.routes.common import base_url, read_limited, store_of


def _folder(name: str) -> Path:
    """templates/ or static/: inside the installed package (pyproject's package-dir puts them
    there), or beside app/ when run from a checkout (an editable install maps the package to the
    source folder, which does not hold them)."""
    package = Path(__file__).resolve().parents[1]
    for folder in (package / name, package.parent / name):
        if folder.is_dir():
            return folder
    raise RuntimeError(f"Hookscope's {name}/ folder is missing from {package}")


TEMPLATES = Jinja2Templates(directory=str(_folder("templates")))
STATIC = _folder("static")
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; "
                                "img-src 'self' data:; connect-src 'self'; object-src 'none'; "
                                "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def _page(request: Request, name: str, context: dict[str, Any], status_code: int = 200,
          headers: dict[str, str] | None = None) -> Response:
    context["logout"] = bool(request.app.state.settings.token)
    return TEMPLATES.TemplateResponse(request, name, context, status_code=status_code,
                                      headers={**SECURITY_HEADERS, **(headers or {})})


async def home(request: Request) -> Response:
    return _page(request, "home.html", {})


async def inspector(request: Request) -> Response:
    key = request.path_params["key"]
    endpoint = await store_of(request).get_endpoint(key)
    if endpoint is None:
        return _page(request, "not_found.html",
                     {"message": f"No endpoint with token or alias “{key}”."}, 404)
    return _page(request, "inspector.html", {"endpoint": endpoint.as_json(base_url(request))})


def _local(target: str) -> str:
    """Only a path on this server is a place to go after logging in (no open redirect)."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


async def login_page(request: Request) -> Response:
    return _page(request, "login.html",
                 {"next": _local(request.query_params.get("next", "/")), "error": ""})


async def login(request: Request) -> Response:
    token = request.app.state.settings.token
    body = await read_limited(request, 16 * 1024)
    form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    offered = form.get("token", [""])[0]
    target = _local(form.get("next", ["/"])[0])
    if not token:
        return RedirectResponse(target, status_code=303)
    throttle = request.app.state.auth_throttle
    address = client_address(request.scope)
    retry_after = throttle.blocked(address)
    if retry_after:
        return _page(request, "login.html",
                     {"next": target, "error": f"Too many wrong tokens from {address}. "
                                               f"Try again in {retry_after} s."},
                     429, headers={"Retry-After": str(retry_after)})
    if not check_token(token, offered):
        throttle.failed(address)  # ten guesses, then one every few seconds per address
        await asyncio.sleep(0.5)
        return _page(request, "login.html", {"next": target, "error": "That is not the token."},
                     401)
    response = RedirectResponse(target, status_code=303)
    secure = request.url.scheme == "https" or base_url(request).startswith("https://")
    response.set_cookie(COOKIE, session_value(token), max_age=SESSION_S, httponly=True,
                        samesite="lax", secure=secure, path="/")
    return response


async def logout(request: Request) -> Response:
    """Log this browser out: its session is revoked on the server, not only its cookie
    dropped, so a copy of the cookie signs in no more."""
    token = request.app.state.settings.token
    value = request.cookies.get(COOKIE)
    session = session_of(token, value) if token and value else None
    if session is not None:
        await store_of(request).revoke_session(session.nonce, session.issued + SESSION_S)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax")
    return response
