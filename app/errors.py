"""The one error shape: {"error": {"code", "message", "details"}}, made by `error_response` only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from hookscope.responses import JSONResponse

_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 409: "conflict", 410: "gone", 413: "too_large",
          422: "invalid", 429: "rate_limited", 500: "internal", 502: "bad_gateway",
          503: "unavailable", 504: "gateway_timeout"}


class ApiError(Exception):
    """Raise anywhere in a request; the handler turns it into the error shape."""

    def __init__(self, status: int, message: str, *, code: str | None = None,
                 details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or _CODES.get(status, "error")
        self.message = message
        self.details = details or []


def error_response(status: int, message: str, *, code: str | None = None,
                   details: list[dict[str, Any]] | None = None,
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    body = {"error": {"code": code or _CODES.get(status, "error"), "message": message,
                      "details": details or []}}
    return JSONResponse(body, status_code=status, headers=headers)


async def send_error(scope: Scope, receive: Receive, send: Send, status: int, message: str,
                     *, code: str | None = None, headers: dict[str, str] | None = None) -> None:
    """`error_response`, sent from a pure ASGI middleware (the capture path, access control)."""
    await error_response(status, message, code=code, headers=headers)(scope, receive, send)


async def api_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.message, code=exc.code, details=exc.details)


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: f"no route for {request.url.path}",
               405: f"{request.method} is not allowed on {request.url.path}"}.get(
        exc.status_code, str(exc.detail))
    return error_response(exc.status_code, message, headers=exc.headers)


async def server_error_handler(request: Request, exc: Exception) -> Response:
    # Starlette re-raises after this so the server logs the traceback; the client gets the
    # shape, never the trace.
    store = getattr(request.app.state, "store", None)
    if store is not None and store.unreachable(exc):  # an outage, not a bug: worth a retry
        return error_response(503, "the database cannot be reached at the moment; try again",
                              code="unavailable")
    return error_response(500, "internal error; the server log has the details")


EXCEPTION_HANDLERS = {
    ApiError: api_error_handler,
    HTTPException: http_exception_handler,
    Exception: server_error_handler,
}


class Problems:
    """What is wrong with a request's fields, gathered so one 422 names them all."""

    def __init__(self) -> None:
        self.details: list[dict[str, str]] = []

    def add(self, field: str, message: str) -> None:
        self.details.append({"field": field, "message": message})

    def raise_any(self) -> None:
        if self.details:
            first = self.details[0]
            more = f" (and {len(self.details) - 1} more)" if len(self.details) > 1 else ""
            raise ApiError(422, f"{first['field']}: {first['message']}{more}",
                           details=self.details)
