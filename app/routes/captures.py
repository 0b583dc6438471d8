"""The JSON API's capture routes: one capture, its body, export, diff, replay, re-verification,
deliveries and delete."""

from __future__ import annotations

import re
from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from hookscope.errors import ApiError
from hookscope.ingest.capture import signed_request
from hookscope.ingest.offload import BUDGET_EXCEEDED
from hookscope.ingest.parse import media_type
from hookscope.models import Capture, format_time, now_us
from hookscope.ops import diff, export
from hookscope.ops.forward import check_delivery_fields, new_delivery_id
from hookscope.ops.replay import check_replay_fields, replay
from hookscope.responses import JSONResponse
from hookscope.routes.common import (
    base_url,
    choice_param,
    hub_of,
    keep_delivery,
    offload_of,
    read_json,
    store_of,
)
from hookscope.verify import check_signature

# Where a browser would run what it loads: a sender's body must never be loaded there from
# Hookscope's origin (a Content-Security-Policy on the body itself does not stop a script).
_RUNNABLE_DESTINATIONS = frozenset({"script", "style", "worker", "sharedworker", "serviceworker",
                                    "audioworklet", "paintworklet", "xslt"})
# Types a browser would run as a script or style sheet: served as text/plain instead.
_RUNNABLE_TYPE = re.compile(r"(java|ecma|j|live)script|/css|wasm|xslt?\b", re.IGNORECASE)


async def _capture_or_404(request: Request, param: str = "id") -> Capture:
    capture_id = request.path_params[param]
    capture = await store_of(request).get_capture(capture_id)
    if capture is None:
        raise ApiError(404, f"no capture with id {capture_id!r}")
    return capture


async def get_capture(request: Request) -> Response:
    capture = await _capture_or_404(request)
    view = await full_view(request, capture)
    view["deliveries"] = await store_of(request).list_deliveries(capture.id)
    return JSONResponse(view)


async def record_delivery(request: Request) -> Response:
    """A forwarding attempt reported by whoever made it (`hookscope listen`): stored on the
    capture and shown to its viewers."""
    capture = await _capture_or_404(request)
    fields = check_delivery_fields(await read_json(request))
    delivery = {"id": new_delivery_id(), "capture": capture.id, "seq": capture.seq,
                "at": format_time(now_us()), **fields}
    if not await keep_delivery(store_of(request), hub_of(request), capture, delivery):
        raise ApiError(404, f"capture {capture.id!r} was deleted meanwhile")
    return JSONResponse(delivery, status_code=201)


async def full_view(request: Request, capture: Capture) -> dict[str, Any]:
    """The capture in full; a large body's view is made off the event loop, and shown unparsed
    when that runs out of budget (hookscope.ingest.offload)."""
    try:
        return await offload_of(request).run(len(capture.body or b""),
                                             partial(capture.as_json, full=True))
    except TimeoutError:
        return capture.as_json(full=True, parse=False)


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
        name = f"{capture.id}.{extension(capture.content_type)}"
        headers["content-disposition"] = f'attachment; filename="{name}"'
    return Response(capture.body, headers=headers)


# Download names: what a person's tools open by extension. Anything else is .bin.
_EXTENSIONS = {"application/json": "json", "application/x-ndjson": "ndjson",
               "application/ndjson": "ndjson", "application/xml": "xml", "text/xml": "xml",
               "application/x-www-form-urlencoded": "txt", "multipart/form-data": "txt",
               "text/plain": "txt", "text/html": "html", "text/csv": "csv",
               "application/pdf": "pdf", "image/png": "png", "image/jpeg": "jpg",
               "image/gif": "gif", "application/zip": "zip", "application/gzip": "gz"}


def extension(content_type: str | None) -> str:
    """The file extension of a body of this Content-Type: `json` for application/json and any
    +json type, `xml` for +xml, `bin` when unknown."""
    kind = media_type(content_type)
    if kind in _EXTENSIONS:
        return _EXTENSIONS[kind]
    if kind.endswith("+json"):
        return "json"
    if kind.endswith("+xml"):
        return "xml"
    return "bin"


async def export_capture(request: Request) -> Response:
    kind = choice_param(request, "as", export.FORMATS, required=True)
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
        return JSONResponse(await offload_of(request).run(len(a.body or b"") + len(b.body or b""),
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


async def delete_capture(request: Request) -> Response:
    capture_id = request.path_params["id"]
    if not await store_of(request).delete_capture(capture_id):
        raise ApiError(404, f"no capture with id {capture_id!r}")
    return JSONResponse({"ok": True, "id": capture_id})
