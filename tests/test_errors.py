"""One error shape, made by one function, for every way a request can go wrong."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from hookscope.errors import EXCEPTION_HANDLERS, ApiError, error_response

pytestmark = pytest.mark.anyio


def _assert_shape(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"]
    assert sorted(body["error"]) == ["code", "details", "message"]
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert "Traceback" not in response.text
    return body["error"]


def test_error_response_is_the_documented_shape():
    response = error_response(422, "alias: bad", details=[{"field": "alias", "message": "bad"}])
    assert response.status_code == 422
    assert response.body == (b'{"error":{"code":"invalid","message":"alias: bad",'
                             b'"details":[{"field":"alias","message":"bad"}]}}')


async def test_unknown_api_route_is_a_json_404(client):
    error = _assert_shape(await client.get("/api/nothing/here"), 404, "not_found")
    assert "/api/nothing/here" in error["message"]


async def test_wrong_method_is_a_json_405(client):
    error = _assert_shape(await client.put("/api/endpoints"), 405, "method_not_allowed")
    assert "PUT" in error["message"]


async def test_unexpected_exception_is_a_json_500_without_a_trace():
    async def broken(request):
        raise RuntimeError("secret internals")

    async def refused(request):
        raise ApiError(409, "taken", details=[{"field": "alias", "message": "taken"}])

    app = Starlette(routes=[Route("/boom", broken), Route("/refused", refused)],
                    exception_handlers=EXCEPTION_HANDLERS)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        error = _assert_shape(await client.get("/boom"), 500, "internal")
        assert "secret internals" not in error["message"]
        error = _assert_shape(await client.get("/refused"), 409, "conflict")
        assert error["details"] == [{"field": "alias", "message": "taken"}]


async def test_capture_url_errors_use_the_same_shape(client):
    _assert_shape(await client.post("/h/unknown-key"), 404, "not_found")
