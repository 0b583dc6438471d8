"""The JSON API's service routes: signature schemes, payload formats, offline validation and
the health check."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from hookscope import __version__
from hookscope.errors import ApiError
from hookscope.formats import Validation, verdict
from hookscope.ingest.offload import BUDGET_EXCEEDED
from hookscope.ingest.parse import parse_body, unparsed
from hookscope.ingest.parsed import Parsed
from hookscope.responses import JSONResponse
from hookscope.routes.common import (
    offload_of,
    read_limited,
    settings_of,
)
from hookscope.verify import scheme_list


def _validation(request: Request) -> Validation:
    return request.app.state.validation  # type: ignore[no-any-return]


async def list_formats(request: Request) -> Response:
    return JSONResponse({"formats": [f.as_json() for f in _validation(request).registry.formats]})


async def get_format(request: Request) -> Response:
    """The format's JSON Schema, as Hookscope validates with it."""
    format_id = request.path_params["id"]
    fmt = _validation(request).registry.get(format_id)
    if fmt is None:
        raise ApiError(404, f"no format {format_id!r}; GET /api/formats lists them")
    return JSONResponse(fmt.schema)


async def validate_payload(request: Request) -> Response:
    """Stateless: parse and validate the request body as if it had been captured. With
    ?format=<id> against that format, otherwise detect the format first."""
    validation = _validation(request)
    mode = request.query_params.get("format") or "auto"
    if mode != "auto" and validation.registry.get(mode) is None:
        raise ApiError(400, f"format must be a format id (GET /api/formats), got {mode!r}",
                       details=[{"field": "format", "message": "unknown format"}])
    body = await read_limited(request, settings_of(request).max_body_bytes)
    content_type = request.headers.get("content-type")

    def check() -> tuple[Parsed, dict[str, Any] | None]:
        parsed = parse_body(body, content_type)
        return parsed, validation.check(parsed, mode, None)

    try:
        parsed, result = await offload_of(request).run(len(body), check)
    except TimeoutError:
        parsed = unparsed(body, content_type, BUDGET_EXCEEDED)
        result = validation.check(parsed, mode, None)
    result = result or verdict(None, False, None, "unknown")
    return JSONResponse({**result, "parsed": {"kind": parsed.kind, "error": parsed.error}})


async def list_schemes(request: Request) -> Response:
    return JSONResponse({"schemes": scheme_list()})


async def healthz(request: Request) -> Response:
    return JSONResponse({"ok": True, "version": __version__})
