"""The copies of endpoints a store keeps for the capture path, shared by every backend."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from hookscope.models import Endpoint

TARGET_CACHE_SIZE = 10_000


class EndpointCopies:
    """`capture_target` answers from memory when it can: the capture path looks its endpoint up
    on every request. A change to an endpoint forgets every copy (`forget_targets`); other
    processes on the same database hear of it through the store (PostgreSQL's NOTIFY)."""

    def __init__(self) -> None:
        self._targets: dict[str, Endpoint] = {}
        self._generation = 0
        self.captures_elsewhere: Callable[[int, int], Awaitable[None]] | None = None
        self.deleted_elsewhere: Callable[[int], None] | None = None
        self.failures_elsewhere: Callable[[str], None] | None = None
        self.deliveries_elsewhere: Callable[[int, dict[str, Any]], None] | None = None

    async def get_endpoint(self, key: str) -> Endpoint | None:
        raise NotImplementedError

    async def capture_target(self, key: str) -> Endpoint | None:
        """The endpoint for the capture path, from memory when possible (its counters may lag)."""
        endpoint = self._targets.get(key)
        if endpoint is None:
            generation = self._generation
            endpoint = await self.get_endpoint(key)
            # A PATCH or DELETE that committed while we read must not be undone by our copy.
            if endpoint is not None and generation == self._generation:
                if len(self._targets) >= TARGET_CACHE_SIZE:
                    self._targets.clear()
                self._targets[key] = endpoint
        return endpoint

    def forget_targets(self) -> None:
        self._generation += 1
        self._targets.clear()
