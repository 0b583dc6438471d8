"""What the API routes share: the app's parts from a request, bounded JSON bodies, checked
query parameters, an endpoint by key or a 404."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.types import Receive

from hookscope.errors import ApiError
from hookscope.ingest.offload import Offload
from hookscope.ingest.parse import loads_strict
from hookscope.live import MAX_SUBSCRIBERS_PER_ENDPOINT, Hub, Publisher, delivery_frame
from hookscope.models import Capture, Endpoint, delivery_summary
from hookscope.settings import Settings
from hookscope.storage import Conflict, Store

MAX_JSON_BODY = 2 * 1024 * 1024


def store_of(request: Request) -> Store:
    return request.app.state.store  # type: ignore[no-any-return]


def hub_of(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


def settings_of(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def base_url(request: Request) -> str:
    return (settings_of(request).public_url or str(request.base_url)).rstrip("/")


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


def conflict(exc: Conflict) -> ApiError:
    return ApiError(409, str(exc), details=[{"field": exc.field, "message": str(exc)}])


async def endpoint_or_404(request: Request) -> Endpoint:
    key = request.path_params["key"]
    endpoint = await store_of(request).get_endpoint(key)
    if endpoint is None:
        raise ApiError(404, f"no endpoint with token or alias {key!r}")
    return endpoint


def number_param(request: Request, name: str, default: int | None, low: int,
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


def choice_param(request: Request, name: str, choices: tuple[str, ...], *,
                 required: bool = False) -> str | None:
    value = request.query_params.get(name) or None
    if value in choices or (value is None and not required):
        return value
    given = " (it is required)" if value is None else f", got {value!r}"
    raise ApiError(400, f"{name} must be one of {', '.join(choices)}{given}",
                   details=[{"field": name, "message": f"one of {', '.join(choices)}"}])


def check_room(hub: Hub, endpoint: Endpoint) -> None:
    """Refuse one more live stream or long-poll of an endpoint that has its fill of them."""
    if hub.count(endpoint.id) >= MAX_SUBSCRIBERS_PER_ENDPOINT:
        raise ApiError(429, f"this endpoint already has {MAX_SUBSCRIBERS_PER_ENDPOINT} open "
                            "streams and waits")


async def disconnected(receive: Receive) -> None:
    """Returns when the client hangs up (the request body, if any, is consumed first)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def offload_of(request: Request) -> Offload:
    offload: Offload = request.app.state.offload
    return offload


async def keep_delivery(store: Store, hub: Publisher, capture: Capture,
                        delivery: dict[str, Any]) -> bool:
    """Store a forwarding attempt on its capture and offer it to the capture's viewers; False
    when the capture is gone."""
    if not await store.add_delivery(capture, delivery):
        return False
    hub.publish_event(capture.endpoint_id, delivery_frame(delivery_summary(delivery)))
    return True
