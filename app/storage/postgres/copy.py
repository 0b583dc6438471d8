"""A PostgreSQL database as `hookscope copy-data` reads and writes it (hookscope.storage.copy).

Servers may be using the database while a copy writes into it. A batch of captures locks its
endpoint's row first, as the store's writer does, so the counters of both stay right; the
endpoints are written under the store's lock on names, and the servers are told (`e`) to forget
their copies of endpoints.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from hookscope.storage import SchemaTooNew, describe, stored_size
from hookscope.storage.copy import CaptureRow, CopyFailed, CopyRefused, EndpointRow
from hookscope.storage.postgres import CONNECT_TIMEOUT_S, NOTIFY
from hookscope.storage.postgres.migrations import migrate
from hookscope.storage.postgres.store import lock_names

_ENDPOINT = ", ".join(EndpointRow._fields)
_CAPTURE = ", ".join(CaptureRow._fields)
_NEW_ENDPOINT = [name for name in EndpointRow._fields if name != "id"]
# What the driver and the server raise when a statement or the connection fails.
_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class PostgresSide:
    def __init__(self, url: str, *, create: bool) -> None:
        self.url = url
        self.create = create
        self._conn: Any = None

    async def open(self) -> None:
        try:
            self._conn = await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT_S)
        except (*_ERRORS, ValueError) as exc:
            raise CopyRefused(f"cannot use the PostgreSQL database {describe(self.url)}: "
                              f"{exc}") from None

    async def prepare(self) -> None:
        try:
            if not self.create and not await self._conn.fetchval(
                    "SELECT to_regclass('hookscope_schema') IS NOT NULL"):
                raise CopyRefused(f"{describe(self.url)} holds no Hookscope data")
            await migrate(self._conn)
        except (SchemaTooNew, *_ERRORS) as exc:
            raise CopyRefused(f"{describe(self.url)}: {exc}") from None

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close(timeout=CONNECT_TIMEOUT_S)
            except Exception:  # the server rolls back what the connection left unfinished
                conn.terminate()

    async def identity(self) -> tuple[Any, ...]:
        async with self._failures("read the database's name"):
            row = await self._conn.fetchrow(
                "SELECT current_database(), pg_postmaster_start_time(), "
                "current_setting('port')")
        return ("postgresql", *row)

    @asynccontextmanager
    async def _failures(self, doing: str) -> AsyncIterator[None]:
        """What fails while `doing` something, said as a CopyFailed."""
        try:
            yield
        except _ERRORS as exc:
            raise CopyFailed(f"{describe(self.url)}: could not {doing}: {exc}") from None

    # -- reading -----------------------------------------------------------------------------

    async def endpoints(self) -> list[EndpointRow]:
        async with self._failures("read the endpoints"):
            rows = await self._conn.fetch(f"SELECT {_ENDPOINT} FROM endpoints ORDER BY id")
        return [EndpointRow(*row) for row in rows]

    async def sizes(self, endpoint_id: int, after: int, through: int,
                    limit: int) -> list[tuple[int, int]]:
        async with self._failures("read the captures"):
            rows = await self._conn.fetch(
                "SELECT seq, octet_length(body) FROM captures WHERE endpoint_id = $1 "
                "AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4",
                endpoint_id, after, through, limit)
        return [(row[0], row[1]) for row in rows]

    async def captures(self, endpoint_id: int, after: int, through: int) -> list[CaptureRow]:
        async with self._failures("read the captures"):
            rows = await self._conn.fetch(
                f"SELECT {_CAPTURE} FROM captures WHERE endpoint_id = $1 AND seq > $2 "
                "AND seq <= $3 ORDER BY seq", endpoint_id, after, through)
        return [CaptureRow(*row) for row in rows]

    async def highest_seq(self, endpoint_id: int, through: int) -> int:
        async with self._failures("read the captures"):
            return int(await self._conn.fetchval(
                "SELECT COALESCE(max(seq), 0) FROM captures WHERE endpoint_id = $1 "
                "AND seq <= $2", endpoint_id, through))

    async def sessions(self) -> list[tuple[str, int]]:
        async with self._failures("read the revoked sessions"):
            rows = await self._conn.fetch("SELECT nonce, expires_at FROM revoked_sessions")
        return [(row[0], row[1]) for row in rows]

    async def deliveries(self, after: int, limit: int) -> list[tuple[int, str, str, int, str]]:
        async with self._failures("read the deliveries"):
            rows = await self._conn.fetch(
                "SELECT pk, id, capture_id, created_at, record FROM deliveries WHERE pk > $1 "
                "ORDER BY pk LIMIT $2", after, limit)
        return [(row[0], row[1], row[2], row[3], row[4]) for row in rows]

    # -- writing -----------------------------------------------------------------------------

    async def put_endpoints(self, rows: list[EndpointRow],
                            existing: dict[str, EndpointRow]) -> dict[str, int]:
        conn = self._conn
        ids = {}
        async with self._failures("write the endpoints"), conn.transaction():
            await lock_names(conn)
            for row in rows:
                if row.token in existing:
                    ids[row.token] = existing[row.token].id
                    await conn.execute(
                        "UPDATE endpoints SET alias = $1, name = $2, expires_at = $3, "
                        "max_captures = $4, max_bytes = $5, config = $6, "
                        "last_seq = GREATEST(last_seq, $7), "
                        "last_capture_at = GREATEST(last_capture_at, $8) WHERE id = $9",
                        row.alias, row.name, row.expires_at, row.max_captures, row.max_bytes,
                        row.config, row.last_seq, row.last_capture_at, ids[row.token])
                    continue
                fresh = row._replace(capture_count=0, stored_bytes=0)._asdict()
                ids[row.token] = await conn.fetchval(
                    f"INSERT INTO endpoints ({', '.join(_NEW_ENDPOINT)}) VALUES "
                    f"({', '.join(f'${n}' for n in range(1, len(_NEW_ENDPOINT) + 1))}) "
                    "RETURNING id", *(fresh[name] for name in _NEW_ENDPOINT))
            await conn.execute(NOTIFY, "e")
        return ids

    async def put_captures(self, endpoint_id: int, rows: list[CaptureRow]) -> None:
        conn = self._conn
        columns = len(CaptureRow._fields)
        stored = [stored_size(row.body, row.path, row.query, row.headers) for row in rows]
        async with (self._failures(f"write captures {rows[0].seq}..{rows[-1].seq}"),
                    conn.transaction()):
            await conn.execute("SELECT 1 FROM endpoints WHERE id = $1 FOR UPDATE", endpoint_id)
            await conn.executemany(
                f"INSERT INTO captures (endpoint_id, stored, {_CAPTURE}) VALUES "
                f"({', '.join(f'${n}' for n in range(1, columns + 3))})",
                [(endpoint_id, size, *row) for row, size in zip(rows, stored, strict=True)])
            await conn.execute("UPDATE endpoints SET capture_count = capture_count + $2, "
                               "stored_bytes = stored_bytes + $3 WHERE id = $1",
                               endpoint_id, len(rows), sum(stored))

    async def put_sessions(self, rows: list[tuple[str, int]]) -> None:
        async with self._failures("write the revoked sessions"):
            await self._conn.executemany(
                "INSERT INTO revoked_sessions (nonce, expires_at) VALUES ($1, $2) "
                "ON CONFLICT DO NOTHING", rows)

    async def put_deliveries(self, rows: list[tuple[str, str, int, str]]) -> int:
        async with self._failures("write the deliveries"), self._conn.transaction():
            added = await self._conn.fetch(
                "INSERT INTO deliveries (id, capture_id, created_at, record) SELECT d.id, c.id, "
                "d.created_at, d.record FROM unnest($1::text[], $2::text[], $3::bigint[], "
                "$4::text[]) WITH ORDINALITY AS d(id, capture_id, created_at, record, n) JOIN "
                "captures c ON c.id = d.capture_id ORDER BY d.n ON CONFLICT DO NOTHING "
                "RETURNING 1",
                [row[0] for row in rows], [row[1] for row in rows], [row[2] for row in rows],
                [row[3] for row in rows])
            return len(added)
