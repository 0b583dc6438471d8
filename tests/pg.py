"""The PostgreSQL server the tests use: HOOKSCOPE_TEST_POSTGRES (default the local server on
127.0.0.1:5432), a fresh database per test that asks for one.

Without a reachable server the PostgreSQL tests are skipped, with the reason, unless
HOOKSCOPE_REQUIRE_POSTGRES is set (.ci/run sets it): then they fail, so CI never skips them.
"""

from __future__ import annotations

import os
import secrets
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
        message = (f"no PostgreSQL at {SERVER} ({exc}); set HOOKSCOPE_TEST_POSTGRES to a "
                   "server's URL to run the PostgreSQL tests")
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
