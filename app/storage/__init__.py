"""Storage: where endpoints and captures live, behind one protocol.

`Store` is everything the rest of Hookscope calls on storage; the routes and the CLI's server
command see nothing else. Its errors and query types live here with it,
so a caller never imports a backend. `build_store` is the one place that picks a backend from the
settings: SQLite (storage.sqlite), one database file, or PostgreSQL (storage.postgres), a server
database that any number of processes share.

The promises every backend keeps (tests/test_store_contract.py holds them; it runs on every
backend tests/conftest.py names, as do the capture, API, stream and CLI tests):

- `add_capture` returns only once the capture is committed; a 2xx is only ever sent after it.
- `seq` is one gap-free increasing sequence per endpoint, never reused, even across clears,
  deletes and pruning.
- `max_captures`, `max_bytes` and the store's total limit hold at every commit: the oldest
  captures go first, an endpoint's newest never does.
- Bodies come back byte for byte; `CaptureQuery.q` finds text in path, query, headers and body.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import orjson

from hookscope.models import Capture, Endpoint

if TYPE_CHECKING:
    from hookscope.settings import Settings


class StoreLocked(RuntimeError):
    """Another process has this database open for writing."""


class SchemaTooNew(RuntimeError):
    """The database was written by a newer Hookscope."""


class Conflict(ValueError):
    """A unique field (alias) is taken. `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class Gone(LookupError):
    """The endpoint vanished between lookup and write."""


@dataclass(frozen=True)
class CaptureQuery:
    """Which captures of an endpoint to list: filters, a text search and a page by `seq`
    (`before` lists newest first, `after` oldest first)."""

    method: str | None = None
    signature: str | None = None
    validation: str | None = None
    format: str | None = None
    q: str | None = None
    before: int | None = None
    after: int | None = None
    limit: int = 50


@dataclass(frozen=True)
class StorageSettings:
    """The settings storage reads (their environment variables and help: hookscope.settings)."""

    db: str
    synchronous: str = "normal"
    body_file_bytes: int = 0
    max_total_bytes: int = 0
    db_pool: int = 10

    @classmethod
    def of(cls, settings: Settings) -> StorageSettings:
        return cls(db=settings.db, synchronous=settings.synchronous,
                   body_file_bytes=settings.body_file_bytes,
                   max_total_bytes=settings.max_total_bytes, db_pool=settings.db_pool)


class Store(Protocol):
    """What the rest of Hookscope needs from storage."""

    # Whether other processes may serve the same database (PostgreSQL): then rate limits and
    # the failed-login throttle count through the store (`take_tokens`, `tell_failure`).
    shared: bool
    # Awaited with (endpoint id, seq) for each capture another process committed, where the
    # store hears of them (PostgreSQL's LISTEN/NOTIFY); the app hands them to its hub.
    captures_elsewhere: Callable[[int, int], Awaitable[None]] | None
    # Called with the id of each endpoint another process deleted (PostgreSQL), so this
    # process ends the streams open on it.
    deleted_elsewhere: Callable[[int], None] | None
    # Called with the address of each wrong credential another process refused (PostgreSQL),
    # so this process's throttle counts it too.
    failures_elsewhere: Callable[[str], None] | None
    # Called with (endpoint id, the delivery's summary) for each forwarding attempt another
    # process recorded (PostgreSQL), for this process's viewers.
    deliveries_elsewhere: Callable[[int, dict[str, Any]], None] | None

    async def open(self) -> None: ...
    async def close(self) -> None: ...

    async def create_endpoint(self, fields: dict[str, Any]) -> Endpoint: ...
    async def get_endpoint(self, key: str) -> Endpoint | None: ...

    async def capture_target(self, key: str) -> Endpoint | None:
        """The endpoint for the capture path, from a copy in memory when there is one (its
        counters may lag; its configuration may not, see `forget_targets`)."""
        ...

    def forget_targets(self) -> None:
        """Drop the copies `capture_target` keeps: an endpoint changed, here or elsewhere."""

    async def list_endpoints(self, limit: int) -> list[Endpoint]: ...

    async def update_endpoint(self, endpoint: Endpoint, fields: dict[str, Any]) -> Endpoint:
        """Raises Gone when the endpoint was deleted meanwhile, Conflict when an alias is
        taken."""
        ...

    async def delete_endpoint(self, endpoint: Endpoint) -> int:
        """Delete an endpoint with its captures; how many captures went with it."""
        ...

    async def delete_expired(self, now: int) -> list[int]:
        """Delete every endpoint that expired by `now` (µs), with its captures; their ids."""
        ...

    async def add_capture(self, capture: Capture) -> int:
        """Store a capture; its sequence number, once committed. Raises Gone when its endpoint
        was deleted meanwhile."""
        ...

    async def get_capture(self, capture_id: str, *, body: bool = True) -> Capture | None: ...

    async def capture_at(self, endpoint_id: int, seq: int) -> Capture | None:
        """An endpoint's capture by its sequence number (its summary, without the body)."""
        ...

    async def list_captures(self, endpoint: Endpoint, query: CaptureQuery) -> list[Capture]: ...
    async def delete_capture(self, capture_id: str) -> bool: ...

    async def set_signature(self, capture_id: str, verdict: dict[str, Any] | None) -> bool:
        """Replace a capture's signature verdict (re-verification asked for by a user)."""
        ...

    async def clear_captures(self, endpoint: Endpoint) -> int: ...

    async def revoke_session(self, nonce: str, expires_at: int) -> None:
        """A browser session logged out: refused until it would have expired (seconds since the
        epoch)."""
        ...

    async def session_revoked(self, nonce: str) -> bool: ...

    async def add_delivery(self, capture: Capture, delivery: dict[str, Any]) -> bool:
        """Record a forwarding attempt on a capture (`delivery`: hookscope.ops.forward's record,
        its `id` and `at` set); False when the capture is gone. Other processes hear of it
        (`deliveries_elsewhere`)."""
        ...

    async def list_deliveries(self, capture_id: str) -> list[dict[str, Any]]:
        """A capture's forwarding attempts, in the order they were recorded."""
        ...

    def unreachable(self, exc: BaseException) -> bool:
        """Whether `exc` says the database cannot be reached (a server database restarting),
        which the API answers 503 rather than 500."""
        ...

    async def take_tokens(self, buckets: Sequence[tuple[str, float]]) -> float:
        """A shared store's rate limits: one token from each (name, requests a second) bucket,
        all or none; 0 when taken, else the seconds until every bucket has one."""
        ...

    def tell_failure(self, address: str) -> None:
        """A shared store's note to the other processes of a wrong credential from `address`."""


def json_column(value: Any) -> str:
    """The headers, signature and validation columns' JSON text, by orjson, several times cheaper
    than the json module's C encoder for these (docs/performance.md). Non-ASCII stays as it is, so
    `q` finds it in headers (Latin-1 text). What orjson refuses, a lone surrogate that a validation
    error's path quotes from a key of the body, the json module writes, escaped (SQLite text cannot
    hold a lone surrogate)."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value)


def stored_size(body: bytes, path: str, query: str, headers_column: str) -> int:
    """What a capture counts against max_bytes and the total limit, in every store: its body,
    path, query and header column, in bytes of UTF-8 (SQLite's retention.STORED_BYTES)."""
    return len(body) + len(path.encode()) + len(query.encode()) + len(headers_column.encode())


def verdict_columns(verdict: dict[str, Any] | None, default: str) -> tuple[str, str | None]:
    """(status column, JSON column) of a signature or validation verdict; NULL when unchecked."""
    if verdict is None:
        return default, None
    return verdict["status"], json_column(verdict)


def is_postgres(db: str) -> bool:
    return db.startswith(("postgresql://", "postgres://"))


def describe(db: str) -> str:
    """The database as it may be logged: a URL's password left out."""
    if not is_postgres(db):
        return db
    parts = urlsplit(db)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    query = re.sub(r"(?i)(^|&)(password=)[^&]*", r"\1\2***", parts.query)
    return urlunsplit((parts.scheme, f"{userinfo}{at}{hosts}", parts.path, query, ""))


def build_store(settings: StorageSettings) -> Store:
    """The store the settings name, not yet open: PostgreSQL for a postgresql:// URL, else the
    SQLite file at that path."""
    if is_postgres(settings.db):
        from hookscope.storage.postgres.store import PostgresStore

        return PostgresStore(settings.db, max_total_bytes=settings.max_total_bytes,
                             pool_size=settings.db_pool)
    from hookscope.storage.sqlite.store import SQLiteStore

    return SQLiteStore(settings.db, max_total_bytes=settings.max_total_bytes,
                       synchronous=settings.synchronous,
                       body_file_bytes=settings.body_file_bytes)


def check_usable(settings: StorageSettings) -> None:
    """Fail early, with a message rather than a traceback, when the store cannot be served:
    another process holds it (StoreLocked), a newer Hookscope wrote it (SchemaTooNew), or the
    file system refuses (OSError)."""
    if is_postgres(settings.db):
        from hookscope.storage.postgres.store import check_reachable

        check_reachable(settings.db)
        return
    from hookscope.storage.sqlite.lock import check_writable

    check_writable(settings.db)
