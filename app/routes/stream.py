"""GET /api/endpoints/{key}/stream: Server-Sent Events, one `capture` event per new capture.

Resume without gap or duplicate: subscribe to the hub first, then replay from the store every
capture after the client's Last-Event-ID (or ?after=), then pass on live events, skipping any
the replay already sent. The event id is the capture's sequence number, so a browser's
EventSource resumes by itself after a drop. Without either, the stream starts with what arrives
next.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from sse_starlette.sse import EventSourceResponse
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from hookscope.errors import ApiError
from hookscope.live import Hub, Subscription, sse_frame
from hookscope.models import Endpoint
from hookscope.routes.common import check_room, disconnected, endpoint_or_404, hub_of, store_of
from hookscope.storage import CaptureQuery, Store

REPLAY_PAGE = 500


class _EventStream(EventSourceResponse):
    """sse-starlette's response (its headers, and HEAD answered without a stream), with a
    leaner run for the stream itself.

    The library runs every stream as an anyio task group of three tasks (the events, the
    client's disconnect, the server's exit signal) and opens a cancel scope around every send.
    With a thousand viewers those objects are most of what each viewer costs, and a full
    garbage collection over them is what stalls the event loop (bench/stream). Here the
    request's own task sends the events and one small task waits for the disconnect; the exit
    signal is the hub's: shutdown drops every subscription (app/server.py), which ends the loop.
    """

    def __init__(self, store: Store, hub: Hub, endpoint: Endpoint, resume: int | None) -> None:
        super().__init__(_no_events(), ping=0, headers={"Cache-Control": "no-store"})
        self.store, self.hub, self.endpoint, self.resume = store, hub, endpoint, resume

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "HEAD":
            await super().__call__(scope, receive, send)
            return
        # Subscribed here, where the `finally` below is sure to run.
        subscription = self.hub.subscribe(self.endpoint.id, keepalive=True)
        gone = asyncio.ensure_future(disconnected(receive))
        gone.add_done_callback(lambda _: subscription.drop())  # which ends _events
        try:
            await send({"type": "http.response.start", "status": self.status_code,
                        "headers": self.raw_headers})
            await self._events(subscription, send)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            gone.cancel()
            subscription.close()

    async def _events(self, subscription: Subscription, send: Send) -> None:
        await self.hub.ready(self.endpoint.id)
        # Looked up once subscribed: an endpoint deleted before that has no one to end us.
        last = await _last_seq(self.store, self.endpoint)
        if last is None:
            return
        sent = last if self.resume is None else self.resume
        sent = await self._replay(sent, send, subscription)
        while True:
            while (item := subscription.pop()) is not None:
                seq, frame = item
                if seq is not None and seq > sent + 1:
                    # An event can overtake an earlier one: from another process, or a commit
                    # on the writer thread resolved after a later one. Every smaller seq is
                    # committed by now, so the store has them (or they are gone).
                    sent = await self._replay(sent, send, subscription)
                if seq is None or seq > sent:  # a keep-alive, or a frame encoded once for all
                    await send({"type": "http.response.body", "body": frame, "more_body": True})
                    if seq is not None:
                        sent = seq
            if subscription.dropped:
                # Too slow, the client left, or shutting down: the client resumes from `sent`.
                return
            await subscription.changed()

    async def _replay(self, sent: int, send: Send, subscription: Subscription) -> int:
        """Send what the store has after `sent`; the last seq sent."""
        while not subscription.dropped:  # the client may leave, or the server stop, mid-replay
            page = await self.store.list_captures(self.endpoint, CaptureQuery(after=sent,
                                                                              limit=REPLAY_PAGE))
            for capture in page:
                frame = sse_frame(capture.seq, json.dumps(capture.as_json(full=False)))
                await send({"type": "http.response.body", "body": frame, "more_body": True})
                sent = capture.seq
            if len(page) < REPLAY_PAGE:
                break
        return sent


async def _no_events() -> AsyncIterator[bytes]:
    events: tuple[bytes, ...] = ()  # an async generator that yields nothing (HEAD)
    for event in events:
        yield event


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


async def _last_seq(store: Store, endpoint: Endpoint) -> int | None:
    """The endpoint's newest sequence number now, or None when it was deleted meanwhile (in a
    function of its own so the fresh copy is not held by the stream for its lifetime)."""
    current = await store.get_endpoint(endpoint.token)
    return None if current is None else current.last_seq


async def stream(request: Request) -> Response:
    endpoint = await endpoint_or_404(request)
    resume = _resume_point(request)
    hub = hub_of(request)
    check_room(hub, endpoint)
    return _EventStream(store_of(request), hub, endpoint, resume)


class StreamEndpoint:
    """The route's endpoint as a plain ASGI app (Starlette calls an instance as is), so each
    event a stream sends skips request_response's exception wrapper around `send`. Errors
    raised before the stream starts still reach the app's handlers (the error shape)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await stream(Request(scope, receive))
        await response(scope, receive, send)
