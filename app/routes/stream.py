"""GET /api/endpoints/{key}/stream: Server-Sent Events, one `capture` event per new capture.

Resume without gap or duplicate: subscribe to the hub first, then replay from the store every
capture after the client's Last-Event-ID (or ?after=), then pass on live events, skipping any
the replay already sent. The event id is the capture's sequence number, so a browser's
EventSource resumes by itself after a drop. Without either, the stream starts with what arrives
next.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from sse_starlette.sse import EventSourceResponse
from starlette.requests import Request
from starlette.responses import Response

from app.errors import ApiError
from app.hub import MAX_SUBSCRIBERS_PER_ENDPOINT, Hub, sse_frame
from app.models import Endpoint
from app.routes.api import endpoint_or_404, store_of
from app.store import CaptureQuery, Store

KEEPALIVE_S = 15
KEEPALIVE = b": keep-alive\n\n"
REPLAY_PAGE = 500


class _EventStream(EventSourceResponse):
    """sse-starlette's response, minus the per-send cancel scope it opens even when no send
    timeout is set: with a thousand viewers that scope was a quarter of each event's cost
    (bench/stream). With a timeout set, the library's own path is used unchanged."""

    async def _send_with_timeout(self, send, message) -> None:  # type: ignore[no-untyped-def]
        if self.send_timeout is None:
            await send(message)
        else:
            await super()._send_with_timeout(send, message)


def _resume_point(request: Request) -> int | None:
    for raw, name in ((request.headers.get("last-event-id"), "Last-Event-ID"),
                      (request.query_params.get("after"), "after")):
        if raw is None or raw == "":
            continue
        try:
            value = int(raw)
        except ValueError:
            value = -1
        if not 0 <= value < 2**63:
            raise ApiError(400, f"{name} must be a capture sequence number, got {raw!r}",
                           details=[{"field": name, "message": "a whole number, 0 or more"}])
        return value
    return None


async def _last_seq(store: Store, endpoint: Endpoint) -> int:
    # In a function of its own so the fresh copy is not held by the stream for its lifetime.
    current = await store.get_endpoint(endpoint.token)
    return current.last_seq if current is not None else endpoint.last_seq


async def stream(request: Request) -> Response:
    endpoint = await endpoint_or_404(request)
    resume = _resume_point(request)
    hub: Hub = request.app.state.hub
    store = store_of(request)
    if hub.count(endpoint.id) >= MAX_SUBSCRIBERS_PER_ENDPOINT:
        raise ApiError(429, f"this endpoint already has {MAX_SUBSCRIBERS_PER_ENDPOINT} open "
                            "streams and waits")

    async def events() -> AsyncIterator[bytes]:
        # Subscribed here, where the `finally` below is sure to run: a request whose stream
        # never starts (HEAD) must not leave a subscription behind.
        subscription = hub.subscribe(endpoint.id)
        sent = resume
        try:
            if sent is None:
                sent = await _last_seq(store, endpoint)
            while True:
                page = await store.list_captures(endpoint, CaptureQuery(after=sent,
                                                                        limit=REPLAY_PAGE))
                for capture in page:
                    yield sse_frame(capture.seq, json.dumps(capture.as_json(full=False)))
                    sent = capture.seq
                if len(page) < REPLAY_PAGE:
                    break
            while True:
                try:
                    item = await subscription.get(KEEPALIVE_S)
                except StopAsyncIteration:
                    break
                if item is None:
                    yield KEEPALIVE  # quiet for a while: keep proxies from closing the stream
                elif item[0] > sent:
                    yield item[1]  # already encoded once for every viewer
                    sent = item[0]
            # The hub dropped us (too slow, or shutting down): the client resumes from `sent`.
        finally:
            subscription.close()

    # ping=0: the keep-alive comes from events() above, on the subscription's own timer,
    # rather than from a fifth task per stream (bench/stream: memory and GC time per viewer).
    return _EventStream(events(), ping=0,
                        headers={"Cache-Control": "no-store"})

