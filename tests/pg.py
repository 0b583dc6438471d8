"""The PostgreSQL server the tests use: HOOKSCOPE_TEST_POSTGRES (default the local server on
127.0.0.1:5432). A test gets a fresh database (`fresh_database`), or, through conftest.py's
`database` fixture, its test process's own migrated database emptied for it (`WorkerDatabase`):
emptying costs milliseconds where creating, migrating and dropping a database costs a tenth of a
second.

Without a reachable server the PostgreSQL tests (marked `postgresql`, conftest.py's
`pytest_runtest_setup`) are skipped, with the reason, in one line of the summary, unless
HOOKSCOPE_REQUIRE_POSTGRES is set (.ci/run sets it): then they fail, so CI never skips them.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from functools import cache
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from hookscope.storage.postgres.migrations import migrate

SERVER = os.environ.get("HOOKSCOPE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def _unusable(exc: BaseException) -> NoReturn:
    message = (f"no PostgreSQL at {SERVER} ({exc}); set HOOKSCOPE_TEST_POSTGRES to a "
               "server's URL to run the PostgreSQL tests")
    if os.environ.get("HOOKSCOPE_REQUIRE_POSTGRES"):
        pytest.fail(message)
    pytest.skip(message)


@cache
def _unreachable() -> BaseException | None:
    """Why the server cannot be reached, asked once per test process."""

    async def connect() -> None:
        await (await asyncpg.connect(SERVER, timeout=5)).close()

    try:
        asyncio.run(connect())
    except (OSError, asyncpg.PostgresError) as exc:
        return exc
    return None


def require_server() -> None:
    """Skip the calling test without a reachable server (fail it with
    HOOKSCOPE_REQUIRE_POSTGRES). Called outside any event loop, before the test's fixtures."""
    if (exc := _unreachable()) is not None:
        _unusable(exc)


async def _admin() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(SERVER, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        _unusable(exc)


async def fresh_database() -> str:
    """The URL of a new, empty database on the test server."""
    name = f"hookscope_test_{secrets.token_hex(6)}"
    admin = await _admin()
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return _with_database(SERVER, name)


async def drop_database(url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    admin = await _admin()
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


class WorkerDatabase:
    """A database migrated once for a whole test process, emptied before each test that uses
    it: the rows of every table but the schema's version, and its sequences restarted, so
    endpoint ids start at 1 again as in a new SQLite file. DELETE, not TRUNCATE: on tables this
    small it is a few milliseconds, where TRUNCATE's new files cost three times that. One
    connection does it, kept open on an event loop of its own (the tests' loops come and go):
    connecting again for each test would cost as much as the DELETE."""

    # Tables in the public schema, those that reference others first; their sequences.
    _TABLES = """
        SELECT c.relname, array_agg(r.relname) FILTER (WHERE r.relname IS NOT NULL)
        FROM pg_class c
        LEFT JOIN pg_constraint f ON f.conrelid = c.oid AND f.contype = 'f'
        LEFT JOIN pg_class r ON r.oid = f.confrelid AND r.oid <> c.oid
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
          AND c.relname <> 'hookscope_schema'
        GROUP BY c.relname"""
    _SEQUENCES = ("SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace "
                  "AND relkind = 'S' ORDER BY relname")

    def __init__(self, url: str, statements: str) -> None:
        self.url = url
        self._empty = statements
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="worker-database")
        self._thread.start()
        self._conn = self._run(asyncpg.connect(url))

    def _run(self, work: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(60)

    def empty(self) -> None:
        self._run(self._conn.execute(self._empty))

    def drop(self) -> None:
        self._run(self._conn.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        asyncio.run(drop_database(self.url))

    @classmethod
    def create(cls) -> WorkerDatabase:
        return cls(*asyncio.run(cls._migrated()))

    @classmethod
    async def _migrated(cls) -> tuple[str, str]:
        """A new database, migrated; the statements that empty it."""
        url = await fresh_database()
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn)
            # What a test writes outside the capture writer (which forces it on) need not wait
            # for the disk: no test outlives a crash of the server.
            name = urlsplit(url).path.lstrip("/")
            await conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
            references = {row[0]: set(row[1] or ()) for row in await conn.fetch(cls._TABLES)}
            sequences = [row[0] for row in await conn.fetch(cls._SEQUENCES)]
        finally:
            await conn.close()
        ordered: list[str] = []
        while references:  # a table goes once nothing left references it
            free = sorted(t for t in references
                          if not any(t in refs for other, refs in references.items()
                                     if other != t))
            if not free:
                raise RuntimeError(f"tables reference each other in a cycle: {references}")
            ordered += free
            for table in free:
                del references[table]
        return url, "".join([*(f'DELETE FROM "{t}";' for t in ordered),
                             *(f'ALTER SEQUENCE "{s}" RESTART;' for s in sequences)])
