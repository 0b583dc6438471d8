"""Live fan-out of new captures to stream subscribers, in memory.

The capture path only publishes (the `Publisher` protocol), after the commit and without ever
waiting: each subscriber has a bounded queue, and one that cannot keep up is dropped rather than
allowed to slow or fail a capture. A dropped subscriber's stream ends; the client reconnects with
Last-Event-ID and the store, which is the source of truth, replays what it missed. A Redis or
LISTEN/NOTIFY hub would be one more class with these methods.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Protocol

QUEUE_SIZE = 256
_CLOSED = object()


class Publisher(Protocol):
    def wanted(self, endpoint_id: int) -> bool: ...
    def publish(self, endpoint_id: int, seq: int, data: str) -> None: ...


def sse_frame(seq: int, data: str) -> bytes:
    """One `capture` event as Server-Sent Events bytes (`data` is one line of JSON). Encoded
    once per capture, not once per viewer: with a thousand viewers that is the difference."""
    return b"event: capture\nid: %d\ndata: %s\n\n" % (seq, data.encode())


class Subscription:
    """One stream's view of an endpoint's new captures: (seq, SSE frame) pairs."""

    def __init__(self, hub: Hub, endpoint_id: int, size: int) -> None:
        self.hub = hub
        self.endpoint_id = endpoint_id
        self.queue: asyncio.Queue[object] = asyncio.Queue(maxsize=size)
        self.dropped = False

    def offer(self, item: tuple[int, bytes]) -> None:
        if self.dropped:
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.drop()

    def drop(self) -> None:
        """End this subscription: it was too slow, or the server is shutting down."""
        self.dropped = True
        self.hub.unsubscribe(self)
        while True:  # make room for the end marker
            try:
                self.queue.get_nowait()
            except asyncio.QueueEmpty:
                break
        self.queue.put_nowait(_CLOSED)

    async def __aiter__(self) -> AsyncIterator[tuple[int, bytes]]:
        while True:
            item = await self.queue.get()
            if item is _CLOSED:
                return
            yield item  # type: ignore[misc]

    def close(self) -> None:
        self.hub.unsubscribe(self)


class Hub:
    def __init__(self, queue_size: int = QUEUE_SIZE) -> None:
        self.queue_size = queue_size
        self._subscribers: dict[int, set[Subscription]] = {}

    def subscribe(self, endpoint_id: int) -> Subscription:
        subscription = Subscription(self, endpoint_id, self.queue_size)
        self._subscribers.setdefault(endpoint_id, set()).add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscribers = self._subscribers.get(subscription.endpoint_id)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[subscription.endpoint_id]

    def wanted(self, endpoint_id: int) -> bool:
        """Is anyone watching? The capture path skips building the event when not."""
        return endpoint_id in self._subscribers

    def publish(self, endpoint_id: int, seq: int, data: str) -> None:
        subscribers = self._subscribers.get(endpoint_id)
        if not subscribers:
            return
        item = (seq, sse_frame(seq, data))
        for subscription in list(subscribers):
            subscription.offer(item)

    def count(self, endpoint_id: int | None = None) -> int:
        if endpoint_id is not None:
            return len(self._subscribers.get(endpoint_id, ()))
        return sum(len(s) for s in self._subscribers.values())

    def close_endpoint(self, endpoint_id: int) -> None:
        """End the streams of a deleted endpoint (their reconnect then gets a 404)."""
        for subscription in list(self._subscribers.get(endpoint_id, ())):
            subscription.drop()

    def close(self) -> None:
        """End every stream (shutdown), so no open stream holds the server's exit."""
        for subscribers in list(self._subscribers.values()):
            for subscription in list(subscribers):
                subscription.drop()
