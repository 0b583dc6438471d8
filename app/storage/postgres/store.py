"""The PostgreSQL store: the Store protocol (hookscope.storage) on a server database, through
asyncpg.

Captures are committed in groups (writer.py), each locking its endpoints' rows in id order, so
`seq` is one gap-free sequence per endpoint whichever process takes the capture, and the limits
(retention.py) are held inside the same transaction. Everything else runs in a transaction of its
own on the read pool.

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
from typing import Any

import asyncpg

from hookscope.models import Capture, Endpoint, delivery_summary, new_token
from hookscope.storage import (
    CaptureQuery,
    Conflict,
    Gone,
    json_column,
    verdict_columns,
)
from hookscope.storage.postgres import CHANNEL, CONNECT_TIMEOUT_S, NOTIFY
from hookscope.storage.postgres.migrations import LATEST, migrate
from hookscope.storage.postgres.retention import Retention
from hookscope.storage.postgres.writer import GroupWriter
from hookscope.storage.targets import EndpointCopies

log = logging.getLogger("hookscope.store")

ENDPOINT_COLUMNS = ("id, token, alias, name, created_at, expires_at, max_captures, config, "
                    "last_seq, capture_count, last_capture_at, max_bytes, stored_bytes")
SUMMARY_COLUMNS = (
    "c.id, c.endpoint_id, e.token, c.seq, c.received_at, c.method, c.path, c.query, c.headers, "
    "c.remote_addr, c.content_type, c.body_size, c.truncated, c.response_status, c.parsed_kind, "
    "c.parsed_error, c.signature, c.validation")
HEARTBEAT_S = 15.0


class PostgresStore(EndpointCopies):
    def __init__(self, url: str, *, max_total_bytes: int = 0, pool_size: int = 10) -> None:
        super().__init__()
        self.url = url
        self.max_total_bytes = max_total_bytes
        self.pool_size = pool_size
        self._pool: Any = None
        self._retention = Retention(max_total_bytes)
        self._writer = GroupWriter(url, self._retention)
        self._listener: Any = None
        self._listening: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
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
            await self._writer.start()
            await self._listen()
        except BaseException:
            await self._writer.stop()
            await self._pool.close()
            self._pool = None
            raise
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
        if self.captures_elsewhere is None or pid == self._writer.server_pid():
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
        await self._writer.stop()  # the group under way is answered; nothing is left waiting
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
            self._heartbeat = None
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
                await self._retention.lock_total(conn)
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
                await self._retention.prune(conn, await conn.fetch(
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
                await self._retention.lock_total(conn)
                count = await conn.fetchval(
                    "DELETE FROM endpoints WHERE id = $1 RETURNING capture_count", endpoint.id)
                await conn.execute(NOTIFY, f"d {endpoint.id}")
                return int(count or 0)
        finally:
            self.forget_targets()

    async def delete_expired(self, now: int) -> list[int]:
        try:
            async with self._reads().acquire() as conn, conn.transaction():
                await self._retention.lock_total(conn)
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
        return await self._writer.add(capture)

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
            await self._retention.lock_total(conn)
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
            await self._retention.lock_total(conn)
            await conn.execute("SELECT 1 FROM endpoints WHERE id = $1 FOR UPDATE", endpoint.id)
            result = await conn.execute("DELETE FROM captures WHERE endpoint_id = $1",
                                        endpoint.id)
            await conn.execute("UPDATE endpoints SET capture_count = 0, stored_bytes = 0 "
                               "WHERE id = $1", endpoint.id)
            return int(result.split()[-1])

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

    # -- browser sessions --------------------------------------------------------------------

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
