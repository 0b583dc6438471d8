"""The browser pages: server-rendered shells; everything they show comes from the JSON API.

Every page is sent with a Content-Security-Policy that allows no inline script or style, so a
hostile capture rendered by mistake as markup still could not run; the page scripts only ever
put payload data into the page as text.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from app.routes.api import base_url, store_of

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = Jinja2Templates(directory=str(ROOT / "templates"))
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; "
                                "img-src 'self' data:; connect-src 'self'; object-src 'none'; "
                                "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


async def home(request: Request) -> Response:
    return TEMPLATES.TemplateResponse(request, "home.html", {}, headers=SECURITY_HEADERS)


async def inspector(request: Request) -> Response:
    key = request.path_params["key"]
    endpoint = await store_of(request).get_endpoint(key)
    if endpoint is None:
        return TEMPLATES.TemplateResponse(
            request, "not_found.html", {"message": f"No endpoint with token or alias “{key}”."},
            status_code=404, headers=SECURITY_HEADERS)
    return TEMPLATES.TemplateResponse(
        request, "inspector.html", {"endpoint": endpoint.as_json(base_url(request))},
        headers=SECURITY_HEADERS)
