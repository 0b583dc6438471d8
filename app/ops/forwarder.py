"""The server's forwarding of an endpoint's `forward`: each capture, once committed, sent on to
the endpoint's URL as hookscope.ops.forward sends it, every attempt recorded as a delivery by
"server". Queued after the commit, so the sender's answer never waits for it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from hookscope.models import Capture
from hookscope.ops.forward import MAX_ERROR, attempt, backoff, delivery_record, forward_url
from hookscope.ops.replay import TargetPolicy

log = logging.getLogger("hookscope.forward")

# Who the server's own deliveries are by.
SERVER = "server"
# What may wait to be forwarded: so many captures per endpoint, so many bytes of bodies in all.
MAX_FORWARD_WAITING = 1000
MAX_FORWARD_BYTES = 256 * 1024 * 1024

# Stores a delivery on its capture and offers it to the capture's viewers; False when the capture
# is gone.
Record = Callable[[Capture, dict[str, Any]], Awaitable[bool]]


class Forwarder:
    """Sends each capture handed to it (`submit`, right after the commit) to its endpoint's
    `forward` URL, and records every attempt as a delivery by "server".

    - The capture path never waits: `submit` only queues, and the sender is answered at once.
    - One worker task per endpoint, started when its first capture arrives and gone once its
      queue is empty, sends them in the order they were committed, each to the end of its tries
      before the next.
    - Up to `retries` more tries after a connection error, a timeout or a 5xx, `backoff()` apart.
      The target policy (replay's) is checked on every try; a refusal is final.
    - Memory is bounded: past `max_waiting` captures waiting for one endpoint, or `max_bytes` of
      bodies waiting in all, a capture is not queued and gets a `failed` delivery saying so.
    - Best effort: what is still waiting at shutdown (`close`) is dropped, never resumed.
    """

    def __init__(self, record: Record, policy: TargetPolicy, *,
                 max_waiting: int = MAX_FORWARD_WAITING, max_bytes: int = MAX_FORWARD_BYTES,
                 pause: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._record = record
        self._policy = policy
        self._max_waiting = max_waiting
        self._max_bytes = max_bytes
        self._pause = pause
        self._waiting: dict[int, deque[tuple[Capture, dict[str, Any]]]] = {}
        self._workers: dict[int, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # workers and refusals being recorded
        self._bytes = 0
        self._closed = False

    def open(self) -> None:
        """Take captures (an app started again after a shutdown forwards again)."""
        self._closed = False

    def submit(self, capture: Capture, forward: dict[str, Any]) -> None:
        """Queue a committed capture (with its body) for its endpoint's worker; never waits."""
        if self._closed:
            return
        waiting = self._waiting.get(capture.endpoint_id)
        size = len(capture.body or b"")
        full = None
        if waiting is not None and len(waiting) >= self._max_waiting:
            full = f"{len(waiting)} captures of this endpoint are waiting to be forwarded"
        elif self._bytes and self._bytes + size > self._max_bytes:
            full = f"{self._bytes} bytes of captures are waiting to be forwarded"
        if full is not None:
            self._start(self._refuse(capture, forward, f"forwarding queue full: {full}; this "
                                                       "capture was not sent"))
            return
        if waiting is None:
            waiting = self._waiting[capture.endpoint_id] = deque()
        # Without the parsed view, which can be larger than the body and is not sent.
        waiting.append((dataclasses.replace(capture, parsed=None), forward))
        self._bytes += size
        if capture.endpoint_id not in self._workers:
            self._workers[capture.endpoint_id] = self._start(self._work(capture.endpoint_id))

    async def close(self) -> None:
        """Stop: the attempts under way are cancelled and what waits is dropped."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._waiting.clear()
        self._workers.clear()
        self._bytes = 0

    def _start(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _work(self, endpoint_id: int) -> None:
        waiting = self._waiting[endpoint_id]
        try:
            while waiting:
                capture, forward = waiting.popleft()
                try:
                    await self._forward(capture, forward)
                except Exception:  # one capture's trouble must not stop the endpoint's forwarding
                    log.exception("forwarding capture %s failed", capture.id)
                finally:
                    self._bytes -= len(capture.body or b"")
        finally:
            # Nothing was awaited since the queue was last seen empty, so no capture is left
            # behind without a worker.
            if self._workers.get(endpoint_id) is asyncio.current_task():
                self._workers.pop(endpoint_id)
                self._waiting.pop(endpoint_id, None)

    async def _forward(self, capture: Capture, forward: dict[str, Any]) -> None:
        retries = forward["retries"]
        for number in range(1, retries + 2):
            delivery = await attempt(capture, forward["url"], by=SERVER, number=number,
                                     timeout=forward["timeout"], policy=self._policy,
                                     retry_on_5xx=True, last=number > retries)
            if not await self._record(capture, delivery) or delivery["outcome"] != "retrying":
                return  # delivered, given up, or the capture was deleted meanwhile
            await self._pause(backoff(number))

    async def _refuse(self, capture: Capture, forward: dict[str, Any], reason: str) -> None:
        delivery = delivery_record(capture, forward_url(forward["url"], capture.path,
                                                        capture.query), by=SERVER, number=1)
        delivery["error"] = reason[:MAX_ERROR]
        try:
            await self._record(capture, delivery)
        except Exception:
            log.exception("could not record that capture %s was not forwarded", capture.id)
