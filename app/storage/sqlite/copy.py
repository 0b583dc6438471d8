"""An SQLite file as `hookscope copy-data` reads and writes it (hookscope.storage.copy).

It opens the file as the store does (the same connection settings, migrations and lock file)
but reads and writes rows as they are, outside the store's writer: while the lock is held no
other process writes, and the copy keeps the counters itself. Bodies kept in files
(bodyfiles.py) are read from them; the bodies it writes all go into the database file.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hookscope.storage import SchemaTooNew, StoreLocked, stored_size
from hookscope.storage.copy import CaptureRow, CopyFailed, CopyRefused, EndpointRow
from hookscope.storage.sqlite.bodyfiles import BodyFiles
from hookscope.storage.sqlite.lock import create_private, take_lock
from hookscope.storage.sqlite.migrations import migrate
from hookscope.storage.sqlite.writer import connect

_ENDPOINT = ", ".join(EndpointRow._fields)
_CAPTURE = ", ".join(CaptureRow._fields)
_NEW_ENDPOINT = [name for name in EndpointRow._fields if name != "id"]


class SQLiteSide:
    def __init__(self, path: str, *, create: bool, lock: bool) -> None:
        self.path = path
        self.create = create
        self.lock = lock
        self._conn: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._files = BodyFiles(path)

    async def open(self) -> None:
        if not self.create and not os.path.isfile(self.path):
            raise CopyRefused(f"{self.path}: no such file")
        try:
            if self.create:
                create_private(self.path)
            if self.lock:
                self._lock_fd = take_lock(self.path)
            self._conn = connect(self.path)
        except StoreLocked:
            why = ("only one process writes an SQLite file" if self.create
                   else "what it takes meanwhile would be left out")
            raise CopyRefused(f"{self.path} is in use by a running Hookscope; stop it first: "
                              f"{why}") from None
        except (OSError, sqlite3.Error) as exc:
            raise CopyRefused(f"{self.path}: {exc}") from None

    async def prepare(self) -> None:
        conn = self._connection()
        try:
            if not self.create and not conn.execute("PRAGMA user_version").fetchone()[0]:
                raise CopyRefused(f"{self.path} holds no Hookscope data")
            migrate(conn)
        except (SchemaTooNew, sqlite3.Error) as exc:
            raise CopyRefused(f"{self.path}: {exc}") from None
        if not self.create:
            conn.execute("PRAGMA query_only = ON")

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    async def identity(self) -> tuple[Any, ...]:
        info = os.stat(self.path)
        return ("sqlite", info.st_dev, info.st_ino)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"{self.path} is not open")
        return self._conn

    @contextmanager
    def _failures(self, doing: str) -> Iterator[sqlite3.Connection]:
        """The connection, with what fails while `doing` something said as a CopyFailed."""
        try:
            yield self._connection()
        except (OSError, sqlite3.Error) as exc:
            raise CopyFailed(f"{self.path}: could not {doing}: {exc}") from None

    @contextmanager
    def _transaction(self, doing: str) -> Iterator[sqlite3.Connection]:
        with self._failures(doing) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:  # (some errors end it themselves)
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # -- reading -----------------------------------------------------------------------------

    async def endpoints(self) -> list[EndpointRow]:
        with self._failures("read the endpoints") as conn:
            return [EndpointRow(*row) for row in
                    conn.execute(f"SELECT {_ENDPOINT} FROM endpoints ORDER BY id")]

    async def sizes(self, endpoint_id: int, after: int, through: int,
                    limit: int) -> list[tuple[int, int]]:
        with self._failures("read the captures") as conn:
            return [(seq, size) for seq, size in conn.execute(
                "SELECT seq, length(body) + file_bytes FROM captures WHERE endpoint_id = ? "
                "AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
                (endpoint_id, after, through, limit))]

    async def captures(self, endpoint_id: int, after: int, through: int) -> list[CaptureRow]:
        with self._failures("read the captures") as conn:
            rows = conn.execute(
                f"SELECT {_CAPTURE}, file_bytes FROM captures WHERE endpoint_id = ? AND seq > ? "
                "AND seq <= ? ORDER BY seq", (endpoint_id, after, through)).fetchall()
        found = []
        for *values, file_bytes in rows:
            row = CaptureRow(*values)
            row = row._replace(truncated=bool(row.truncated))
            if file_bytes:
                body = self._files.read(row.id, file_bytes)
                if body is None or len(body) != file_bytes:
                    raise CopyFailed(f"capture {row.id} (seq {row.seq}): its body file "
                                     f"{self._files.path(row.id)} is missing or incomplete")
                row = row._replace(body=body)
            found.append(row)
        return found

    async def highest_seq(self, endpoint_id: int, through: int) -> int:
        with self._failures("read the captures") as conn:
            return int(conn.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM captures WHERE endpoint_id = ? AND seq <= ?",
                (endpoint_id, through)).fetchone()[0])

    async def sessions(self) -> list[tuple[str, int]]:
        with self._failures("read the revoked sessions") as conn:
            return [(nonce, expires) for nonce, expires in
                    conn.execute("SELECT nonce, expires_at FROM revoked_sessions")]

    async def deliveries(self, after: int, limit: int) -> list[tuple[int, str, str, int, str]]:
        with self._failures("read the deliveries") as conn:
            return [tuple(row) for row in conn.execute(
                "SELECT rowid, id, capture_id, created_at, record FROM deliveries "
                "WHERE rowid > ? ORDER BY rowid LIMIT ?", (after, limit))]

    # -- writing -----------------------------------------------------------------------------

    async def put_endpoints(self, rows: list[EndpointRow],
                            existing: dict[str, EndpointRow]) -> dict[str, int]:
        ids = {}
        with self._transaction("write the endpoints") as conn:
            for row in rows:
                if row.token in existing:
                    ids[row.token] = existing[row.token].id
                    # MAX() of a NULL is NULL: COALESCE takes whichever time there is.
                    conn.execute(
                        "UPDATE endpoints SET alias = ?, name = ?, expires_at = ?, "
                        "max_captures = ?, max_bytes = ?, config = ?, "
                        "last_seq = MAX(last_seq, ?), last_capture_at = "
                        "COALESCE(MAX(last_capture_at, ?), last_capture_at, ?) WHERE id = ?",
                        (row.alias, row.name, row.expires_at, row.max_captures, row.max_bytes,
                         row.config, row.last_seq, row.last_capture_at, row.last_capture_at,
                         ids[row.token]))
                    continue
                fresh = row._replace(capture_count=0, stored_bytes=0)._asdict()
                ids[row.token] = int(conn.execute(
                    f"INSERT INTO endpoints ({', '.join(_NEW_ENDPOINT)}) VALUES "
                    f"({', '.join('?' * len(_NEW_ENDPOINT))}) RETURNING id",
                    [fresh[name] for name in _NEW_ENDPOINT]).fetchone()[0])
        return ids

    async def put_captures(self, endpoint_id: int, rows: list[CaptureRow]) -> None:
        size = sum(stored_size(row.body, row.path, row.query, row.headers) for row in rows)
        with self._transaction(f"write captures {rows[0].seq}..{rows[-1].seq}") as conn:
            conn.executemany(
                f"INSERT INTO captures (endpoint_id, {_CAPTURE}) VALUES "
                f"(?, {', '.join('?' * len(CaptureRow._fields))})",
                [(endpoint_id, *row) for row in rows])
            conn.execute("UPDATE endpoints SET capture_count = capture_count + ?, "
                         "stored_bytes = stored_bytes + ? WHERE id = ?",
                         (len(rows), size, endpoint_id))

    async def put_sessions(self, rows: list[tuple[str, int]]) -> None:
        with self._transaction("write the revoked sessions") as conn:
            conn.executemany("INSERT OR IGNORE INTO revoked_sessions (nonce, expires_at) "
                             "VALUES (?, ?)", rows)

    async def put_deliveries(self, rows: list[tuple[str, str, int, str]]) -> int:
        with self._transaction("write the deliveries") as conn:
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO deliveries (id, capture_id, created_at, record) "
                "SELECT ?, id, ?, ? FROM captures WHERE id = ?",
                [(did, created, record, capture) for did, capture, created, record in rows])
            return conn.total_changes - before
