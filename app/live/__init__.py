"""Live fan-out: committed captures to the streams and long-polls watching their endpoint.

The routes see only these protocols. The capture path publishes (`Publisher`), after the commit
and without ever waiting; the stream and wait routes subscribe (`Hub`). Events are small and the
store is the source of truth: a subscription that falls behind is dropped, and its client resumes
from the store with Last-Event-ID. The hub is live.local's, in each process; with PostgreSQL, the
store hears of other processes' captures (LISTEN/NOTIFY) and the app publishes them to it too.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Any, Protocol

# A stream is never silent longer than this (docs/api.md), so proxies keep it open.
KEEPALIVE_S = 15.0
KEEPALIVE = b": keep-alive\n\n"
MAX_SUBSCRIBERS_PER_ENDPOINT = 5000  # live streams and long-polls of one endpoint together


def sse_frame(seq: int, data: str) -> bytes:
    """One `capture` event as Server-Sent Events bytes (`data` is one line of JSON). Encoded
    once per capture, not once per viewer: with a thousand viewers that is the difference."""
    return b"event: capture\nid: %d\ndata: %s\n\n" % (seq, data.encode())


def delivery_frame(summary: dict[str, Any]) -> bytes:
    """A `delivery` event: a forwarding attempt recorded on one of the endpoint's captures
    (hookscope.models.delivery_summary)."""
    return b"event: delivery\ndata: %s\n\n" % json.dumps(summary).encode()


# One item of a subscription: (seq, the `capture` event's SSE frame), or (None, a keep-alive
# comment) for a quiet live stream.
Item = tuple[int | None, bytes]


class Publisher(Protocol):
    def wanted(self, endpoint_id: int) -> bool:
        """Is anyone watching? The capture path skips building the event when not."""
        ...

    def publish(self, endpoint_id: int, seq: int, data: str) -> None:
        """Offer a committed capture's event (`data`: one line of JSON) to its watchers."""
        ...

    def publish_event(self, endpoint_id: int, frame: bytes) -> None:
        """Offer another event (a delivery: `delivery_frame`), without an id: it does not move
        a stream's Last-Event-ID, and a stream that resumes does not get it again."""
        ...


class Subscription(Protocol):
    """One stream's or long-poll's view of an endpoint's new captures."""

    @property
    def dropped(self) -> bool:
        """Ended: too slow, its client left, or the server is stopping. Nothing more comes."""
        ...

    def pop(self) -> Item | None:
        """The oldest item waiting, or None when none is."""
        ...

    def changed(self) -> Awaitable[None]:
        """Settles when an item arrives or the subscription is dropped: await it once `pop`
        returned None."""
        ...

    async def get(self, timeout: float) -> Item | None:
        """The next item, or None when `timeout` seconds pass first; StopAsyncIteration once
        dropped."""
        ...

    def skip_waiting(self) -> None:
        """Forget what is waiting (a long-poll looks in the store instead, once for all)."""

    def drop(self) -> None: ...
    def close(self) -> None: ...


class Hub(Publisher, Protocol):
    @property
    def closed(self) -> bool:
        """Stopping: new subscriptions start dropped, so nothing holds the server's exit."""
        ...

    def open(self) -> None:
        """Accept subscriptions (an app started again after a shutdown streams again)."""

    def subscribe(self, endpoint_id: int, *, keepalive: bool = False) -> Subscription:
        """A new subscription; with `keepalive`, it is offered a keep-alive comment when quiet,
        so a live stream is never silent longer than the hub's limit."""
        ...

    async def ready(self, endpoint_id: int) -> None:
        """Returns once a capture of the endpoint committed from now on reaches its new
        subscriptions, wherever it is taken: a stream or long-poll reads the store only after
        this."""

    def count(self, endpoint_id: int | None = None) -> int: ...

    def close_endpoint(self, endpoint_id: int) -> None:
        """End the subscriptions of a deleted endpoint (their reconnect then gets a 404)."""

    def close(self) -> None:
        """End every subscription (shutdown)."""
