"""The JSON API: endpoints and captures. The page, the CLI and the pytest plugin use it too."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive

from hookscope import __version__
from hookscope.errors import ApiError
from hookscope.formats import Validation, verdict
from hookscope.ingest.capture import signed_request
from hookscope.ingest.offload import BUDGET_EXCEEDED, Offload
from hookscope.ingest.parse import Parsed, loads_strict, media_type, parse_body, unparsed
from hookscope.live import MAX_SUBSCRIBERS_PER_ENDPOINT, Hub
from hookscope.models import Capture, Endpoint, now_us
from hookscope.ops import diff, export
from hookscope.ops.replay import check_replay_fields, replay
from hookscope.responses import JSONResponse
from hookscope.routes.fields import check_endpoint_fields
from hookscope.settings import Settings
from hookscope.storage import CaptureQuery, Conflict, Gone, Store
from hookscope.verify import check_signature, scheme_list

MAX_JSON_BODY = 2 * 1024 * 1024
SIGNATURE_STATUSES = ("verified", "failed", "missing", "unchecked")
VALIDATION_STATUSES = ("valid", "invalid", "unknown")
CAPTURE_LIST_PARAMS = ("method", "signature", "validation", "format", "q", "before", "after",
                       "limit", "wait")
MAX_WAIT_S = 60


def store_of(request: Request) -> Store:
    return request.app.state.store  # type: ignore[no-any-return]


def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def base_url(request: Request) -> str:
    return (_settings(request).public_url or str(request.base_url)).rstrip("/")


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` (never buffered whole)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request) -> Any:
    body = await read_limited(request, MAX_JSON_BODY)
    if not body.strip():
        return {}
    try:
        value = loads_strict(body)
        # SQLite and UTF-8 cannot hold lone surrogates ("\\ud800"): refuse them here, named,
        # rather than fail later when storing or showing the value.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, "request body holds a lone UTF-16 surrogate escape (such as "
                            "\\ud800), which is not a character") from None
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
    return value


def _conflict(exc: Conflict) -> ApiError:
    return ApiError(409, str(exc), details=[{"field": exc.field, "message": str(exc)}])


async def endpoint_or_404(request: Request) -> Endpoint:
    key = request.path_params["key"]
    endpoint = await store_of(request).get_endpoint(key)
    if endpoint is None:
        raise ApiError(404, f"no endpoint with token or alias {key!r}")
    return endpoint


def _number_param(request: Request, name: str, default: int | None, low: int,
                  high: int = 2**63 - 1, *, kind: type = int,
                  what: str = "a whole number") -> Any:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:  # NaN fails this too
        bounds = f"from {low} to {high}"
        raise ApiError(400, f"{name} must be {what} {bounds}, got {raw!r}",
                       details=[{"field": name, "message": f"{what} {bounds}"}])
    return value


def _choice_param(request: Request, name: str, choices: tuple[str, ...], *,
                  required: bool = False) -> str | None:
    value = request.query_params.get(name) or None
    if value in choices or (value is None and not required):
        return value
    given = " (it is required)" if value is None else f", got {value!r}"
    raise ApiError(400, f"{name} must be one of {', '.join(choices)}{given}",
                   details=[{"field": name, "message": f"one of {', '.join(choices)}"}])


# -- endpoints ---------------------------------------------------------------------------------


async def create_endpoint(request: Request) -> Response:
    settings = _settings(request)
    fields = check_endpoint_fields(await read_json(request),
                                   default_max_captures=settings.default_max_captures,
                                   default_max_bytes=settings.default_max_bytes)
    fields["created_at"] = now_us()
    if settings.default_ttl and "expires_at" not in fields:
        fields["expires_at"] = fields["created_at"] + settings.default_ttl * 1_000_000
    try:
        endpoint = await store_of(request).create_endpoint(fields)
    except Conflict as exc:
        raise _conflict(exc) from None
    return JSONResponse(endpoint.as_json(base_url(request)), status_code=201)


async def list_endpoints(request: Request) -> Response:
    limit = _number_param(request, "limit", 100, 1, 1000) or 100
    endpoints = await store_of(request).list_endpoints(limit)
    base = base_url(request)
    return JSONResponse({"endpoints": [e.as_json(base) for e in endpoints]})


async def get_endpoint(request: Request) -> Response:
    endpoint = await endpoint_or_404(request)
    return JSONResponse(endpoint.as_json(base_url(request)))


async def update_endpoint(request: Request) -> Response:
    endpoint = await endpoint_or_404(request)
    fields = check_endpoint_fields(await read_json(request), current=endpoint)
    try:
        updated = await store_of(request).update_endpoint(endpoint, fields)
    except Conflict as exc:
        raise _conflict(exc) from None
    except Gone:
        raise ApiError(404, "the endpoint was deleted meanwhile") from None
    return JSONResponse(updated.as_json(base_url(request)))


async def delete_endpoint(request: Request) -> Response:
    endpoint = await endpoint_or_404(request)
    deleted = await store_of(request).delete_endpoint(endpoint)
    request.app.state.hub.close_endpoint(endpoint.id)
    return JSONResponse({"ok": True, "token": endpoint.token, "captures_deleted": deleted})


# -- captures ----------------------------------------------------------------------------------


async def list_captures(request: Request) -> Response:
    endpoint = await endpoint_or_404(request)
    unknown = [name for name in request.query_params if name not in CAPTURE_LIST_PARAMS]
    if unknown:
        raise ApiError(400, f"unknown parameter {unknown[0]!r}; known: "
                            f"{', '.join(CAPTURE_LIST_PARAMS)}",
                       details=[{"field": name, "message": "unknown parameter"}
                                for name in unknown])
    method = request.query_params.get("method") or None
    wait = _number_param(request, "wait", None, 0, MAX_WAIT_S, kind=float,
                         what="a number of seconds")
    after = _number_param(request, "after", None, 0)
    query = CaptureQuery(
        method=method.upper() if method else None,
        signature=_choice_param(request, "signature", SIGNATURE_STATUSES),
        validation=_choice_param(request, "validation", VALIDATION_STATUSES),
        format=request.query_params.get("format") or None,
        q=request.query_params.get("q") or None,
        before=_number_param(request, "before", None, 0),
        # A long-poll walks forward from the start unless told otherwise: a capture that
        # arrived before the wait began is still found (API.md: race-free by construction).
        after=0 if after is None and wait is not None else after,
        limit=_number_param(request, "limit", 50, 1, 1000) or 50,
    )
    if wait:
        captures = await _long_poll(request, endpoint, query, wait)
        endpoint = await store_of(request).get_endpoint(endpoint.token) or endpoint
    else:
        captures = await store_of(request).list_captures(endpoint, query)
    seqs = [c.seq for c in captures]
    return JSONResponse({
        "endpoint": endpoint.token,
        "captures": [c.as_json(full=False) for c in captures],
        "next_after": max(seqs, default=query.after or 0),
        "next_before": min(seqs) if seqs else None,
        "total": endpoint.capture_count,
    })


async def _long_poll(request: Request, endpoint: Endpoint, query: CaptureQuery,
                     wait: float) -> list[Capture]:
    """The matching captures after `query.after`, waiting up to `wait` seconds for the first.

    Subscribed before the first look, so a capture committed between the look and the wait
    still wakes it; every wake-up looks again in the store (the filters decide, not the event).
    Ends early, with what it has, when the client goes away or the server shuts down."""
    store, hub = store_of(request), request.app.state.hub
    check_room(hub, endpoint)
    deadline = asyncio.get_running_loop().time() + wait
    subscription = hub.subscribe(endpoint.id)
    gone = asyncio.ensure_future(disconnected(request.receive))
    # A client that hangs up ends the wait: its subscription is dropped, which wakes it.
    gone.add_done_callback(lambda _: subscription.drop())
    try:
        await hub.ready(endpoint.id)
        while True:
            captures = await store.list_captures(endpoint, query)
            if captures or gone.done() or hub.closed:
                return captures
            if subscription.dropped:  # too many events unread, or the endpoint was deleted
                if await store.get_endpoint(endpoint.token) is None:
                    raise ApiError(404, f"endpoint {endpoint.token!r} was deleted while waiting")
                subscription.close()
                subscription = hub.subscribe(endpoint.id)
                await hub.ready(endpoint.id)
                continue
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return []
            with contextlib.suppress(StopAsyncIteration):  # dropped: seen at the top
                if await subscription.get(remaining) is not None:
                    subscription.skip_waiting()  # one look in the store covers them all
    finally:  # also when this handler is cancelled (a shutdown past its grace period)
        subscription.close()
        gone.cancel()


def check_room(hub: Hub, endpoint: Endpoint) -> None:
    """Refuse one more live stream or long-poll of an endpoint that has its fill of them."""
    if hub.count(endpoint.id) >= MAX_SUBSCRIBERS_PER_ENDPOINT:
        raise ApiError(429, f"this endpoint already has {MAX_SUBSCRIBERS_PER_ENDPOINT} open "
                            "streams and waits")


async def disconnected(receive: Receive) -> None:
    """Returns when the client hangs up (the request body, if any, is consumed first)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def clear_captures(request: Request) -> Response:
    endpoint = await endpoint_or_404(request)
    deleted = await store_of(request).clear_captures(endpoint)
    return JSONResponse({"ok": True, "captures_deleted": deleted})


async def _capture_or_404(request: Request, param: str = "id") -> Capture:
    capture_id = request.path_params[param]
    capture = await store_of(request).get_capture(capture_id)
    if capture is None:
        raise ApiError(404, f"no capture with id {capture_id!r}")
    return capture


async def get_capture(request: Request) -> Response:
    capture = await _capture_or_404(request)
    return JSONResponse(await full_view(request, capture))


async def full_view(request: Request, capture: Capture) -> dict[str, Any]:
    """The capture in full; a large body's view is made off the event loop, and shown unparsed
    when that runs out of budget (hookscope.ingest.offload)."""
    try:
        return await _offload(request).run(len(capture.body or b""),
                                           partial(capture.as_json, full=True))
    except TimeoutError:
        return capture.as_json(full=True, parse=False)


def _offload(request: Request) -> Offload:
    offload: Offload = request.app.state.offload
    return offload


# Where a browser would run what it loads: a sender's body must never be loaded there from
# Hookscope's origin (a Content-Security-Policy on the body itself does not stop a script).
_RUNNABLE_DESTINATIONS = frozenset({"script", "style", "worker", "sharedworker", "serviceworker",
                                    "audioworklet", "paintworklet", "xslt"})
# Types a browser would run as a script or style sheet: served as text/plain instead.
_RUNNABLE_TYPE = re.compile(r"(java|ecma|j|live)script|/css|wasm|xslt?\b", re.IGNORECASE)


async def capture_body(request: Request) -> Response:
    """The raw bytes with the original Content-Type, made inert: a captured HTML or SVG body
    must never run as a page of Hookscope's origin, nor a script or style sheet as one of its
    resources."""
    destination = request.headers.get("sec-fetch-dest", "").lower()
    if destination in _RUNNABLE_DESTINATIONS:
        raise ApiError(403, f"a captured body is not served as a {destination}: it is the "
                            "sender's, and would run as Hookscope's", code="forbidden")
    capture = await _capture_or_404(request)
    content_type = capture.content_type or "application/octet-stream"
    if _RUNNABLE_TYPE.search(media_type(content_type)):
        content_type = "text/plain; charset=utf-8"
    headers = {
        "content-type": content_type,
        "x-content-type-options": "nosniff",
        "content-security-policy": "sandbox; default-src 'none'",
    }
    if request.query_params.get("download"):
        headers["content-disposition"] = f'attachment; filename="{capture.id}.bin"'
    return Response(capture.body, headers=headers)


async def export_capture(request: Request) -> Response:
    kind = _choice_param(request, "as", export.FORMATS, required=True)
    capture = await _capture_or_404(request)
    if kind == "curl":
        # The command holds whatever the sender sent: never let a browser sniff it into a page.
        return PlainTextResponse(export.curl(capture, base_url(request)),
                                 headers={"x-content-type-options": "nosniff"})
    if kind == "har":
        return JSONResponse(export.har(capture, base_url(request)))
    return JSONResponse({**await full_view(request, capture), "hookscope_fixture": 1}, headers={
        "content-disposition": f'attachment; filename="{capture.id}.json"'})


async def diff_captures(request: Request) -> Response:
    a = await _capture_or_404(request, "a")
    b = await _capture_or_404(request, "b")
    try:
        return JSONResponse(await _offload(request).run(len(a.body or b"") + len(b.body or b""),
                                                        diff.diff_captures, a, b))
    except TimeoutError:
        raise ApiError(503, f"the bodies could not be compared: {BUDGET_EXCEEDED}; compare "
                            "their body_text instead") from None


async def replay_capture(request: Request) -> Response:
    """Send the capture again to the URL given; the reply reports what the target answered."""
    capture = await _capture_or_404(request)
    options = check_replay_fields(await read_json(request))
    return JSONResponse(await replay(capture, options, request.app.state.replay_policy))


async def reverify_capture(request: Request) -> Response:
    """Check a capture's signature again with its endpoint's current secrets, judging timestamps
    against the moment it arrived, and keep the new verdict."""
    capture = await _capture_or_404(request)
    endpoint = await store_of(request).get_endpoint(capture.endpoint_token)
    if endpoint is None:
        raise ApiError(404, f"capture {capture.id!r} no longer has an endpoint")
    if endpoint.verify is None:
        raise ApiError(409, "the endpoint has no verify config to check against; set one with "
                            "PATCH /api/endpoints/{key}")
    previous = capture.as_json(full=False)["signature"]
    signature = check_signature(endpoint.verify, signed_request(capture),
                                capture.received_at / 1_000_000, truncated=capture.truncated)
    if not await store_of(request).set_signature(capture.id, signature):
        raise ApiError(404, f"no capture with id {capture.id!r}")
    return JSONResponse({"id": capture.id, "signature": signature, "previous": previous})


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
    body = await read_limited(request, _settings(request).max_body_bytes)
    content_type = request.headers.get("content-type")

    def check() -> tuple[Parsed, dict[str, Any] | None]:
        parsed = parse_body(body, content_type)
        return parsed, validation.check(parsed, mode, None)

    try:
        parsed, result = await _offload(request).run(len(body), check)
    except TimeoutError:
        parsed = unparsed(body, content_type, BUDGET_EXCEEDED)
        result = validation.check(parsed, mode, None)
    result = result or verdict(None, False, None, "unknown")
    return JSONResponse({**result, "parsed": {"kind": parsed.kind, "error": parsed.error}})


async def list_schemes(request: Request) -> Response:
    return JSONResponse({"schemes": scheme_list()})


async def delete_capture(request: Request) -> Response:
    capture_id = request.path_params["id"]
    if not await store_of(request).delete_capture(capture_id):
        raise ApiError(404, f"no capture with id {capture_id!r}")
    return JSONResponse({"ok": True, "id": capture_id})


async def healthz(request: Request) -> Response:
    return JSONResponse({"ok": True, "version": __version__})
