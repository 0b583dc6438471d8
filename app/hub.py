"""Live fan-out of new captures to stream subscribers, in memory.

The capture path only publishes (the `Publisher` protocol), after the commit and without ever
waiting: each subscriber has a bounded queue, and one that cannot keep up is dropped rather than
allowed to slow or fail a capture. A dropped subscriber's stream ends; the client reconnects with
Last-Event-ID and the store, which is the source of truth, replays what it missed. A Redis or
LISTEN/NOTIFY hub would be one more class with these methods.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Protocol

QUEUE_SIZE = 256
MAX_SUBSCRIBERS_PER_ENDPOINT = 5000  # live streams and long-polls of one endpoint together


class Publisher(Protocol):
    def wanted(self, endpoint_id: int) -> bool: ...
    def publish(self, endpoint_id: int, seq: int, data: str) -> None: ...


def sse_frame(seq: int, data: str) -> bytes:
    """One `capture` event as Server-Sent Events bytes (`data` is one line of JSON). Encoded
    once per capture, not once per viewer: with a thousand viewers that is the difference."""
    return b"event: capture\nid: %d\ndata: %s\n\n" % (seq, data.encode())


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Subscription:
    """One stream's view of an endpoint's new captures: (seq, SSE frame) pairs, at most `size`
    waiting. A deque and one future rather than an asyncio.Queue: a thousand idle viewers hold
    a thousand of these, and a Queue is four deques and an Event (bench/stream)."""

    __slots__ = ("dropped", "endpoint_id", "hub", "items", "size", "waiter")

    def __init__(self, hub: Hub, endpoint_id: int, size: int) -> None:
        self.hub = hub
        self.endpoint_id = endpoint_id
        self.size = size
        self.items: deque[tuple[int, bytes]] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.dropped = False

    def offer(self, item: tuple[int, bytes]) -> None:
        if self.dropped:
            return
        if len(self.items) >= self.size:
            self.drop()
            return
        self.items.append(item)
        self._wake()

    def drop(self) -> None:
        """End this subscription: it was too slow, or the server is shutting down. Whatever
        was waiting is discarded; the stream ends and the client resumes from the store."""
        self.dropped = True
        self.hub.unsubscribe(self)
        self.items.clear()
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def skip_waiting(self) -> None:
        """Forget what is waiting (a long-poll looks in the store instead, once for all)."""
        self.items.clear()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> tuple[int, bytes]:
        while (item := await self.get()) is None:
            pass
        return item

    async def get(self, timeout: float | None = None) -> tuple[int, bytes] | None:
        """The next (seq, frame); None when `timeout` seconds pass first (a timer, not a task:
        a thousand idle streams wait on a thousand of these). StopAsyncIteration once dropped."""
        if not self.items:
            if self.dropped:
                raise StopAsyncIteration
            loop = asyncio.get_running_loop()
            self.waiter = waiter = loop.create_future()
            timer = loop.call_later(timeout, _settle, waiter) if timeout else None
            try:
                await waiter
            finally:
                self.waiter = None
                if timer is not None:
                    timer.cancel()
            if not self.items:
                if self.dropped:
                    raise StopAsyncIteration
                return None
        return self.items.popleft()

    def close(self) -> None:
        self.hub.unsubscribe(self)


class Hub:
    def __init__(self, queue_size: int = QUEUE_SIZE) -> None:
        self.queue_size = queue_size
        self._subscribers: dict[int, set[Subscription]] = {}
        self.closed = False

    def subscribe(self, endpoint_id: int) -> Subscription:
        subscription = Subscription(self, endpoint_id, self.queue_size)
        if self.closed:  # shutting down: a stream or wait that starts now ends at once
            subscription.dropped = True
            return subscription
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
        self.closed = True
        for subscribers in list(self._subscribers.values()):
            for subscription in list(subscribers):
                subscription.drop()
