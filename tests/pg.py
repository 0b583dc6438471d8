"""The PostgreSQL server the tests use: HOOKSCOPE_TEST_POSTGRES (default the local server on
127.0.0.1:5432), a fresh database per test that asks for one; and, for a test that stops
PostgreSQL, a server of its own (OwnServer), since the shared one must never be stopped.

Without a reachable server (or, for OwnServer, PostgreSQL's programs) the PostgreSQL tests are
skipped, with the reason, unless HOOKSCOPE_REQUIRE_POSTGRES is set (.ci/run sets it): then they
fail, so CI never skips them.
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
import time
from glob import glob
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

SERVER = os.environ.get("HOOKSCOPE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


async def _admin() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(SERVER, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        _unavailable(f"no PostgreSQL at {SERVER} ({exc}); set HOOKSCOPE_TEST_POSTGRES to a "
                     "server's URL to run the PostgreSQL tests")


def _unavailable(message: str) -> NoReturn:
    if os.environ.get("HOOKSCOPE_REQUIRE_POSTGRES"):
        pytest.fail(message)
    pytest.skip(message)


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
