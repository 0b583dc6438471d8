"""What the store keeps: per-endpoint counters and the limits they are held to.

Touched only inside the writer's transactions (writer.py), one at a time. The counters (last
sequence number, capture count, stored body bytes) are loaded from the endpoint row on first use
and written back once per batch. While no other connection commits, the writer's copy is
authoritative; once one did (a hand on the file, such as a sqlite3 shell), they are
loaded again inside the next transaction, which holds SQLite's write lock. Before each commit
the captures beyond an endpoint's max_captures or max_bytes, and beyond HOOKSCOPE_MAX_TOTAL_BYTES
over all endpoints, are pruned oldest first; an endpoint's newest capture never is.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any

from hookscope.storage import Gone


@dataclass
class Counter:
    last_seq: int
    count: int
    last_at: int | None
    max_captures: int
    bytes: int
    max_bytes: int | None


# A capture's stored bytes: its body, in the row or in a file (bodyfiles.py), and its path,
# query and header fields as stored (a sender controls those too, and they can be as large as the
# head limit allows), in bytes of UTF-8 (length() of a text would count characters, and stop at
# a NUL). Reading file_bytes of a row whose body is in the row costs nothing, even behind a large
# body: SQLite keeps a 0 in the record's header alone, so no overflow page is read for it.
# storage.stored_size counts the same of a capture before it is inserted.
STORED_BYTES = ("(length(body) + file_bytes + length(CAST(path AS BLOB)) "
                "+ length(CAST(query AS BLOB)) + length(CAST(headers AS BLOB)))")

# Not its endpoint's newest capture (an index lookup per row: captures_endpoint_seq).
_NOT_NEWEST = ("seq < (SELECT MAX(newest.seq) FROM captures newest "
               "WHERE newest.endpoint_id = captures.endpoint_id)")


@dataclass
class Retention:
    """Per-endpoint counters and the limits they are held to, touched only inside the
    writer's transactions. `max_total_bytes` (0: none) caps the stored bytes of all endpoints
    together."""

    max_total_bytes: int = 0
    counters: dict[int, Counter] = field(default_factory=dict)
    dirty: set[int] = field(default_factory=set)
    total_bytes: int | None = None  # loaded on first use

    def counter(self, conn: sqlite3.Connection, endpoint_id: int) -> Counter:
        counter = self.counters.get(endpoint_id)
        if counter is None:
            row = conn.execute(
                "SELECT last_seq, capture_count, last_capture_at, max_captures, stored_bytes, "
                "max_bytes FROM endpoints WHERE id = ?", (endpoint_id,)).fetchone()
            if row is None:
                raise Gone(f"endpoint {endpoint_id} no longer exists")
            counter = self.counters[endpoint_id] = Counter(*row)
        return counter

    def stored(self, conn: sqlite3.Connection, endpoint_id: int, count: int, size: int) -> None:
        """Count captures in (positive) or out (negative) of an endpoint's totals."""
        if self.max_total_bytes and self.total_bytes is None:
            # Before the first change since start or a rollback, the table's figures are exact.
            self.total_bytes = conn.execute(
                "SELECT COALESCE(SUM(stored_bytes), 0) FROM endpoints").fetchone()[0]
        counter = self.counter(conn, endpoint_id)
        counter.count += count
        counter.bytes += size
        self.dirty.add(endpoint_id)
        if self.total_bytes is not None:
            self.total_bytes += size

    def prepare(self, conn: sqlite3.Connection) -> None:
        pass

    def before_commit(self, conn: sqlite3.Connection) -> None:
        # The newest capture of an endpoint is never pruned, even when it alone is over a limit
        # (and so an acknowledged capture is never gone before anyone could look at it).
        for endpoint_id in list(self.dirty):
            counter = self.counters.get(endpoint_id)
            if counter is None:
                continue
            if counter.count > counter.max_captures:
                self._prune(conn, "WHERE endpoint_id = ? ORDER BY seq", (endpoint_id,),
                             count=counter.count - counter.max_captures)
            if counter.max_bytes is not None and counter.bytes > counter.max_bytes:
                self._prune(conn, f"WHERE endpoint_id = ? AND {_NOT_NEWEST} ORDER BY seq",
                            (endpoint_id,), size=counter.bytes - counter.max_bytes)
        if self.total_bytes is not None and self.total_bytes > self.max_total_bytes:
            self._prune(conn, f"WHERE {_NOT_NEWEST} ORDER BY rowid", (),
                        size=self.total_bytes - self.max_total_bytes)
        for endpoint_id in self.dirty:
            counter = self.counters.get(endpoint_id)
            if counter is None:
                continue
            conn.execute(
                "UPDATE endpoints SET last_seq = ?, capture_count = ?, last_capture_at = ?, "
                "stored_bytes = ? WHERE id = ?",
                (counter.last_seq, counter.count, counter.last_at, counter.bytes, endpoint_id))
        self.dirty.clear()

    def _prune(self, conn: sqlite3.Connection, where: str, params: tuple[Any, ...], *,
               count: int = 0, size: int = 0) -> None:
        """Delete the oldest captures `where` selects, until `count` captures or `size` stored
        bytes are gone (whichever is asked), keeping the counters in step."""
        doomed: list[int] = []
        freed = 0
        for rowid, endpoint_id, length in conn.execute(
                f"SELECT rowid, endpoint_id, {STORED_BYTES} FROM captures {where}", params):
            if (count and len(doomed) >= count) or (size and freed >= size):
                break
            doomed.append(rowid)
            freed += length
            self.stored(conn, endpoint_id, -1, -length)
        for start in range(0, len(doomed), 500):
            chunk = doomed[start:start + 500]
            conn.execute(f"DELETE FROM captures WHERE rowid IN ({','.join('?' * len(chunk))})",
                         chunk)

    def delete_endpoint(self, conn: sqlite3.Connection, endpoint_id: int) -> int:
        count, size = conn.execute(
            f"SELECT COUNT(*), COALESCE(SUM({STORED_BYTES}), 0) FROM captures "
            "WHERE endpoint_id = ?", (endpoint_id,)).fetchone()
        conn.execute("DELETE FROM endpoints WHERE id = ?", (endpoint_id,))
        self.counters.pop(endpoint_id, None)
        self.dirty.discard(endpoint_id)
        if self.total_bytes is not None:
            self.total_bytes -= size
        return int(count)

    def after_commit(self, conn: sqlite3.Connection) -> None:
        pass

    def after_rollback(self, conn: sqlite3.Connection) -> None:
        # Our copies may be ahead of what was committed: reload from the database on next use.
        self.counters.clear()
        self.dirty.clear()
        self.total_bytes = None

    def others_wrote(self, conn: sqlite3.Connection) -> None:
        # Another connection's commits changed the counters: reload them, as after a rollback.
        self.after_rollback(conn)
