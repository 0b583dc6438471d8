"""Every API route is in docs/api.md: the URL map is the registry, docs/api.md its documentation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from starlette.routing import Route

from hookscope.routes import build_routes

API_DOC = (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text()
API_ROUTES = [(method, route.path) for route in build_routes() if isinstance(route, Route)
              and route.path.startswith("/api") for method in sorted(route.methods or ())
              if method != "HEAD"]


@pytest.mark.parametrize(("method", "path"), API_ROUTES)
def test_every_api_route_is_documented(method, path):
    assert re.search(rf"\b{method}\s+{re.escape(path)}(?![\w/{{])", API_DOC), (
        f"{method} {path} is not in docs/api.md")
