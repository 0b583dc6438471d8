"""The JSON API's endpoint routes: create, list, read, change, delete, and the endpoint's captures
(listed, long-polled with `wait`, cleared). The page, the CLI and the pytest plugin use them too."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from hookscope.errors import ApiError
from hookscope.models import Capture, Endpoint, now_us
from hookscope.ops.forward import refused_target
from hookscope.responses import JSONResponse
from hookscope.routes.common import (
    base_url,
    check_room,
    choice_param,
    conflict,
    disconnected,
    endpoint_or_404,
    hub_of,
    number_param,
    read_json,
    settings_of,
    store_of,
)
from hookscope.routes.fields import check_endpoint_fields
from hookscope.storage import CaptureQuery, Conflict, Gone

SIGNATURE_STATUSES = ("verified", "failed", "missing", "unchecked")
VALIDATION_STATUSES = ("valid", "invalid", "unknown")
CAPTURE_LIST_PARAMS = ("method", "signature", "validation", "format", "q", "before", "after",
                       "limit", "wait")
MAX_WAIT_S = 60


async def create_endpoint(request: Request) -> Response:
    settings = settings_of(request)
    fields = check_endpoint_fields(await read_json(request),
                                   default_max_captures=settings.default_max_captures,
                                   default_max_bytes=settings.default_max_bytes)
    await _check_forward_target(request, fields)
    fields["created_at"] = now_us()
    if settings.default_ttl and "expires_at" not in fields:
        fields["expires_at"] = fields["created_at"] + settings.default_ttl * 1_000_000
    try:
        endpoint = await store_of(request).create_endpoint(fields)
    except Conflict as exc:
        raise conflict(exc) from None
    return JSONResponse(endpoint.as_json(base_url(request)), status_code=201)


async def list_endpoints(request: Request) -> Response:
    limit = number_param(request, "limit", 100, 1, 1000) or 100
    endpoints = await store_of(request).list_endpoints(limit)
    base = base_url(request)
    return JSONResponse({"endpoints": [e.as_json(base) for e in endpoints]})


async def get_endpoint(request: Request) -> Response:
    endpoint = await endpoint_or_404(request)
    return JSONResponse(endpoint.as_json(base_url(request)))


async def update_endpoint(request: Request) -> Response:
    endpoint = await endpoint_or_404(request)
    fields = check_endpoint_fields(await read_json(request), current=endpoint)
    await _check_forward_target(request, fields)
    try:
        updated = await store_of(request).update_endpoint(endpoint, fields)
    except Conflict as exc:
        raise conflict(exc) from None
    except Gone:
        raise ApiError(404, "the endpoint was deleted meanwhile") from None
    return JSONResponse(updated.as_json(base_url(request)))


async def _check_forward_target(request: Request, fields: dict[str, Any]) -> None:
    """A 422 for a `forward` URL the target policy refuses outright: nothing could ever be
    delivered there. Each attempt is checked again when it is made."""
    forward = fields.get("forward")
    if forward is None:
        return
    reason = await refused_target(forward["url"], request.app.state.replay_policy)
    if reason is not None:
        raise ApiError(422, reason, details=[{"field": "forward.url", "message": reason}])


async def delete_endpoint(request: Request) -> Response:
    endpoint = await endpoint_or_404(request)
    deleted = await store_of(request).delete_endpoint(endpoint)
    hub_of(request).close_endpoint(endpoint.id)
    return JSONResponse({"ok": True, "token": endpoint.token, "captures_deleted": deleted})


async def list_captures(request: Request) -> Response:
    endpoint = await endpoint_or_404(request)
    unknown = [name for name in request.query_params if name not in CAPTURE_LIST_PARAMS]
    if unknown:
        raise ApiError(400, f"unknown parameter {unknown[0]!r}; known: "
                            f"{', '.join(CAPTURE_LIST_PARAMS)}",
                       details=[{"field": name, "message": "unknown parameter"}
                                for name in unknown])
    method = request.query_params.get("method") or None
    wait = number_param(request, "wait", None, 0, MAX_WAIT_S, kind=float,
                         what="a number of seconds")
    after = number_param(request, "after", None, 0)
    query = CaptureQuery(
        method=method.upper() if method else None,
        signature=choice_param(request, "signature", SIGNATURE_STATUSES),
        validation=choice_param(request, "validation", VALIDATION_STATUSES),
        format=request.query_params.get("format") or None,
        q=request.query_params.get("q") or None,
        before=number_param(request, "before", None, 0),
        # A long-poll walks forward from the start unless told otherwise: a capture that
        # arrived before the wait began is still found (docs/api.md: race-free by construction).
        after=0 if after is None and wait is not None else after,
        limit=number_param(request, "limit", 50, 1, 1000) or 50,
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
    store, hub = store_of(request), hub_of(request)
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


async def clear_captures(request: Request) -> Response:
    endpoint = await endpoint_or_404(request)
    deleted = await store_of(request).clear_captures(endpoint)
    return JSONResponse({"ok": True, "captures_deleted": deleted})
