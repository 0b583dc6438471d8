"""Copying a Hookscope database into another, SQLite or PostgreSQL either way, and checking the
copy (`hookscope copy-data`).

Each database is one `Side`: the backend's own SQL lives in storage/sqlite/copy.py and
storage/postgres/copy.py, and this module holds what is the same for both. Rows travel as they
are stored (the JSON columns as their text, bodies as bytes), so nothing is decoded and written
again differently.

Endpoints are matched by token (ids differ between databases): one the destination lacks is
created with the source's definition and sequence, so a capture a server takes there meanwhile
gets a later `seq` than any it will be copied; one it has with the same token and creation time
is an earlier, perhaps unfinished, copy, brought up to date. Any other clash (the token, an alias)
refuses the whole copy before anything is written. Captures are copied per endpoint in `seq`
order, a batch per transaction with the endpoint's counters in step, from the highest `seq` the
destination holds up to the source's `last_seq`: a copy stopped anywhere (Ctrl-C, a crash, a
lost connection) continues where it stopped when run again, and never copies a capture twice.

Verification reads both sides again, endpoint by endpoint, every column of every capture in `seq`
order, and sums each side up (`Tally`: a count, the bytes of the bodies, a sha256 over those
columns); where the sums differ, the first capture that differs is named. It compares the
endpoints' settings too, and their counters unless the destination has taken captures of its
own since (only captures up to the source's `last_seq` are compared).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from hookscope.models import format_time
from hookscope.storage import is_postgres

BATCH = 500
# At most this many body bytes in one batch (at least one capture, however large), so the
# memory a copy takes stays bounded whatever the bodies.
BATCH_BYTES = 32 * 1024 * 1024


class CopyRefused(Exception):
    """The copy cannot begin (a missing or busy database, the same one twice, endpoints that
    clash): nothing was written."""


class CopyFailed(Exception):
    """The copy stopped part way (a database error, a body file missing); what was committed
    stays, and running the copy again continues from there."""


class EndpointRow(NamedTuple):
    """An endpoint's columns, as both schemas name them; `config` is the JSON text as stored."""

    id: int
    token: str
    alias: str | None
    name: str | None
    created_at: int
    expires_at: int | None
    max_captures: int
    max_bytes: int | None
    config: str
    last_seq: int
    capture_count: int
    stored_bytes: int
    last_capture_at: int | None


class CaptureRow(NamedTuple):
    """A capture's columns, as both schemas name them, the body last. The JSON columns
    (headers, signature, validation) are their text as stored."""

    id: str
    seq: int
    received_at: int
    method: str
    path: str
    query: str
    headers: str
    remote_addr: str | None
    content_type: str | None
    body_size: int
    truncated: bool
    response_status: int
    parsed_kind: str
    parsed_error: str | None
    signature_status: str
    signature: str | None
    validation_status: str
    validation: str | None
    format: str | None
    body: bytes


# What an endpoint is, as opposed to what it counts.
DEFINITION = ("alias", "name", "created_at", "expires_at", "max_captures", "max_bytes", "config")
COUNTERS = ("capture_count", "stored_bytes", "last_capture_at")


class Side(Protocol):
    """One database as the copy reads and writes it."""

    async def open(self) -> None:
        """Connect (for SQLite: the file must exist unless it is to be created, and the lock
        file is taken when asked). Raises CopyRefused."""

    async def prepare(self) -> None:
        """The schema brought up to date as its store does on open; a database to read from
        must hold Hookscope's schema already. Raises CopyRefused."""

    async def close(self) -> None: ...

    async def identity(self) -> tuple[Any, ...]:
        """Equal for two sides on the same database."""
        ...

    async def endpoints(self) -> list[EndpointRow]: ...

    async def sizes(self, endpoint_id: int, after: int, through: int,
                    limit: int) -> list[tuple[int, int]]:
        """(seq, body bytes) of an endpoint's first `limit` captures in (after, through]."""
        ...

    async def captures(self, endpoint_id: int, after: int, through: int) -> list[CaptureRow]:
        """An endpoint's captures in (after, through], in `seq` order."""
        ...

    async def highest_seq(self, endpoint_id: int, through: int) -> int:
        """The highest `seq` of an endpoint's captures up to `through`; 0 when none."""
        ...

    async def put_endpoints(self, rows: list[EndpointRow],
                            existing: dict[str, EndpointRow]) -> dict[str, int]:
        """In one transaction: create the endpoints `existing` (by token) lacks, with the
        source's `last_seq` and no captures; bring the definition of the others up to the
        source's (their sequence never goes back). Their ids here, by token."""
        ...

    async def put_captures(self, endpoint_id: int, rows: list[CaptureRow]) -> None:
        """Insert captures and count them into the endpoint, in one transaction."""
        ...

    async def sessions(self) -> list[tuple[str, int]]:
        """The revoked browser sessions: (nonce, expires_at)."""
        ...

    async def put_sessions(self, rows: list[tuple[str, int]]) -> None:
        """Add revoked sessions, keeping those already there."""
        ...

    async def deliveries(self, after: int, limit: int) -> list[tuple[int, str, str, int, str]]:
        """The next `limit` deliveries after the one at position `after` (0: from the first):
        (position, id, capture id, created_at, record JSON)."""
        ...

    async def put_deliveries(self, rows: list[tuple[str, str, int, str]]) -> int:
        """Add the deliveries whose capture is here and that are not yet; how many were."""
        ...


def open_side(db: str, *, create: bool, lock: bool) -> Side:
    """The side for `db`, a postgresql:// URL or an SQLite file, not yet open. `create`: it is
    written to (made when missing); `lock`: an SQLite file's lock file is held while open, so no
    Hookscope serves it meanwhile."""
    if is_postgres(db):
        from hookscope.storage.postgres.copy import PostgresSide

        return PostgresSide(db, create=create)
    from hookscope.storage.sqlite.copy import SQLiteSide

    return SQLiteSide(db, create=create, lock=lock)


@dataclass
class Tally:
    """A run of captures summed up: how many, their body bytes, and a sha256 over every column
    of each, in `seq` order."""

    count: int = 0
    bytes: int = 0
    digest: Any = field(default_factory=hashlib.sha256)

    def add(self, row: CaptureRow) -> None:
        self.count += 1
        self.bytes += len(row.body)
        for value in row:
            # Each value tagged with its type and preceded by its length, so no two different
            # rows feed the same bytes.
            if value is None:
                data = b"n"
            elif isinstance(value, bool):
                data = b"t" if value else b"f"
            elif isinstance(value, int):
                data = b"i%d" % value
            elif isinstance(value, str):
                data = b"s" + value.encode("utf-8", "surrogatepass")
            else:
                self.digest.update(b"b%d:" % len(value))
                self.digest.update(value)
                continue
            self.digest.update(b"%d:" % len(data))
            self.digest.update(data)

    @property
    def sha256(self) -> str:
        return str(self.digest.hexdigest())


@dataclass
class EndpointReport:
    token: str
    alias: str | None
    name: str | None
    created: bool = False  # by this run
    copied: int = 0  # captures, by this run
    source: Tally = field(default_factory=Tally)
    problems: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.alias} ({self.token})" if self.alias else self.token

    def as_json(self) -> dict[str, Any]:
        return {"token": self.token, "alias": self.alias, "name": self.name,
                "created": self.created, "copied": self.copied, "captures": self.source.count,
                "bytes": self.source.bytes, "sha256": self.source.sha256,
                "verified": not self.problems, "problems": self.problems}


@dataclass
class Report:
    endpoints: list[EndpointReport]
    sessions: int = 0  # revoked browser sessions copied

    @property
    def verified(self) -> bool:
        return not any(e.problems for e in self.endpoints)

    def total(self, name: str) -> int:
        """The sum over the endpoints of `copied`, or of the source's `count` or `bytes`."""
        if name == "copied":
            return sum(e.copied for e in self.endpoints)
        return sum(getattr(e.source, name) for e in self.endpoints)


Progress = Callable[[EndpointRow, int], None]


async def copy_data(source_db: str, destination_db: str, *, verify_only: bool = False,
                    batch: int = BATCH, batch_bytes: int = BATCH_BYTES,
                    progress: Progress | None = None) -> Report:
    """Copy everything `source_db` holds into `destination_db` (unless `verify_only`), then
    compare the two. `progress` is called after each committed batch with the source's
    endpoint and how many of its captures this run has copied so far."""
    if _same_file(source_db, destination_db):
        raise CopyRefused("the source and the destination are the same database")
    # A copy holds an SQLite source's lock, so no server takes captures it would miss; a check
    # only reads, and may run beside a server.
    source = open_side(source_db, create=False, lock=not verify_only)
    destination = open_side(destination_db, create=not verify_only, lock=not verify_only)
    try:
        await source.open()
        await source.prepare()  # first: a source that cannot be read leaves no destination made
        await destination.open()
        if await source.identity() == await destination.identity():
            raise CopyRefused("the source and the destination are the same database")
        await destination.prepare()
        endpoints = await source.endpoints()
        reports = {row.token: EndpointReport(row.token, row.alias, row.name)
                   for row in endpoints}
        sessions = 0
        if not verify_only:
            existing = {row.token: row for row in await destination.endpoints()}
            clashes = conflicts(endpoints, list(existing.values()))
            if clashes:
                raise CopyRefused("the destination holds endpoints that are not copies of the "
                                  "source's; nothing was copied:\n  " + "\n  ".join(clashes))
            ids = await destination.put_endpoints(endpoints, existing)
            for row in endpoints:
                reports[row.token].created = row.token not in existing
                reports[row.token].copied = await _copy_captures(
                    source, destination, row, ids[row.token], batch, batch_bytes, progress)
            revoked = await source.sessions()
            await destination.put_sessions(revoked)
            sessions = len(revoked)
            after = 0  # in batches: a delivery holds up to 64 KiB of its target's reply
            while rows := await source.deliveries(after, batch):
                await destination.put_deliveries([row[1:] for row in rows])
                after = rows[-1][0]
        copies = {row.token: row for row in await destination.endpoints()}
        for row in endpoints:
            await _verify(source, destination, row, copies.get(row.token), reports[row.token],
                          batch, batch_bytes)
        return Report(list(reports.values()), sessions)
    finally:
        await destination.close()
        await source.close()


def _same_file(a: str, b: str) -> bool:
    """Two names of one SQLite file (PostgreSQL databases are told apart once connected): the
    second lock on it would otherwise be refused as if another Hookscope held it."""
    if is_postgres(a) or is_postgres(b):
        return False
    return os.path.realpath(a) == os.path.realpath(b)


def conflicts(sources: list[EndpointRow], targets: list[EndpointRow]) -> list[str]:
    """Why the source's endpoints cannot be copied into a database holding `targets`, one line
    each: a token there that is not a copy (created at another time), or a name (alias or token)
    taken there by another endpoint."""
    by_token = {row.token: row for row in targets}
    names = {row.token: row.token for row in targets}
    names.update((row.alias, row.token) for row in targets if row.alias)
    found = []
    for row in sources:
        target = by_token.get(row.token)
        if target is not None and target.created_at != row.created_at:
            found.append(f"{row.token}: the destination has an endpoint with this token, created "
                         f"{format_time(target.created_at)}, not a copy of this one (created "
                         f"{format_time(row.created_at)})")
        elif target is None and row.token in names:
            found.append(f"{row.token}: the destination's endpoint {names[row.token]} has this "
                         "token as its alias")
        if row.alias and names.get(row.alias, row.token) != row.token:
            found.append(f"{row.token}: its alias {row.alias!r} is taken in the destination by "
                         f"endpoint {names[row.alias]}")
    return found


async def _batches(side: Side, endpoint_id: int, after: int, through: int, batch: int,
                   batch_bytes: int) -> AsyncIterator[list[CaptureRow]]:
    """An endpoint's captures in (after, through], in `seq` order, `batch` at a time and at
    most `batch_bytes` of bodies (but at least one capture) at a time."""
    while sizes := await side.sizes(endpoint_id, after, through, batch):
        end, total = sizes[0][0], sizes[0][1]
        for seq, size in sizes[1:]:
            total += size
            if total > batch_bytes:
                break
            end = seq
        yield await side.captures(endpoint_id, after, end)
        after = end
        # SQLite's calls never give way to the event loop: this lets a Ctrl-C (the runner
        # cancels this task) stop an SQLite-to-SQLite copy between two batches.
        await asyncio.sleep(0)


async def _copy_captures(source: Side, destination: Side, row: EndpointRow, endpoint_id: int,
                         batch: int, batch_bytes: int, progress: Progress | None) -> int:
    copied = 0
    after = await destination.highest_seq(endpoint_id, row.last_seq)
    async for rows in _batches(source, row.id, after, row.last_seq, batch, batch_bytes):
        await destination.put_captures(endpoint_id, rows)
        copied += len(rows)
        if progress is not None:
            progress(row, copied)
    return copied


async def _rows(side: Side, endpoint_id: int, through: int, batch: int,
                batch_bytes: int) -> AsyncIterator[CaptureRow]:
    async for rows in _batches(side, endpoint_id, 0, through, batch, batch_bytes):
        for row in rows:
            yield row


async def _verify(source: Side, destination: Side, row: EndpointRow, copy: EndpointRow | None,
                  report: EndpointReport, batch: int, batch_bytes: int) -> None:
    """Compare an endpoint with its copy (None: there is none) into `report`."""
    problems = report.problems
    if copy is None:
        problems.append("missing in the destination")
    else:
        differ = [name for name in DEFINITION if getattr(row, name) != getattr(copy, name)]
        if differ:
            problems.append(f"its {', '.join(differ)} differ")
    ours, theirs = report.source, Tally()
    first = await _compare(_rows(source, row.id, row.last_seq, batch, batch_bytes),
                           _rows(destination, copy.id, row.last_seq, batch, batch_bytes)
                           if copy is not None else _nothing(), ours, theirs)
    if copy is not None and ((ours.count, ours.bytes, ours.sha256)
                             != (theirs.count, theirs.bytes, theirs.sha256)):
        problems.append(f"its captures differ: {ours.count} captures, {ours.bytes} bytes, sha256 "
                        f"{ours.sha256[:16]} in the source; {theirs.count}, {theirs.bytes}, "
                        f"{theirs.sha256[:16]} in the destination; first {first}")
    if copy is not None and copy.last_seq < row.last_seq:
        problems.append(f"its last seq is {copy.last_seq} in the destination, {row.last_seq} in "
                        "the source")
    elif copy is not None and copy.last_seq == row.last_seq:
        # Else the destination took captures of its own since, and its counters count them.
        differ = [f"{name} {getattr(copy, name)} (source {getattr(row, name)})"
                  for name in COUNTERS if getattr(row, name) != getattr(copy, name)]
        if differ:
            problems.append(f"its counters differ: {', '.join(differ)}")


async def _compare(ours: AsyncIterator[CaptureRow], theirs: AsyncIterator[CaptureRow],
                   our_tally: Tally, their_tally: Tally) -> str:
    """Sum up two runs of captures, walking them side by side by `seq`; the first difference
    ('' when none)."""
    first = ""
    mine, other = await anext(ours, None), await anext(theirs, None)
    while mine is not None or other is not None:
        if other is None or (mine is not None and mine.seq < other.seq):
            assert mine is not None
            what = f"seq {mine.seq} ({mine.id}) is missing in the destination"
            our_tally.add(mine)
            mine = await anext(ours, None)
        elif mine is None or other.seq < mine.seq:
            what = f"seq {other.seq} ({other.id}) is not in the source"
            their_tally.add(other)
            other = await anext(theirs, None)
        else:
            our_tally.add(mine)
            their_tally.add(other)
            fields = [name for name, a, b in zip(CaptureRow._fields, mine, other, strict=True)
                      if a != b]
            what = f"seq {mine.seq} ({mine.id}) differs in {', '.join(fields)}" if fields else ""
            mine, other = await anext(ours, None), await anext(theirs, None)
        first = first or what
    return first


async def _nothing() -> AsyncIterator[CaptureRow]:
    return
    yield
