"""The JSON API's endpoint routes: create, list, read, change, delete, and the endpoint's captures
(listed, long-polled with `wait`, cleared). The page, the CLI and the pytest plugin use them too."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from hookscope.errors import ApiError
from hookscope.formats import documents_of
from hookscope.ingest.parse import MAX_JSON_BYTES, parse_body
from hookscope.models import Capture, Endpoint, now_us
from hookscope.ops import groups
from hookscope.ops.forward import refused_target, sub_path
from hookscope.ops.infer import DEFAULT_LIMIT, MAX_LIMIT, Options, infer
from hookscope.ops.schemadiff import diff_schemas
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
SCHEMA_PARAMS = ("limit", "path", "since", "group_by", "enum", "additional_properties",
                 "against")
# What inference reads of bodies in all: past it, the captures read so far are the samples.
MAX_SAMPLE_BYTES = 64 * 1024 * 1024
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
    _known_params(request, CAPTURE_LIST_PARAMS)
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


async def endpoint_schema(request: Request) -> Response:
    """A contract (JSON Schema) inferred from the endpoint's newest captures, one sub-schema per
    event type (hookscope.ops.infer); with `against=pinned`, what changed between the
    endpoint's own schema and it (hookscope.ops.schemadiff)."""
    endpoint = await endpoint_or_404(request)
    _known_params(request, SCHEMA_PARAMS)
    limit = number_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT) or DEFAULT_LIMIT
    path = request.query_params.get("path") or None
    if path is not None and not path.startswith("/"):
        raise ApiError(400, f"path must be a sub-path starting with '/', got {path!r}",
                       details=[{"field": "path", "message": "a sub-path such as /github"}])
    since = _moment_param(request, "since")
    against = choice_param(request, "against", ("pinned",))
    group_by = request.query_params.get("group_by") or None
    if against and endpoint.schema is None:
        raise ApiError(409, "the endpoint has no schema pinned to compare with; pin one first "
                            "(hookscope schema pin, or PATCH its schema)")
    if group_by is None and against and endpoint.schema is not None:
        meta = endpoint.schema.get("x-hookscope")
        pinned_by = meta.get("group_by") if isinstance(meta, dict) else None
        group_by = pinned_by if isinstance(pinned_by, str) else None  # pair the same groups
    try:
        group_by = groups.check(group_by or "auto")
    except ValueError as exc:
        raise ApiError(400, str(exc), details=[{"field": "group_by", "message": str(exc)}]
                       ) from None
    options = Options(group_by=group_by, enums=_flag_param(request, "enum"),
                      additional_properties=_flag_param(request, "additional_properties"))
    captures, notes = await _newest_bodies(request, endpoint, limit, path, since)
    result = await asyncio.to_thread(_infer_from, captures, options)
    result["notes"] = notes + result.pop("notes")
    if against:
        if result["samples"] == 0:
            result["notes"].append("no capture read had a JSON document: nothing to compare")
            compared = diff_schemas({}, {})
        else:
            compared = diff_schemas(endpoint.schema, result["schema"])
        result = {"against": against, **compared, **result}
    return JSONResponse(result)


def _known_params(request: Request, known: tuple[str, ...]) -> None:
    unknown = [name for name in request.query_params if name not in known]
    if unknown:
        raise ApiError(400, f"unknown parameter {unknown[0]!r}; known: {', '.join(known)}",
                       details=[{"field": name, "message": "unknown parameter"}
                                for name in unknown])


def _flag_param(request: Request, name: str) -> bool:
    return choice_param(request, name, ("true", "false")) == "true"


def _moment_param(request: Request, name: str) -> int | None:
    """An ISO 8601 date-time parameter as microseconds (UTC when it has no offset)."""
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an ISO 8601 date-time such as "
                            f"'2026-11-22T10:00:00Z', got {raw!r}",
                       details=[{"field": name, "message": "an ISO 8601 date-time"}]) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000)


async def _newest_bodies(request: Request, endpoint: Endpoint, limit: int, path: str | None,
                         since: int | None) -> tuple[list[Capture], list[str]]:
    """The newest `limit` captures (received at or after `since`), those under the sub-path
    `path` kept, with their bodies. Read a page of summaries at a time, newest first; a body
    too large to be parsed is not loaded."""
    store = store_of(request)
    found: list[Capture] = []
    notes: list[str] = []
    read = loaded = 0
    before: int | None = None
    while read < limit:
        page = await store.list_captures(endpoint, CaptureQuery(before=before,
                                                                limit=min(500, limit - read)))
        if not page:
            break
        before = page[-1].seq
        for summary in page:
            if since is not None and summary.received_at < since:
                return found, notes
            read += 1
            tail = sub_path(summary.path) or "/"
            if path is not None and tail != path and not tail.startswith(path.rstrip("/") + "/"):
                continue
            if summary.body_size == 0 or summary.body_size > MAX_JSON_BYTES:
                found.append(summary)  # counted, without a document
                continue
            if loaded + summary.body_size > MAX_SAMPLE_BYTES:
                notes.append(f"stopped after {len(found)} captures: their bodies reached "
                             f"{MAX_SAMPLE_BYTES >> 20} MiB")
                return found, notes
            capture = await store.get_capture(summary.id)
            if capture is not None:
                loaded += summary.body_size
                found.append(capture)
    return found, notes


def _infer_from(captures: list[Capture], options: Options) -> dict[str, Any]:
    """Parse each capture's body as the capture path does and infer from its documents (run in
    a thread: parsing and merging grow with the samples)."""
    samples: list[groups.Sample] = []
    without = 0
    for capture in captures:
        documents = None
        if capture.body:
            documents = documents_of(parse_body(capture.body, capture.content_type))
        if not documents:
            without += 1
            continue
        samples += [groups.Sample(capture.headers, capture.path, document)
                    for _, document in documents]
    result = infer(samples, options)
    result["captures"] = len(captures)
    result["notes"] = ([f"{without} of {len(captures)} captures had no JSON document (an empty, "
                        "text, binary or unparsable body) and are not among the samples"]
                       if without else [])
    return result
