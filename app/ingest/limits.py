"""Requests-per-second caps for capture URLs, and for failed logins: token buckets.

One bucket for all capture URLs together (HOOKSCOPE_RATE_LIMIT) and one per endpoint that sets
`rate_limit`. A bucket holds one second's worth of requests (at least one), so a cap of 10
allows a burst of 10 and a cap of 0.5 allows one request every two seconds. A refused request
is answered 429 with Retry-After before its body is read, and nothing is stored: that protects
the database from a flood, and lets a user watch a sender's retry logic at work.

One process (SQLite) counts in memory (RateLimiter). Several processes on one PostgreSQL
database count the capture caps in it (SharedRateLimiter: the same buckets, on the database's
clock, so a cap holds exactly across processes and hosts) and tell each other of wrong
credentials (FailureThrottle.tell_others), which each process's throttle counts.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence

log = logging.getLogger("hookscope.limits")

MAX_BUCKETS = 10_000


class Bucket:
    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, rate: float, now: float, capacity: float | None = None) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate) if capacity is None else capacity
        self.tokens = self.capacity
        self.stamp = now

    def full(self, now: float) -> bool:
        self.wait(now)
        return self.tokens >= self.capacity

    def wait(self, now: float) -> float:
        """Seconds until a request would be admitted (0: now). Refills, takes nothing."""
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate


class RateLimiter:
    def __init__(self, global_rate: float = 0) -> None:
        self._clock = time.monotonic
        self._global = Bucket(global_rate, self._clock()) if global_rate else None
        self._buckets: dict[int, Bucket] = {}

    def applies(self, rate: float | None) -> bool:
        """Whether a request to an endpoint capped at `rate` (None: not) is limited at all."""
        return self._global is not None or rate is not None

    def admit(self, endpoint_id: int, rate: float | None) -> int:
        """0 when the request may go ahead (a token is taken from each bucket that applies),
        else the whole seconds to put in Retry-After."""
        if not self.applies(rate):
            return 0
        now = self._clock()
        buckets = [] if self._global is None else [self._global]
        if rate is not None:
            bucket = self._buckets.get(endpoint_id)
            if bucket is None or bucket.rate != rate:  # new, or the cap was changed
                bucket = self._bucket(endpoint_id, rate, now)
            buckets.append(bucket)
        wait = max(bucket.wait(now) for bucket in buckets)
        if wait > 0:
            return max(1, math.ceil(wait))
        for bucket in buckets:
            bucket.tokens -= 1
        return 0

    def _bucket(self, endpoint_id: int, rate: float, now: float) -> Bucket:
        if len(self._buckets) >= MAX_BUCKETS:
            # Forget the endpoints that are idle (full again): they start full anyway.
            for key in [k for k, b in self._buckets.items() if b.full(now)]:
                del self._buckets[key]
        bucket = self._buckets[endpoint_id] = Bucket(rate, now)
        return bucket


class SharedRateLimiter:
    """RateLimiter's caps, counted in a shared store for every process that serves it.

    Each request to a capped endpoint takes its tokens in the database, with one exception: once
    a request is refused, this process refuses the endpoint's requests itself until the moment
    the database said a token could be there at the earliest. Requests only take tokens, so no
    process can make that moment sooner: the refusal is the one the database would give, and a
    flood against a capped endpoint costs the database one call per refusal period, not one per
    request."""

    def __init__(self, take: Callable[[Sequence[tuple[str, float]]], Awaitable[float]],
                 global_rate: float = 0) -> None:
        self._take = take
        self._global = global_rate
        self._clock = time.monotonic
        self._refused_until: dict[int, float] = {}

    async def admit(self, endpoint_id: int, rate: float | None) -> int:
        """As RateLimiter.admit."""
        now = self._clock()
        until = self._refused_until.get(endpoint_id)
        if until is not None:
            if now < until:
                return max(1, math.ceil(until - now))
            del self._refused_until[endpoint_id]
        buckets = [("*", self._global)] if self._global else []
        if rate is not None:
            buckets.append((f"e{endpoint_id}", rate))
        if not buckets:
            return 0
        try:
            wait = await self._take(buckets)
        except Exception as exc:
            # The database is away: the capture's own commit fails next, with a 503 that
            # tells the sender to retry, which is the answer it should get.
            log.warning("could not count a rate limit in the database: %s", exc)
            return 0
        if wait <= 0:
            return 0
        if len(self._refused_until) >= MAX_BUCKETS:
            self._refused_until.clear()
        self._refused_until[endpoint_id] = now + wait
        return max(1, math.ceil(wait))


class FailureThrottle:
    """Failed credentials per client: `attempts` at once, then one more every `refill_s`
    seconds. Only failures count; while a client has none left, it is refused without its
    credentials being looked at (429), the right token included. A client is its IPv4 address
    or its IPv6 /64 (one host usually has a whole /64 to rotate through)."""

    def __init__(self, attempts: int = 10, refill_s: float = 6.0) -> None:
        self._clock = time.monotonic
        self.attempts = attempts
        self.rate = 1 / refill_s
        self._buckets: OrderedDict[str, Bucket] = OrderedDict()  # least recently failed first
        # Told of each failure made here, so the other processes on a shared store count it too.
        self.tell_others: Callable[[str], None] | None = None

    def blocked(self, address: str) -> int:
        """0 when `address` may try, else the whole seconds to put in Retry-After."""
        if not self._buckets:  # nobody has failed: no address to parse on every request
            return 0
        bucket = self._buckets.get(_client_key(address))
        if bucket is None:
            return 0
        wait = bucket.wait(self._clock())
        return max(1, math.ceil(wait)) if wait > 0 else 0

    def failed(self, address: str) -> None:
        """A wrong guess from `address`, here."""
        self.failed_elsewhere(address)
        if self.tell_others is not None:
            self.tell_others(address)

    def failed_elsewhere(self, address: str) -> None:
        """A wrong guess from `address` that another process saw and told of."""
        now = self._clock()
        key = _client_key(address)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_BUCKETS:
                # The client that failed longest ago, whose bucket is the likeliest to be full
                # again: no scan, so a flood of addresses costs no more than one.
                self._buckets.popitem(last=False)
            bucket = self._buckets[key] = Bucket(self.rate, now, capacity=self.attempts)
        else:
            self._buckets.move_to_end(key)
        bucket.wait(now)
        bucket.tokens = max(0.0, bucket.tokens - 1)


def _client_key(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
