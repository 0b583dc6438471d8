"""The PostgreSQL store's group commit: every capture asked for while the previous group
committed goes into the next transaction, on a connection of its own whose commits are on disk
before they return (synchronous_commit on, whatever the server's default), and `add` returns
only once its group is committed.

A group's transaction is four round trips: BEGIN; one UPDATE that locks the group's endpoints
(in id order, as every writer locks them), takes their sequence numbers, counts the captures in
and NOTIFYs the other processes (delivered at the commit); COPY of the captures; COMMIT. Pruning
to the limits (retention.py) happens in the same transaction, when a limit is passed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from hookscope.models import Capture
from hookscope.storage import Gone, json_column, stored_size, verdict_columns
from hookscope.storage.postgres import CHANNEL, CONNECT_TIMEOUT_S
from hookscope.storage.postgres.retention import Retention

log = logging.getLogger("hookscope.store")

_CAPTURE_COLUMNS = (
    "id", "endpoint_id", "seq", "received_at", "method", "path", "query", "headers",
    "remote_addr", "content_type", "body_size", "truncated", "response_status", "parsed_kind",
    "parsed_error", "signature_status", "signature", "validation_status", "validation", "format",
    "stored", "body")
# The writer's session: a commit is on disk before it returns whatever the server's default, and
# a lock or statement that hangs fails its group (a 503) rather than every capture after it.
WRITER_SETTINGS = {"synchronous_commit": "on", "lock_timeout": "10s", "statement_timeout": "30s"}


@dataclass
class _Job:
    capture: Capture
    values: tuple[Any, ...]
    size: int
    future: asyncio.Future[int] = field(default_factory=lambda: asyncio.get_running_loop()
                                        .create_future())


class GroupWriter:
    def __init__(self, url: str, retention: Retention) -> None:
        self.url = url
        self.retention = retention
        self.conn: Any = None
        self._pending: list[_Job] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._current: list[_Job] = []  # the group being committed

    async def start(self) -> None:
        self.conn = await self._connect()
        self._task = asyncio.create_task(self._commit_groups())

    def server_pid(self) -> int | None:
        """The server process of this writer's connection: its NOTIFYs come from it."""
        conn = self.conn
        return None if conn is None else int(conn.get_server_pid())

    async def add(self, capture: Capture) -> int:
        if self._task is None:
            raise RuntimeError("the store is closed")
        body = capture.body or b""
        headers = json_column(capture.headers)
        size = stored_size(body, capture.path, capture.query, headers)
        values = (
            capture.received_at, capture.method, capture.path, capture.query, headers,
            capture.remote_addr, capture.content_type, capture.body_size, capture.truncated,
            capture.response_status, capture.parsed_kind, capture.parsed_error,
            *verdict_columns(capture.signature, "unchecked"),
            *verdict_columns(capture.validation, "unknown"),
            (capture.validation or {}).get("format"), size, body)
        job = _Job(capture, values, size)
        self._pending.append(job)
        self._wake.set()
        capture.seq = await job.future
        return capture.seq

    async def stop(self) -> None:
        if self._task is not None:
            task, self._task = self._task, None  # no new captures from here on
            # The group being committed finishes (its captures are answered as it ends); then
            # the loop stops, and whatever was left is failed, never left waiting.
            for _ in range(200):
                if not self._current:
                    break
                await asyncio.sleep(0.05)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for job in [*self._current, *self._pending]:
            if not job.future.done():
                job.future.set_exception(RuntimeError("the store is closed"))
        self._current = []
        self._pending.clear()
        if self.conn is not None:
            await self.conn.close()
            self.conn = None

    async def _connect(self) -> Any:
        return await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT_S,
                                     server_settings=WRITER_SETTINGS)

    async def _commit_groups(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                group, self._pending = self._pending, []
                self._current = group
                try:
                    try:
                        outcomes = await self._commit(group)
                    except asyncpg.DeadlockDetectedError:
                        outcomes = await self._commit(group)  # nothing of it was committed
                except Exception as exc:
                    log.error("could not commit %d captures: %s", len(group), exc)
                    outcomes = {id(job): exc for job in group}
                    await self._reconnect()
                self._current = []
                for job in group:
                    outcome = outcomes[id(job)]
                    if job.future.done():
                        continue
                    if isinstance(outcome, BaseException):
                        job.future.set_exception(outcome)
                    else:
                        job.future.set_result(outcome)

    async def _reconnect(self) -> None:
        if self.conn is not None and not self.conn.is_closed():
            return
        try:
            self.conn = await self._connect()
        except Exception as exc:  # the next group tries again
            log.error("could not reconnect to PostgreSQL: %s", exc)

    async def _commit(self, group: list[_Job]) -> dict[int, Any]:
        conn = self.conn
        if conn is None or conn.is_closed():
            await self._reconnect()
            conn = self.conn
        outcomes: dict[int, Any] = {}
        async with conn.transaction():
            await self.retention.lock_total(conn)
            # Per endpoint: how many captures, the newest's time, their stored bytes.
            totals: dict[int, list[int]] = {}
            for job in group:
                total = totals.setdefault(job.capture.endpoint_id, [0, 0, 0])
                total[0] += 1
                total[1] = max(total[1], job.capture.received_at)
                total[2] += job.size
            keys = sorted(totals)
            # One statement for what the module's notes say: each statement is a round trip
            # while the transaction holds the rows.
            updated = await conn.fetch(
                "WITH locked AS (SELECT id FROM endpoints WHERE id = ANY($1::bigint[]) "
                "ORDER BY id FOR UPDATE) "
                "UPDATE endpoints e SET last_seq = e.last_seq + u.n, "
                "last_capture_at = GREATEST(e.last_capture_at, u.last_at), "
                "capture_count = e.capture_count + u.n, stored_bytes = e.stored_bytes + u.size "
                "FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[]) "
                "AS u(id, n, last_at, size), locked WHERE e.id = u.id AND locked.id = u.id "
                "RETURNING e.id, e.last_seq, e.capture_count, e.max_captures, e.stored_bytes, "
                f"e.max_bytes, pg_notify('{CHANNEL}', 'c ' || e.id || ' ' || e.last_seq)",
                keys, [totals[k][0] for k in keys], [totals[k][1] for k in keys],
                [totals[k][2] for k in keys])
            next_seq = {row["id"]: row["last_seq"] - totals[row["id"]][0] + 1 for row in updated}
            records = []
            for job in group:
                endpoint_id = job.capture.endpoint_id
                seq = next_seq.get(endpoint_id)
                if seq is None:
                    outcomes[id(job)] = Gone(f"endpoint {endpoint_id} no longer exists")
                    continue
                next_seq[endpoint_id] = seq + 1
                outcomes[id(job)] = seq
                records.append((job.capture.id, endpoint_id, seq, *job.values))
            if records:
                # COPY: one message for the whole group, where INSERT binds every row apart.
                await conn.copy_records_to_table("captures", records=records,
                                                 columns=_CAPTURE_COLUMNS)
                await self.retention.prune(conn, updated)
        return outcomes
