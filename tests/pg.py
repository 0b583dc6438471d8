"""The PostgreSQL server the tests use: HOOKSCOPE_TEST_POSTGRES (default the local server on
127.0.0.1:5432). A test gets a fresh database (`fresh_database`), or, through conftest.py's
`database` fixture, its test process's own migrated database emptied for it (`WorkerDatabase`):
emptying costs milliseconds where creating, migrating and dropping a database costs a tenth of a
second. A test that stops PostgreSQL gets a server of its own (OwnServer), since the shared one
must never be stopped.

Without a reachable server (or, for OwnServer, PostgreSQL's programs) the PostgreSQL tests
(marked `postgresql`, conftest.py's `pytest_runtest_setup`) are skipped, with the reason, in one
line of the summary, unless HOOKSCOPE_REQUIRE_POSTGRES is set (.ci/run sets it): then they fail,
so CI never skips them.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from functools import cache
from glob import glob
from pathlib import Path
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
    _unavailable(f"no PostgreSQL at {SERVER} ({exc}); set HOOKSCOPE_TEST_POSTGRES to a "
                 "server's URL to run the PostgreSQL tests")


def _unavailable(message: str) -> NoReturn:
    if os.environ.get("HOOKSCOPE_REQUIRE_POSTGRES"):
        pytest.fail(message)
    pytest.skip(message)


@cache
def _unreachable() -> BaseException | None:
    """Why the server cannot be reached, asked once per test process: on a thread of its own,
    since the caller's thread may be running an event loop already (Playwright's sync API keeps
    one running while a module's browser is open)."""
    found: list[BaseException | None] = []

    async def connect() -> None:
        await (await asyncpg.connect(SERVER, timeout=5)).close()

    def check() -> None:
        try:
            asyncio.run(connect())
        except (OSError, asyncpg.PostgresError) as exc:
            found.append(exc)
            return
        found.append(None)

    thread = threading.Thread(target=check, name="hookscope-test-pg-check")
    thread.start()
    thread.join()
    return found[0] if found else RuntimeError("the check of the server did not finish")


def require_server() -> None:
    """Skip the calling test without a reachable server (fail it with
    HOOKSCOPE_REQUIRE_POSTGRES), before the test's fixtures."""
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


def _programs() -> Path:
    """The folder of the newest PostgreSQL's initdb and postgres (Debian's layout), or of those
    on PATH."""
    found = sorted(glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    initdb = found[-1] if found else shutil.which("initdb")
    if initdb is None:
        _unavailable("no PostgreSQL programs (no /usr/lib/postgresql/*/bin/initdb, no initdb on "
                     "PATH) to start a server of the test's own")
    return Path(initdb).parent


def _version(initdb: str) -> int:
    name = Path(initdb).parents[1].name  # /usr/lib/postgresql/<version>/bin/initdb
    return int(name) if name.isdigit() else 0


class OwnServer:
    """A PostgreSQL server of one test's own, on 127.0.0.1 and a free port, made by initdb (trust
    authentication, user postgres) and stopped and started at will. fsync stays on, as on any
    server Hookscope would be run against. Only TCP: no Unix socket."""

    def __init__(self, folder: Path) -> None:
        self.programs = _programs()
        self.log = folder / "postgresql.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._as: dict[str, Any] = {}
        self._made: Path | None = None
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root, and the user it runs as instead cannot reach
            # into pytest's folders (root's own, mode 0700): its data lives in a folder made for
            # it, in the system's temporary directory, removed afterwards.
            user = pwd.getpwnam("postgres" if _user_exists("postgres") else "nobody")
            self._as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
            self._made = Path(tempfile.mkdtemp(prefix="hookscope-test-pg-"))
            os.chown(self._made, user.pw_uid, user.pw_gid)
            self.data = self._made / "data"
        else:
            self.data = folder / "pgdata"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        with open(self.log, "ab") as log:
            done = subprocess.run(
                [self.programs / "initdb", "-D", self.data, "-U", "postgres", "-A", "trust",
                 "-E", "UTF8", "--locale", "C", "--no-sync"],  # --no-sync: the first files only
                stdout=log, stderr=log, cwd=self.data.parent, **self._as)
        if done.returncode != 0:
            self.remove()
            raise RuntimeError(f"initdb failed:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def start(self, timeout: float = 30) -> None:
        """Start the server and return once it accepts connections (after any recovery)."""
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [self.programs / "postgres", "-D", self.data, "-p", str(self.port),
                 "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="],
                stdout=log, stderr=log, cwd=self.data.parent, **self._as)
        deadline = time.monotonic() + timeout
        while not asyncio.run(self._accepts()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"PostgreSQL did not start:\n{self.output()}")
            time.sleep(0.02)

    async def _accepts(self) -> bool:
        try:
            conn = await asyncpg.connect(self.url, timeout=1)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False
        await conn.close()
        return True

    def crash(self) -> None:
        """Immediate shutdown (what `pg_ctl stop -m immediate` sends): every connection is cut
        at once, nothing is flushed but what was committed, and the next start recovers from
        the WAL, as after a crash."""
        self._signal(signal.SIGQUIT)

    def stop(self) -> None:
        """Fast shutdown (`pg_ctl stop -m fast`)."""
        self._signal(signal.SIGINT)

    def _signal(self, number: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(number)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def remove(self) -> None:
        self.stop()
        if self._made is not None:
            shutil.rmtree(self._made, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


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
