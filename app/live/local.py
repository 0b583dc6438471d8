"""The in-process hub (the Hub protocol of hookscope.live): fan-out in memory.

Each subscriber has a bounded queue, and one that cannot keep up is dropped rather than allowed
to slow or fail a capture. A dropped subscriber's stream ends; the client reconnects with
Last-Event-ID and the store, which is the source of truth, replays what it missed.
"""

from __future__ import annotations

import asyncio
from collections import deque

from hookscope.live import KEEPALIVE, KEEPALIVE_S, Item, sse_frame

QUEUE_SIZE = 256


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class LocalSubscription:
    """One stream's view of an endpoint's new captures: (seq, SSE frame) pairs, at most `size`
    waiting, and (None, comment) keep-alives for a quiet stream (`keepalive=True`).

    A deque and a bare future rather than an asyncio.Queue, and one keep-alive timer for the
    whole hub rather than one per wait: a thousand idle viewers hold a thousand of these, and
    what each wait allocates is still alive at the next young collection, so it ends up among
    the old objects and brings the next full collection closer (bench/stream)."""

    __slots__ = ("dropped", "endpoint_id", "hub", "items", "keepalive", "quiet", "size",
                 "waiter")

    def __init__(self, hub: LocalHub, endpoint_id: int, size: int, keepalive: bool) -> None:
        self.hub = hub
        self.endpoint_id = endpoint_id
        self.size = size
        self.keepalive = keepalive
        self.quiet = False  # nothing offered since the hub's last keep-alive tick
        self.items: deque[Item] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.dropped = False

    def offer(self, item: Item) -> None:
        if self.dropped:
            return
        if len(self.items) >= self.size:
            self.drop()
            return
        self.items.append(item)
        self.quiet = False
        self._wake()

    def drop(self) -> None:
        """End this subscription: it was too slow, its client left, or the server is shutting
        down. Whatever was waiting is discarded; the client resumes from the store."""
        self.dropped = True
        self.hub.unsubscribe(self)
        self.items.clear()
        self._wake()

    def _wake(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def changed(self) -> asyncio.Future[None]:
        """A future that settles when an item arrives or this subscription is dropped: await it
        when `items` is empty. A future, not a coroutine, so a wait allocates one object."""
        waiter = self.waiter
        if waiter is None or waiter.done():
            self.waiter = waiter = asyncio.get_running_loop().create_future()
        return waiter

    def pop(self) -> Item | None:
        return self.items.popleft() if self.items else None

    def skip_waiting(self) -> None:
        """Forget what is waiting (a long-poll looks in the store instead, once for all)."""
        self.items.clear()

    def __aiter__(self) -> LocalSubscription:
        return self

    async def __anext__(self) -> Item:
        while not self.items:
            if self.dropped:
                raise StopAsyncIteration
            await self.changed()
        return self.items.popleft()

    async def get(self, timeout: float) -> Item | None:
        """The next item, or None when `timeout` seconds pass first (a long-poll's deadline).
        StopAsyncIteration once dropped."""
        if not self.items:
            if self.dropped:
                raise StopAsyncIteration
            waiter = self.changed()
            timer = asyncio.get_running_loop().call_later(timeout, _settle, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
            if not self.items:
                if self.dropped:
                    raise StopAsyncIteration
                return None
        return self.items.popleft()

    def close(self) -> None:
        self.hub.unsubscribe(self)


class LocalHub:
    def __init__(self, queue_size: int = QUEUE_SIZE, keepalive_s: float = KEEPALIVE_S) -> None:
        self.queue_size = queue_size
        self.keepalive_s = keepalive_s
        self._subscribers: dict[int, set[LocalSubscription]] = {}
        self._timer: asyncio.TimerHandle | None = None  # the keep-alive ticker
        self._timer_loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    def open(self) -> None:
        self.closed = False

    def subscribe(self, endpoint_id: int, *, keepalive: bool = False) -> LocalSubscription:
        """A new subscription; with `keepalive`, it is offered a (None, comment) item whenever
        a whole tick (half of `keepalive_s`) passes without anything else offered, so it is
        never silent for longer than `keepalive_s` (a live stream)."""
        subscription = LocalSubscription(self, endpoint_id, self.queue_size, keepalive)
        if self.closed:  # shutting down: a stream or wait that starts now ends at once
            subscription.dropped = True
            return subscription
        self._subscribers.setdefault(endpoint_id, set()).add(subscription)
        if keepalive:
            loop = asyncio.get_running_loop()
            if self._timer is None or self._timer_loop is not loop:
                self._schedule_tick(loop)
        return subscription

    def _schedule_tick(self, loop: asyncio.AbstractEventLoop | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_loop = loop
        # A tick of half the limit: a stream last offered something just after one tick is
        # found quiet at the next and gets its comment at the one after, within the limit.
        self._timer = loop.call_later(self.keepalive_s / 2, self._tick) if loop else None

    def _tick(self) -> None:
        """One timer for every stream: each that was quiet for a whole tick gets a comment."""
        streams = [s for subscribers in self._subscribers.values() for s in subscribers
                   if s.keepalive]
        for subscription in streams:
            if subscription.quiet:
                subscription.offer((None, KEEPALIVE))
            subscription.quiet = True
        self._timer = None
        self._schedule_tick(self._timer_loop if streams else None)

    def unsubscribe(self, subscription: LocalSubscription) -> None:
        subscribers = self._subscribers.get(subscription.endpoint_id)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[subscription.endpoint_id]

    async def ready(self, endpoint_id: int) -> None:
        """Returns once a capture of the endpoint committed from now on reaches its new
        subscriptions, wherever it is taken: a stream or long-poll looks in the store only
        after this. At once: this hub hears of every capture committed after a subscription,
        here at once and from other processes through the store, which publishes only after
        the commit the stream's look in the store would see."""

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

    def publish_event(self, endpoint_id: int, frame: bytes) -> None:
        for subscription in list(self._subscribers.get(endpoint_id, ())):
            subscription.offer((None, frame))

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
        self._schedule_tick(None)
        for subscribers in list(self._subscribers.values()):
            for subscription in list(subscribers):
                subscription.drop()
