"""The PostgreSQL store: the Store protocol (hookscope.storage) on a server database, through
asyncpg.

Captures are committed in groups: every capture asked for while the previous group committed goes
into the next transaction, so a commit (synchronous_commit on: on disk before it returns) serves
many captures, and `add_capture` returns only once its group is committed. Each group locks its
endpoints' rows (FOR UPDATE, in id order), so `seq` is one gap-free sequence per endpoint
whichever process takes the capture, and the limits are held inside the same transaction.
Everything else runs in a transaction of its own on the read pool.

The processes on one database hear of each other through LISTEN/NOTIFY on the `hookscope`
channel, sent inside the transaction and so delivered only once it commits: `c <endpoint> <seq>`
for the newest capture of each endpoint in a group (`captures_elsewhere`: the app hands it to its
viewers, whose streams fill any gap from the store), `e` for a change to an endpoint and `d <id>`
for its deletion (each process forgets its copies when it arrives, milliseconds after the change
is answered, and ends the streams of a deleted endpoint), `f <origin> <address>` for a wrong
credential (each other process's throttle counts it) and `v <origin> <endpoint> <summary>` for a
delivery recorded on a capture. A process whose listening connection drops forgets its copies,
listens again, and then passes on each endpoint's newest capture, so its viewers fill from the
database whatever it did not hear meanwhile.

Rate limits are token buckets in the database (migration 2, `hookscope_take`), so a cap holds
across every process and host.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from hookscope.models import Capture, Endpoint, delivery_summary, new_token
from hookscope.storage import (
    CaptureQuery,
    Conflict,
    Gone,
    json_column,
    stored_size,
    verdict_columns,
)
from hookscope.storage.postgres.migrations import LATEST, migrate
from hookscope.storage.targets import EndpointCopies

log = logging.getLogger("hookscope.store")

ENDPOINT_COLUMNS = ("id, token, alias, name, created_at, expires_at, max_captures, config, "
                    "last_seq, capture_count, last_capture_at, max_bytes, stored_bytes")
SUMMARY_COLUMNS = (
    "c.id, c.endpoint_id, e.token, c.seq, c.received_at, c.method, c.path, c.query, c.headers, "
    "c.remote_addr, c.content_type, c.body_size, c.truncated, c.response_status, c.parsed_kind, "
    "c.parsed_error, c.signature, c.validation")
_CAPTURE_COLUMNS = (
    "id", "endpoint_id", "seq", "received_at", "method", "path", "query", "headers",
    "remote_addr", "content_type", "body_size", "truncated", "response_status", "parsed_kind",
    "parsed_error", "signature_status", "signature", "validation_status", "validation", "format",
    "stored", "body")
# The key of the advisory lock that serialises pruning to the total limit across processes.
TOTAL_LOCK = 0x546F74  # "Tot"
CHANNEL = "hookscope"
PRUNE_BATCH = 500
# The writer's session: a commit is on disk before it returns whatever the server's default, and
# a lock or statement that hangs fails its group (a 503) rather than every capture after it.
WRITER_SETTINGS = {"synchronous_commit": "on", "lock_timeout": "10s", "statement_timeout": "30s"}
CONNECT_TIMEOUT_S = 10
HEARTBEAT_S = 15.0
NOTIFY = f"SELECT pg_notify('{CHANNEL}', $1)"


@dataclass
class _Job:
    capture: Capture
    values: tuple[Any, ...]
    size: int
    future: asyncio.Future[int] = field(default_factory=lambda: asyncio.get_running_loop()
                                        .create_future())


class PostgresStore(EndpointCopies):
    def __init__(self, url: str, *, max_total_bytes: int = 0, pool_size: int = 10) -> None:
        super().__init__()
        self.url = url
        self.max_total_bytes = max_total_bytes
        self.pool_size = pool_size
        self._pool: Any = None
        self._writer: Any = None
        self._pending: list[_Job] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listener: Any = None
        self._listening: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._current: list[_Job] = []  # the group being committed
        self._heard: set[asyncio.Future[None]] = set()
        self._origin = secrets.token_hex(4)  # this process, in its `f` notes
        self._notes: set[asyncio.Task[None]] = set()

    # Any number of processes and hosts may serve one database.
    shared = True

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(self.url, min_size=1, max_size=self.pool_size)
        try:
            async with self._pool.acquire() as conn:
                await migrate(conn)
            self._writer = await self._connect_writer()
            await self._listen()
        except BaseException:
            if self._writer is not None:
                await self._writer.close()
                self._writer = None
            await self._pool.close()
            self._pool = None
            raise
        self._task = asyncio.create_task(self._commit_groups())
        self._heartbeat = asyncio.create_task(self._check_listener())

    async def _check_listener(self) -> None:
        """A listening connection that died quietly (a NAT or firewall dropping it while idle)
        is found within HEARTBEAT_S and replaced."""
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            listener = self._listener
            if listener is None or self._listening is not None:
                continue
            try:
                await listener.fetchval("SELECT 1", timeout=HEARTBEAT_S)
            except Exception:
                listener.terminate()  # the termination listener listens again

    async def _connect_writer(self) -> Any:
        return await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT_S,
                                     server_settings=WRITER_SETTINGS)

    async def _listen(self) -> None:
        conn = await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT_S)
        try:
            await conn.add_listener(CHANNEL, self._heard_of)
        except BaseException:
            conn.terminate()
            raise
        conn.add_termination_listener(self._lost_listener)
        self._listener = conn  # only once it listens

    def _lost_listener(self, conn: Any) -> None:
        if self._pool is not None and self._listening is None:
            self._listening = asyncio.create_task(self._listen_again())

    async def _listen_again(self) -> None:
        try:
            # Checked again after catching up: a connection lost meanwhile found this task
            # still running, and left listening again to it.
            while self._pool is not None and self._listener.is_closed():
                try:
                    await self._listen()
                    self.forget_targets()  # changes made meanwhile were not heard
                    await self._catch_up()
                except Exception as exc:
                    log.error("could not listen on PostgreSQL again: %s", exc)
                    self._listener.terminate()  # then all of it again, listening first
                    await asyncio.sleep(1)
        finally:
            self._listening = None

    async def _catch_up(self) -> None:
        """Pass on each endpoint's newest capture, as if heard of: captures other processes
        committed while this one was not listening (PostgreSQL restarting, say: the others'
        writers may commit again before this one listens again) were not heard of, and would
        reach the viewers here only with the endpoint's next capture, however long that takes.
        A stream here fills the gap before it from the database and skips what it already
        sent; a long-poll looks in the database again. Listening began before this reads, so
        nothing committed in between is missed either."""
        if self.captures_elsewhere is None:
            return
        rows = await self._reads().fetch("SELECT id, last_seq FROM endpoints WHERE last_seq > 0")
        for endpoint_id, seq in rows:
            try:
                await self.captures_elsewhere(endpoint_id, seq)
            except Exception as exc:  # its viewers here catch up with its next capture
                log.error("could not pass on another process's capture: %s", exc)

    def _heard_of(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        if payload == "e":
            self.forget_targets()
            return
        if payload.startswith("v "):
            origin, _, rest = payload[2:].partition(" ")
            endpoint_id, _, delivery_id = rest.partition(" ")
            if (origin != self._origin and endpoint_id.isdigit() and delivery_id
                    and self.deliveries_elsewhere is not None):
                self._pass_on(self._delivery_after(list(self._heard), self.deliveries_elsewhere,
                                                   int(endpoint_id), delivery_id))
            return
        if payload.startswith("f "):
            _, _, rest = payload.partition(" ")
            origin, _, address = rest.partition(" ")
            if origin != self._origin and address and self.failures_elsewhere is not None:
                self.failures_elsewhere(address)
            return
        parts = payload.split()
        if len(parts) == 2 and parts[0] == "d" and parts[1].isdigit():
            self.forget_targets()
            if self.deleted_elsewhere is not None:
                self.deleted_elsewhere(int(parts[1]))  # its streams here end (and get a 404)
            return
        if len(parts) != 3 or parts[0] != "c" or not parts[1].isdigit() or not parts[2].isdigit():
            return  # not ours
        writer = self._writer
        if self.captures_elsewhere is None or (
                writer is not None and pid == writer.get_server_pid()):
            return  # this process's own captures reach its viewers directly
        self._pass_on(self.captures_elsewhere(int(parts[1]), int(parts[2])))

    def _pass_on(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._heard.add(task)
        task.add_done_callback(_heard_done)
        task.add_done_callback(self._heard.discard)

    async def _delivery_after(self, earlier: list[asyncio.Future[None]],
                              deliver: Callable[[int, dict[str, Any]], None], endpoint_id: int,
                              delivery_id: str) -> None:
        """A delivery reaches viewers after the captures heard of before it, which are read
        from the database first: its capture's event comes before it, as in the process that
        took both."""
        await asyncio.gather(*earlier, return_exceptions=True)
        record = await self._reads().fetchval(
            "SELECT record FROM deliveries WHERE id = $1", delivery_id)
        if record is not None:  # else deleted meanwhile, with its capture
            deliver(endpoint_id, delivery_summary(json.loads(record)))

    async def close(self) -> None:
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
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
            self._heartbeat = None
        if self._writer is not None:
            await self._writer.close()
            self._writer = None
        pool, self._pool = self._pool, None  # first: a closed listener must not listen again
        # What is still passing on captures, deliveries or notes goes first: none may outlive
        # the store, or use its pool while it closes.
        leftovers: list[asyncio.Future[None]] = [
            *self._heard, *self._notes, *([self._listening] if self._listening else [])]
        for leftover in leftovers:
            leftover.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        if pool is not None:
            await pool.close()

    def _reads(self) -> Any:
        if self._pool is None:
            raise RuntimeError("the store is closed")
        return self._pool

    # -- endpoints ---------------------------------------------------------------------------

    async def create_endpoint(self, fields: dict[str, Any]) -> Endpoint:
        endpoint = Endpoint(id=0, token="", alias=None, name=None, created_at=0, max_captures=1)
        for name, value in fields.items():
            setattr(endpoint, name, value)
        async with self._reads().acquire() as conn, conn.transaction():
            await lock_names(conn)
            await _check_alias_free(conn, endpoint.alias, None)
            while True:
                token = new_token()
                if not await conn.fetchval("SELECT 1 FROM endpoints WHERE token = $1 OR "
                                           "alias = $1", token):
                    break
            endpoint.token = token
            endpoint.id = await conn.fetchval(
                "INSERT INTO endpoints (token, alias, name, created_at, expires_at, "
                "max_captures, max_bytes, config) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
                "RETURNING id", token, endpoint.alias, endpoint.name, endpoint.created_at,
                endpoint.expires_at, endpoint.max_captures, endpoint.max_bytes,
                json.dumps(endpoint.config()))
        return endpoint

    async def get_endpoint(self, key: str) -> Endpoint | None:
        if "\x00" in key:  # no text in PostgreSQL holds a NUL (the server would refuse it)
            return None
        row = await self._reads().fetchrow(
            f"SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE token = $1 OR alias = $1 "
            "ORDER BY token = $1 DESC LIMIT 1", key)
        return None if row is None else _endpoint(row)

    async def list_endpoints(self, limit: int) -> list[Endpoint]:
        rows = await self._reads().fetch(
            f"SELECT {ENDPOINT_COLUMNS} FROM endpoints ORDER BY id DESC LIMIT $1", limit)
        return [_endpoint(row) for row in rows]

    async def update_endpoint(self, endpoint: Endpoint, fields: dict[str, Any]) -> Endpoint:
        try:
            async with self._reads().acquire() as conn, conn.transaction():
                await self._lock_total(conn)
                if "alias" in fields:
                    await lock_names(conn)
                row = await conn.fetchrow(f"SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE id = $1 "
                                          "FOR UPDATE", endpoint.id)
                if row is None:
                    raise Gone("the endpoint was deleted meanwhile")
                current = _endpoint(row)
                if "alias" in fields:
                    await _check_alias_free(conn, fields["alias"], endpoint.id)
                for name, value in fields.items():
                    setattr(current, name, value)
                await self._prune(conn, await conn.fetch(
                    "UPDATE endpoints SET alias = $1, name = $2, expires_at = $3, "
                    "max_captures = $4, max_bytes = $5, config = $6 WHERE id = $7 RETURNING id, "
                    "capture_count, max_captures, stored_bytes, max_bytes",
                    current.alias, current.name, current.expires_at, current.max_captures,
                    current.max_bytes, json.dumps(current.config()), endpoint.id))
                await conn.execute(NOTIFY, "e")
                row = await conn.fetchrow(f"SELECT {ENDPOINT_COLUMNS} FROM endpoints "
                                          "WHERE id = $1", endpoint.id)
                return _endpoint(row)
        finally:
            self.forget_targets()

    async def delete_endpoint(self, endpoint: Endpoint) -> int:
        try:
            async with self._reads().acquire() as conn, conn.transaction():
                await self._lock_total(conn)
                count = await conn.fetchval(
                    "DELETE FROM endpoints WHERE id = $1 RETURNING capture_count", endpoint.id)
                await conn.execute(NOTIFY, f"d {endpoint.id}")
                return int(count or 0)
        finally:
            self.forget_targets()

    async def delete_expired(self, now: int) -> list[int]:
        try:
            async with self._reads().acquire() as conn, conn.transaction():
                await self._lock_total(conn)
                # Locked in id order first, as every writer locks endpoints, so a sweep and a
                # commit never wait for each other in a circle.
                rows = await conn.fetch(
                    "DELETE FROM endpoints WHERE id IN (SELECT id FROM endpoints WHERE "
                    "expires_at <= $1 ORDER BY id FOR UPDATE) RETURNING id", now)
                for row in rows:
                    await conn.execute(NOTIFY, f"d {row[0]}")
            # A full bucket is what a missing one starts as: those of idle (or deleted)
            # endpoints go, apart from the sweep above, and never one a request holds.
            await self._reads().execute(
                "DELETE FROM rate_buckets WHERE name IN (SELECT name FROM rate_buckets WHERE "
                "tokens + (extract(epoch FROM clock_timestamp()) - stamp) * rate >= "
                "greatest(1, rate) ORDER BY name FOR UPDATE SKIP LOCKED)")
            return [row[0] for row in rows]
        finally:
            self.forget_targets()

    # -- captures ----------------------------------------------------------------------------

    async def add_capture(self, capture: Capture) -> int:
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
                    await self._reconnect_writer()
                self._current = []
                for job in group:
                    outcome = outcomes[id(job)]
                    if job.future.done():
                        continue
                    if isinstance(outcome, BaseException):
                        job.future.set_exception(outcome)
                    else:
                        job.future.set_result(outcome)

    async def _reconnect_writer(self) -> None:
        if self._writer is not None and not self._writer.is_closed():
            return
        try:
            self._writer = await self._connect_writer()
        except Exception as exc:  # the next group tries again
            log.error("could not reconnect to PostgreSQL: %s", exc)

    async def _commit(self, group: list[_Job]) -> dict[int, Any]:
        conn = self._writer
        if conn is None or conn.is_closed():
            await self._reconnect_writer()
            conn = self._writer
        outcomes: dict[int, Any] = {}
        async with conn.transaction():
            await self._lock_total(conn)
            # Per endpoint: how many captures, the newest's time, their stored bytes.
            totals: dict[int, list[int]] = {}
            for job in group:
                total = totals.setdefault(job.capture.endpoint_id, [0, 0, 0])
                total[0] += 1
                total[1] = max(total[1], job.capture.received_at)
                total[2] += job.size
            keys = sorted(totals)
            # One statement locks the endpoints (in id order, as every writer does), takes the
            # group's sequence numbers, counts its captures in, tells the other processes of
            # them (NOTIFY, delivered at the commit) and returns what pruning looks at: each
            # statement is a round trip while the transaction holds the rows.
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
                await self._prune(conn, updated)
        return outcomes

    async def _prune(self, conn: Any, endpoints: list[Any]) -> None:
        """Hold the endpoints (rows of id, capture_count, max_captures, stored_bytes, max_bytes
        as this transaction left them), and all of them together, to their limits: oldest
        first, an endpoint's newest capture never."""
        for row in endpoints:
            endpoint_id = row["id"]
            if row["capture_count"] > row["max_captures"]:
                await self._delete(conn, "DELETE FROM captures WHERE pk IN (SELECT pk FROM "
                                   "captures WHERE endpoint_id = $1 ORDER BY seq LIMIT $2) "
                                   "RETURNING endpoint_id, stored",
                                   endpoint_id, row["capture_count"] - row["max_captures"])
                row = await conn.fetchrow("SELECT stored_bytes, max_bytes FROM endpoints "
                                          "WHERE id = $1", endpoint_id)
            if row["max_bytes"] is not None and row["stored_bytes"] > row["max_bytes"]:
                await self._prune_bytes(conn, endpoint_id, row["stored_bytes"] - row["max_bytes"])
        if self.max_total_bytes:
            total = await conn.fetchval("SELECT COALESCE(sum(stored_bytes), 0) FROM endpoints")
            await self._prune_total(conn, total - self.max_total_bytes)

    async def _prune_bytes(self, conn: Any, endpoint_id: int, excess: int) -> None:
        """Delete an endpoint's oldest captures, never its newest, until `excess` stored bytes
        are gone. An endpoint held at its max_bytes prunes a little at nearly every commit."""
        newest = await conn.fetchval("SELECT max(seq) FROM captures WHERE endpoint_id = $1",
                                     endpoint_id)
        if newest is not None:
            await self._prune_oldest(
                conn, excess, "SELECT seq, pk, stored FROM captures WHERE endpoint_id = $2 AND "
                "seq > $1 AND seq < $3 ORDER BY seq LIMIT $4", endpoint_id, newest)

    async def _prune_total(self, conn: Any, excess: int) -> None:
        """Delete the oldest captures of all endpoints, none an endpoint's newest, until `excess`
        stored bytes are gone."""
        await self._prune_oldest(
            conn, excess, "SELECT c.pk, c.pk, c.stored FROM captures c WHERE c.pk > $1 AND "
            "EXISTS (SELECT 1 FROM captures n WHERE n.endpoint_id = c.endpoint_id AND "
            "n.seq > c.seq) ORDER BY c.pk LIMIT $2")

    async def _prune_oldest(self, conn: Any, excess: int, oldest: str, *args: Any) -> None:
        """Delete what `oldest` lists (cursor, pk, stored; $1 the cursor to go on after, the
        batch size last) until `excess` stored bytes are gone: read in batches, so a large
        table is not read whole for the few captures one commit pushes out."""
        after = 0
        while excess > 0:
            rows = await conn.fetch(oldest, after, *args, PRUNE_BATCH)
            if not rows:
                return
            doomed = []
            for _, pk, stored in rows:
                if excess <= 0:
                    break
                doomed.append(pk)
                excess -= stored
            after = rows[-1][0]
            await self._delete(conn, "DELETE FROM captures WHERE pk = ANY($1::bigint[]) "
                               "RETURNING endpoint_id, stored", doomed)

    async def _lock_total(self, conn: Any) -> None:
        """With a total limit, every write transaction takes this lock first, before any row:
        pruning to the total deletes other endpoints' captures and updates their rows, and one
        lock order for all writers (this lock, then endpoint rows in id order, then captures)
        is what keeps them from deadlocking."""
        if self.max_total_bytes:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", TOTAL_LOCK)

    async def _delete(self, conn: Any, sql: str, *args: Any) -> None:
        """Delete what `sql` returns (endpoint_id, stored), keeping the counters in step."""
        freed: dict[int, list[int]] = {}
        for endpoint_id, stored in await conn.fetch(sql, *args):
            totals = freed.setdefault(endpoint_id, [0, 0])
            totals[0] += 1
            totals[1] += stored
        if freed:
            await conn.executemany(
                "UPDATE endpoints SET capture_count = capture_count - $2, "
                "stored_bytes = stored_bytes - $3 WHERE id = $1",
                [(key, count, size) for key, (count, size) in freed.items()])

    async def get_capture(self, capture_id: str, *, body: bool = True) -> Capture | None:
        if "\x00" in capture_id:
            return None
        columns = SUMMARY_COLUMNS + (", c.body" if body else "")
        row = await self._reads().fetchrow(
            f"SELECT {columns} FROM captures c JOIN endpoints e ON e.id = c.endpoint_id "
            "WHERE c.id = $1", capture_id)
        return None if row is None else _capture(row)

    async def capture_at(self, endpoint_id: int, seq: int) -> Capture | None:
        row = await self._reads().fetchrow(
            f"SELECT {SUMMARY_COLUMNS} FROM captures c JOIN endpoints e ON e.id = c.endpoint_id "
            "WHERE c.endpoint_id = $1 AND c.seq = $2", endpoint_id, seq)
        return None if row is None else _capture(row)

    async def list_captures(self, endpoint: Endpoint, query: CaptureQuery) -> list[Capture]:
        where = ["c.endpoint_id = $1"]
        params: list[Any] = [endpoint.id]

        def param(value: Any) -> str:
            params.append(value)
            return f"${len(params)}"

        for column, value in (("c.method", query.method),
                              ("c.signature_status", query.signature),
                              ("c.validation_status", query.validation),
                              ("c.format", query.format)):
            if value is not None:
                if "\x00" in value:  # no stored text holds a NUL
                    return []
                where.append(f"{column} = {param(value)}")
        if query.q:
            # The body byte for byte, ASCII letters in either case, as SQLite's LIKE finds it:
            # lowered through the escape format, whose text is ASCII (C: ASCII letters only).
            needle = param(query.q.encode().lower())
            found = [f"position({needle}::bytea in decode(lower(encode(c.body, 'escape') "
                     "COLLATE \"C\"), 'escape')) > 0"]
            if "\x00" not in query.q:  # text holds no NUL: only a body can have one
                pattern = param("%" + query.q.replace("\\", "\\\\").replace("%", "\\%")
                                .replace("_", "\\_") + "%")
                # ASCII letters in either case and no others, as SQLite's LIKE: lower() under
                # the C collation folds only those (ILIKE would fold é and É too).
                found += [f"lower({column} COLLATE \"C\") LIKE lower({pattern} COLLATE \"C\")"
                          for column in ("c.path", "c.query", "c.headers")]
            where.append(f"({' OR '.join(found)})")
        if query.before is not None:
            where.append(f"c.seq < {param(query.before)}")
        order = "DESC"
        if query.after is not None:
            where.append(f"c.seq > {param(query.after)}")
            order = "ASC"
        limit = param(query.limit)
        rows = await self._reads().fetch(
            f"SELECT {SUMMARY_COLUMNS} FROM captures c JOIN endpoints e ON e.id = c.endpoint_id "
            f"WHERE {' AND '.join(where)} ORDER BY c.seq {order} LIMIT {limit}", *params)
        return [_capture(row) for row in rows]

    async def delete_capture(self, capture_id: str) -> bool:
        if "\x00" in capture_id:
            return False
        async with self._reads().acquire() as conn, conn.transaction():
            await self._lock_total(conn)
            # The endpoint's row before its capture's, in the writer's order.
            endpoint_id = await conn.fetchval("SELECT endpoint_id FROM captures WHERE id = $1",
                                              capture_id)
            if endpoint_id is None:
                return False
            await conn.execute("SELECT 1 FROM endpoints WHERE id = $1 FOR UPDATE", endpoint_id)
            row = await conn.fetchrow("DELETE FROM captures WHERE id = $1 "
                                      "RETURNING endpoint_id, stored", capture_id)
            if row is None:
                return False
            await conn.execute("UPDATE endpoints SET capture_count = capture_count - 1, "
                               "stored_bytes = stored_bytes - $2 WHERE id = $1",
                               row["endpoint_id"], row["stored"])
            return True

    async def set_signature(self, capture_id: str, verdict: dict[str, Any] | None) -> bool:
        status, verdict_json = verdict_columns(verdict, "unchecked")
        result = await self._reads().execute(
            "UPDATE captures SET signature_status = $1, signature = $2 WHERE id = $3",
            status, verdict_json, capture_id)
        return bool(result == "UPDATE 1")

    async def clear_captures(self, endpoint: Endpoint) -> int:
        async with self._reads().acquire() as conn, conn.transaction():
            await self._lock_total(conn)
            await conn.execute("SELECT 1 FROM endpoints WHERE id = $1 FOR UPDATE", endpoint.id)
            result = await conn.execute("DELETE FROM captures WHERE endpoint_id = $1",
                                        endpoint.id)
            await conn.execute("UPDATE endpoints SET capture_count = 0, stored_bytes = 0 "
                               "WHERE id = $1", endpoint.id)
            return int(result.split()[-1])

    # -- browser sessions --------------------------------------------------------------------

    # -- deliveries --------------------------------------------------------------------------

    async def add_delivery(self, capture: Capture, delivery: dict[str, Any]) -> bool:
        async with self._reads().acquire() as conn, conn.transaction():
            added = await conn.fetchval(
                "INSERT INTO deliveries (id, capture_id, created_at, record) SELECT $1, id, $2, $3 "
                "FROM captures WHERE id = $4 RETURNING 1",
                delivery["id"], time.time_ns() // 1000, json_column(delivery), capture.id)
            if added:
                # Its id, not the delivery: a NOTIFY payload is capped at 8000 bytes, which a
                # delivery's text fields can pass.
                await conn.execute(NOTIFY, f"v {self._origin} {capture.endpoint_id} "
                                           f"{delivery['id']}")
        return bool(added)

    async def list_deliveries(self, capture_id: str) -> list[dict[str, Any]]:
        rows = await self._reads().fetch(
            "SELECT record FROM deliveries WHERE capture_id = $1 ORDER BY pk", capture_id)
        return [json.loads(row[0]) for row in rows]

    # -- shared limits ---------------------------------------------------------------------

    async def take_tokens(self, buckets: Sequence[tuple[str, float]]) -> float:
        ordered = sorted(buckets)  # one lock order for every process
        wait = await self._reads().fetchval(
            "SELECT hookscope_take($1::text[], $2::float8[])",
            [name for name, _ in ordered], [rate for _, rate in ordered])
        return float(wait)

    def unreachable(self, exc: BaseException) -> bool:
        return isinstance(exc, OSError | TimeoutError | asyncpg.InterfaceError
                          | asyncpg.PostgresConnectionError | asyncpg.CannotConnectNowError
                          | asyncpg.AdminShutdownError)

    def tell_failure(self, address: str) -> None:
        """A note, not awaited: the refusal it follows is not held up, and the others count
        the guess when it arrives."""
        note = asyncio.ensure_future(self._note(f"f {self._origin} {address}"))
        self._notes.add(note)
        note.add_done_callback(self._notes.discard)

    async def _note(self, payload: str) -> None:
        try:
            await self._reads().execute(NOTIFY, payload)
        except Exception as exc:
            log.warning("could not tell the other processes of a failed login: %s", exc)

    async def revoke_session(self, nonce: str, expires_at: int) -> None:
        async with self._reads().acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM revoked_sessions WHERE expires_at < $1",
                               int(time.time()))
            await conn.execute("INSERT INTO revoked_sessions (nonce, expires_at) VALUES ($1, $2) "
                               "ON CONFLICT DO NOTHING", nonce, expires_at)

    async def session_revoked(self, nonce: str) -> bool:
        return bool(await self._reads().fetchval(
            "SELECT 1 FROM revoked_sessions WHERE nonce = $1", nonce))


def _heard_done(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("could not pass on another process's capture: %s", exc)


async def lock_names(conn: Any) -> None:
    """Serialise the checks that an alias or token is free, across processes."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", 0x4E616D65)  # "Name"


async def _check_alias_free(conn: Any, alias: str | None, own_id: int | None) -> None:
    if alias is None:
        return
    taken = await conn.fetchval("SELECT id FROM endpoints WHERE (alias = $1 OR token = $1) "
                                "AND id IS DISTINCT FROM $2", alias, own_id)
    if taken is not None:
        raise Conflict("alias", f"alias {alias!r} is already taken")


def _endpoint(row: Any) -> Endpoint:
    return Endpoint(id=row["id"], token=row["token"], alias=row["alias"], name=row["name"],
                    created_at=row["created_at"], expires_at=row["expires_at"],
                    max_captures=row["max_captures"], last_seq=row["last_seq"],
                    capture_count=row["capture_count"], last_capture_at=row["last_capture_at"],
                    max_bytes=row["max_bytes"], stored_bytes=row["stored_bytes"],
                    **json.loads(row["config"]))


def _capture(row: Any) -> Capture:
    return Capture(id=row["id"], endpoint_id=row["endpoint_id"], endpoint_token=row["token"],
                   seq=row["seq"], received_at=row["received_at"], method=row["method"],
                   path=row["path"], query=row["query"], headers=json.loads(row["headers"]),
                   remote_addr=row["remote_addr"], content_type=row["content_type"],
                   body_size=row["body_size"], truncated=row["truncated"],
                   response_status=row["response_status"], parsed_kind=row["parsed_kind"],
                   parsed_error=row["parsed_error"],
                   signature=json.loads(row["signature"]) if row["signature"] else None,
                   validation=json.loads(row["validation"]) if row["validation"] else None,
                   body=_bytes(row.get("body")))


def _bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def check_reachable(url: str) -> None:
    """Fail early, with a message rather than a traceback, when the database cannot be
    reached or was written by a newer Hookscope."""
    from hookscope.storage import SchemaTooNew

    async def check() -> None:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            if await conn.fetchval("SELECT to_regclass('hookscope_schema')") is not None:
                version = await conn.fetchval("SELECT max(version) FROM hookscope_schema") or 0
                if version > LATEST:
                    raise SchemaTooNew(f"the database was written by a newer Hookscope (schema "
                                       f"{version}, this one knows {LATEST}); upgrade Hookscope "
                                       "or use another database")
        finally:
            await conn.close()

    try:
        asyncio.run(check())
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        raise OSError(f"cannot use the PostgreSQL database: {exc}") from None
