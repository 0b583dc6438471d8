"""The SQLite store: the Store protocol (hookscope.storage) on one database file.

Writes go through the one group-commit writer (writer.py); reads use their own aiosqlite
connection, so a long read never delays an acknowledgement. Per-endpoint counters and the limits
they are held to live with the writer (retention.py), and so do large bodies kept in files
beside the database when HOOKSCOPE_BODY_FILE_BYTES asks for it (bodyfiles.py). Sequence
numbers only grow, even across clears, deletes and pruning, because `last_seq` is kept on the
endpoint row.

Only one process writes a database file at a time (lock.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

import aiosqlite

from hookscope.models import Capture, Endpoint, new_token
from hookscope.storage import (
    CaptureQuery,
    Conflict,
    Gone,
    json_column,
    stored_size,
    verdict_columns,
)
from hookscope.storage.sqlite.bodyfiles import BodyFiles
from hookscope.storage.sqlite.lock import create_private, take_lock
from hookscope.storage.sqlite.retention import STORED_BYTES, Retention
from hookscope.storage.sqlite.writer import Writer
from hookscope.storage.targets import EndpointCopies

SUMMARY_COLUMNS = (
    "c.id, c.endpoint_id, e.token, c.seq, c.received_at, c.method, c.path, c.query, c.headers, "
    "c.remote_addr, c.content_type, c.body_size, c.truncated, c.response_status, c.parsed_kind, "
    "c.parsed_error, c.signature, c.validation"
)
ENDPOINT_COLUMNS = (
    "id, token, alias, name, created_at, expires_at, max_captures, config, last_seq, "
    "capture_count, last_capture_at, max_bytes, stored_bytes"
)
log = logging.getLogger("hookscope.store")


class SQLiteStore(EndpointCopies):
    def __init__(self, path: str | os.PathLike[str], *, max_total_bytes: int = 0,
                 synchronous: str = "normal", body_file_bytes: int = 0) -> None:
        super().__init__()
        self.path = str(path)
        self._state = Retention(max_total_bytes)
        self._files = BodyFiles(self.path, body_file_bytes, synchronous)
        self._writer = Writer(self.path, (self._state, self._files), synchronous)
        self._read: aiosqlite.Connection | None = None
        self._lock_fd: int | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        create_private(self.path)
        self._lock_fd = take_lock(self.path)
        try:
            self._writer.start()
            # A process that died between writing a body file and committing its row left it.
            if orphans := await self._writer.run(self._files.sweep):
                log.info("removed %d body files that no capture pointed at", orphans)
            self._read = await aiosqlite.connect(self.path, isolation_level=None)
            await self._read.execute("PRAGMA query_only = ON")
            await self._read.execute("PRAGMA busy_timeout = 5000")
            await self._read.create_function("hookscope_body_file_has", 2, self._files.contains)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._read is not None:
            await self._read.close()
            self._read = None
        self._writer.stop()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # One process serves an SQLite file (its lock file sees to that): limits and the
    # failed-login throttle are counted in memory, by the app.
    shared = False

    async def take_tokens(self, buckets: Sequence[tuple[str, float]]) -> float:
        raise NotImplementedError("an SQLite store is not shared: the app counts in memory")

    def tell_failure(self, address: str) -> None:
        pass

    def unreachable(self, exc: BaseException) -> bool:
        return False  # a file: what fails is a bug or the disk, not a connection

    async def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        if self._read is None:
            raise RuntimeError("the store is closed")
        return list(await self._read.execute_fetchall(sql, params))

    # -- endpoints ---------------------------------------------------------------------------

    async def create_endpoint(self, fields: dict[str, Any]) -> Endpoint:
        endpoint = Endpoint(id=0, token="", alias=None, name=None, created_at=0, max_captures=1)
        for name, value in fields.items():
            setattr(endpoint, name, value)

        def op(conn: sqlite3.Connection) -> Endpoint:
            _check_alias_free(conn, endpoint.alias, None)
            while True:
                token = new_token()
                if conn.execute("SELECT 1 FROM endpoints WHERE token = ? OR alias = ?",
                                (token, token)).fetchone() is None:
                    break
            endpoint.token = token
            cursor = conn.execute(
                "INSERT INTO endpoints (token, alias, name, created_at, expires_at, max_captures, "
                "max_bytes, config) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (token, endpoint.alias, endpoint.name, endpoint.created_at, endpoint.expires_at,
                 endpoint.max_captures, endpoint.max_bytes, json.dumps(endpoint.config())))
            endpoint.id = cursor.lastrowid or 0
            return endpoint

        return await self._writer.run(op)

    async def get_endpoint(self, key: str) -> Endpoint | None:
        rows = await self._rows(
            f"SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE token = ? OR alias = ? "
            "ORDER BY token = ? DESC LIMIT 1", (key, key, key))
        return _endpoint(rows[0]) if rows else None

    async def list_endpoints(self, limit: int) -> list[Endpoint]:
        rows = await self._rows(
            f"SELECT {ENDPOINT_COLUMNS} FROM endpoints ORDER BY id DESC LIMIT ?", (limit,))
        return [_endpoint(row) for row in rows]

    async def update_endpoint(self, endpoint: Endpoint, fields: dict[str, Any]) -> Endpoint:
        endpoint_id = endpoint.id
        state = self._state

        def op(conn: sqlite3.Connection) -> Endpoint:
            row = conn.execute(f"SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE id = ?",
                               (endpoint_id,)).fetchone()
            if row is None:
                raise Gone("the endpoint was deleted meanwhile")
            current = _endpoint(row)
            if "alias" in fields:
                _check_alias_free(conn, fields["alias"], endpoint_id)
            for name, value in fields.items():
                setattr(current, name, value)
            conn.execute(
                "UPDATE endpoints SET alias = ?, name = ?, expires_at = ?, max_captures = ?, "
                "max_bytes = ?, config = ? WHERE id = ?",
                (current.alias, current.name, current.expires_at, current.max_captures,
                 current.max_bytes, json.dumps(current.config()), endpoint_id))
            counter = state.counter(conn, endpoint_id)
            counter.max_captures = current.max_captures
            counter.max_bytes = current.max_bytes
            state.dirty.add(endpoint_id)  # pruned to the new limits before this batch commits
            state.before_commit(conn)
            current.capture_count, current.stored_bytes = counter.count, counter.bytes
            current.last_seq = counter.last_seq
            return current

        try:
            return await self._writer.run(op)
        finally:
            self.forget_targets()

    async def delete_endpoint(self, endpoint: Endpoint) -> int:
        """Delete an endpoint with its captures; returns how many captures went with it."""
        try:
            return await self._writer.run(partial(self._state.delete_endpoint,
                                                  endpoint_id=endpoint.id))
        finally:
            self.forget_targets()

    async def delete_expired(self, now: int) -> list[int]:
        """Delete every endpoint that expired by `now` (µs), with its captures; their ids."""
        state = self._state

        def op(conn: sqlite3.Connection) -> list[int]:
            expired = [row[0] for row in conn.execute(
                "SELECT id FROM endpoints WHERE expires_at <= ?", (now,))]
            for endpoint_id in expired:
                state.delete_endpoint(conn, endpoint_id)
            return expired

        try:
            return await self._writer.run(op)
        finally:
            self.forget_targets()

    # -- captures ----------------------------------------------------------------------------

    async def add_capture(self, capture: Capture) -> int:
        """Store a capture; returns its sequence number once it is committed.

        The endpoint's limit comes from the writer's own counter (loaded from the database and
        kept current by update_endpoint), never from the request: a request that looked its
        endpoint up before a PATCH must not bring the old limit back.
        """
        state = self._state
        files = self._files
        body = capture.body or b""
        in_file = files.wanted(len(body))
        headers = json_column(capture.headers)
        size = stored_size(body, capture.path, capture.query, headers)
        values = (
            capture.id, capture.endpoint_id, capture.received_at, capture.method, capture.path,
            capture.query, headers, capture.remote_addr,
            capture.content_type, capture.body_size, int(capture.truncated),
            capture.response_status, capture.parsed_kind, capture.parsed_error,
            *verdict_columns(capture.signature, "unchecked"),
            *verdict_columns(capture.validation, "unknown"),
            (capture.validation or {}).get("format"),
            *((b"", len(body)) if in_file else (body, 0)))

        def op(conn: sqlite3.Connection) -> int:
            counter = state.counter(conn, capture.endpoint_id)
            seq = counter.last_seq + 1
            if in_file:
                files.write(capture.id, body)  # removed after the commit if the row is not in it
            conn.execute(
                "INSERT INTO captures (id, endpoint_id, received_at, method, path, query, headers, "
                "remote_addr, content_type, body_size, truncated, response_status, parsed_kind, "
                "parsed_error, signature_status, signature, validation_status, validation, "
                "format, body, file_bytes, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                "?, ?, ?, ?, ?, ?, ?, ?, ?)", (*values, seq))
            counter.last_seq = seq
            # A capture taken by the writer thread (a large body) can commit after one that
            # arrived later and was committed on the event loop.
            counter.last_at = max(counter.last_at or 0, capture.received_at)
            state.stored(conn, capture.endpoint_id, 1, size)
            return seq

        capture.seq = await self._writer.run(op, single=True, quick=True, size=len(body))
        return capture.seq

    async def get_capture(self, capture_id: str, *, body: bool = True) -> Capture | None:
        columns = SUMMARY_COLUMNS + (", c.body, c.file_bytes" if body else "")
        rows = await self._rows(
            f"SELECT {columns} FROM captures c JOIN endpoints e ON e.id = c.endpoint_id "
            "WHERE c.id = ?", (capture_id,))
        if not rows:
            return None
        capture = _capture(rows[0])
        if body and (file_bytes := rows[0][-1]):
            capture.body = await asyncio.to_thread(self._files.read, capture.id, file_bytes)
            if capture.body is None:
                if not await self._rows("SELECT 1 FROM captures WHERE id = ?", (capture_id,)):
                    return None  # deleted since its row was read: gone, not empty
                log.error("capture %s: its body file is missing", capture_id)
                capture.body = b""
        return capture

    async def capture_at(self, endpoint_id: int, seq: int) -> Capture | None:
        rows = await self._rows(
            f"SELECT {SUMMARY_COLUMNS} FROM captures c JOIN endpoints e ON e.id = c.endpoint_id "
            "WHERE c.endpoint_id = ? AND c.seq = ?", (endpoint_id, seq))
        return _capture(rows[0]) if rows else None

    async def list_captures(self, endpoint: Endpoint, query: CaptureQuery) -> list[Capture]:
        where = ["c.endpoint_id = ?"]
        params: list[Any] = [endpoint.id]
        for column, value in (("c.method", query.method),
                              ("c.signature_status", query.signature),
                              ("c.validation_status", query.validation),
                              ("c.format", query.format)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if query.q:
            pattern = "%" + query.q.replace("\\", "\\\\").replace("%", "\\%").replace(
                "_", "\\_") + "%"
            searched = ("c.path", "c.query", "c.headers", "CAST(c.body AS TEXT)")
            where.append("(" + " OR ".join(f"{c} LIKE ? ESCAPE '\\'" for c in searched)
                         + " OR (c.file_bytes > 0 AND hookscope_body_file_has(c.id, ?)))")
            params.extend([pattern] * len(searched) + [query.q])
        if query.before is not None:
            where.append("c.seq < ?")
            params.append(query.before)
        order = "DESC"
        if query.after is not None:
            where.append("c.seq > ?")
            params.append(query.after)
            order = "ASC"
        params.append(query.limit)
        rows = await self._rows(
            f"SELECT {SUMMARY_COLUMNS} FROM captures c JOIN endpoints e ON e.id = c.endpoint_id "
            f"WHERE {' AND '.join(where)} ORDER BY c.seq {order} LIMIT ?", tuple(params))
        return [_capture(row) for row in rows]

    async def delete_capture(self, capture_id: str) -> bool:
        state = self._state

        def op(conn: sqlite3.Connection) -> bool:
            row = conn.execute("DELETE FROM captures WHERE id = ? RETURNING endpoint_id, "
                               f"{STORED_BYTES}", (capture_id,)).fetchone()
            if row is None:
                return False
            state.stored(conn, row[0], -1, -row[1])
            return True

        return await self._writer.run(op)

    async def set_signature(self, capture_id: str, verdict: dict[str, Any] | None) -> bool:
        """Replace a capture's signature verdict (re-verification asked for by a user)."""
        status, verdict_json = verdict_columns(verdict, "unchecked")

        def op(conn: sqlite3.Connection) -> bool:
            return conn.execute(
                "UPDATE captures SET signature_status = ?, signature = ? WHERE id = ?",
                (status, verdict_json, capture_id)).rowcount == 1

        return await self._writer.run(op, single=True)

    # -- deliveries ----------------------------------------------------------------------------

    async def add_delivery(self, capture: Capture, delivery: dict[str, Any]) -> bool:
        record = json_column(delivery)

        def op(conn: sqlite3.Connection) -> bool:
            return conn.execute(
                "INSERT INTO deliveries (id, capture_id, created_at, record) SELECT ?, id, ?, ? "
                "FROM captures WHERE id = ?",
                (delivery["id"], time.time_ns() // 1000, record, capture.id)).rowcount == 1

        return await self._writer.run(op, single=True, quick=True, size=len(record))

    async def list_deliveries(self, capture_id: str) -> list[dict[str, Any]]:
        rows = await self._rows("SELECT record FROM deliveries WHERE capture_id = ? ORDER BY rowid",
                                (capture_id,))
        return [json.loads(row[0]) for row in rows]

    # -- browser sessions ----------------------------------------------------------------------

    async def revoke_session(self, nonce: str, expires_at: int) -> None:
        """A session logged out: refused until it would have expired (seconds since the epoch);
        those that have are forgotten."""

        def op(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM revoked_sessions WHERE expires_at < ?", (int(time.time()),))
            conn.execute("INSERT OR IGNORE INTO revoked_sessions (nonce, expires_at) VALUES (?, ?)",
                         (nonce, expires_at))

        await self._writer.run(op, single=True)

    async def session_revoked(self, nonce: str) -> bool:
        return bool(await self._rows("SELECT 1 FROM revoked_sessions WHERE nonce = ?", (nonce,)))

    async def clear_captures(self, endpoint: Endpoint) -> int:
        endpoint_id = endpoint.id
        state = self._state

        def op(conn: sqlite3.Connection) -> int:
            counter = state.counter(conn, endpoint_id)
            deleted = conn.execute("DELETE FROM captures WHERE endpoint_id = ?",
                                   (endpoint_id,)).rowcount
            state.stored(conn, endpoint_id, -counter.count, -counter.bytes)
            return int(deleted)

        return await self._writer.run(op)


def _check_alias_free(conn: sqlite3.Connection, alias: str | None, own_id: int | None) -> None:
    if alias is None:
        return
    row = conn.execute("SELECT id FROM endpoints WHERE (alias = ? OR token = ?) AND id IS NOT ?",
                       (alias, alias, own_id)).fetchone()
    if row is not None:
        raise Conflict("alias", f"alias {alias!r} is already taken")


def _endpoint(row: sqlite3.Row | tuple[Any, ...]) -> Endpoint:
    (id_, token, alias, name, created_at, expires_at, max_captures, config, last_seq,
     capture_count, last_capture_at, max_bytes, stored_bytes) = row
    return Endpoint(id=id_, token=token, alias=alias, name=name, created_at=created_at,
                    expires_at=expires_at, max_captures=max_captures, last_seq=last_seq,
                    capture_count=capture_count, last_capture_at=last_capture_at,
                    max_bytes=max_bytes, stored_bytes=stored_bytes, **json.loads(config))


def _capture(row: sqlite3.Row | tuple[Any, ...]) -> Capture:
    (id_, endpoint_id, token, seq, received_at, method, path, query, headers, remote_addr,
     content_type, body_size, truncated, response_status, parsed_kind, parsed_error, signature,
     validation, *rest) = row
    return Capture(id=id_, endpoint_id=endpoint_id, endpoint_token=token, seq=seq,
                   received_at=received_at, method=method, path=path, query=query,
                   headers=json.loads(headers), remote_addr=remote_addr,
                   content_type=content_type, body_size=body_size, truncated=bool(truncated),
                   response_status=response_status, parsed_kind=parsed_kind,
                   parsed_error=parsed_error,
                   signature=json.loads(signature) if signature else None,
                   validation=json.loads(validation) if validation else None,
                   body=rest[0] if rest else None)

