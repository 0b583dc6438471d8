"""Shared fixtures: a real store, the app over ASGITransport, and real `hookscope serve` processes
for whatever needs a socket.

Every test that touches storage through these fixtures runs once per backend: `backend` is
"sqlite" (a file in the test's temporary folder) or "postgresql" (tests/pg.py: the test process's
own database, emptied for each test; a fresh database for each server process). A test or module
marked `sqlite_only("why")` runs on SQLite alone, and says why.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from starlette.applications import Starlette

from hookscope.main import create_app
from hookscope.settings import Settings
from hookscope.storage import StorageSettings, Store, build_store
from tests.pg import WorkerDatabase, drop_database, fresh_database, require_server
from tests.serverproc import ServerProcess

# The browser tests' fixtures (a server and Chromium per module, pages, screenshots, axe-core).
pytest_plugins = ["tests.browserkit"]

BASE = "http://hookscope.test"


def stored_bytes(capture: Any) -> int:
    """What one capture counts toward stored_bytes, max_bytes and HOOKSCOPE_MAX_TOTAL_BYTES: its
    body and its path, query and header fields as stored, in bytes of UTF-8. `capture` is the
    API's JSON of one (in summary or in full) or a Capture."""
    if isinstance(capture, dict):
        body, path, query, headers = (capture["body_size"], capture["path"], capture["query"],
                                      capture["headers"])
    else:
        body, path, query, headers = (len(capture.body), capture.path, capture.query,
                                      capture.headers)
    return body + len(path.encode()) + len(query.encode()) + len(orjson.dumps(headers))

async def rows(store: Store, sql: str) -> list[tuple[Any, ...]]:
    """The rows `sql` (plain SQL, no parameters) finds in the store's own database: what a test
    checks beneath the API, on either backend."""
    from hookscope.storage.postgres.store import PostgresStore
    from hookscope.storage.sqlite.store import SQLiteStore

    if isinstance(store, PostgresStore):
        return [tuple(row) for row in await store._reads().fetch(sql)]
    assert isinstance(store, SQLiteStore)
    return [tuple(row) for row in await store._rows(sql)]


# The hostile-input properties (tests/test_hostile_properties.py). "hookscope" is the default: no
# deadline (a shared 2-core CI machine has slow moments) and the app fixtures reused across a
# test's examples, which those tests are written for. `--hypothesis-profile thorough` runs ten
# times the examples.
hypothesis_settings.register_profile(
    "hookscope", max_examples=200, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
hypothesis_settings.register_profile("thorough", hypothesis_settings.get_profile("hookscope"),
                                     max_examples=2000)
hypothesis_settings.load_profile("hookscope")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


BACKENDS = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Each test that uses `backend` (through store, app, client, server, ...) runs on every
    backend, or on SQLite alone when marked sqlite_only. Module scope: a module's shared server
    starts once per backend."""
    if "backend" not in metafunc.fixturenames:
        return
    only = metafunc.definition.get_closest_marker("sqlite_only")
    if only is not None and not only.args:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: sqlite_only needs a reason")
    params = [pytest.param(name, marks=[pytest.mark.postgresql] if name == "postgresql" else [])
              for name in (["sqlite"] if only else BACKENDS)]
    metafunc.parametrize("backend", params, indirect=True, scope="module")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A PostgreSQL test without a server is skipped here, before its fixtures, rather than by
    one of them: pytest names the test as the place of a fixture's skip, so each would get a
    line of its own in the summary, where these all share one."""
    if item.get_closest_marker("postgresql") is not None:
        require_server()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[WorkerDatabase]:
    """This test process's PostgreSQL database, migrated once."""
    database = WorkerDatabase.create()
    yield database
    database.drop()


@pytest.fixture(scope="module")
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The test's database as --db names it: a new SQLite file, or the PostgreSQL database of
    this test process, emptied."""
    if backend == "sqlite":
        return str(tmp_path / "hookscope.db")
    pg: WorkerDatabase = request.getfixturevalue("pg_database")
    pg.empty()
    return pg.url


@contextmanager
def own_database(backend: str, folder: Path) -> Iterator[str]:
    """A database for one server process alone: a file in `folder`, or a new PostgreSQL
    database, dropped after."""
    if backend == "sqlite":
        yield str(folder / "server.db")
        return
    url = asyncio.run(fresh_database())
    try:
        yield url
    finally:
        asyncio.run(drop_database(url))


@pytest.fixture
def server_database(backend: str, tmp_path: Path) -> Iterator[str]:
    """A database for a server process the test starts itself."""
    with own_database(backend, tmp_path) as db:
        yield db


@pytest.fixture
def settings(database: str) -> Settings:
    # A smaller body limit than the default keeps the 413 tests quick.
    return Settings(db=database, max_body_bytes=256 * 1024, allowed_hosts="hookscope.test")


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    store = build_store(StorageSettings.of(settings))
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def app(settings: Settings, store: Store) -> Starlette:
    return create_app(settings, store=store)


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield client


@pytest.fixture
async def endpoint(client: httpx.AsyncClient) -> dict:
    response = await client.post("/api/endpoints", json={"name": "test"})
    assert response.status_code == 201, response.text
    return response.json()


@contextmanager
def _serving(backend: str, folder: Path) -> Iterator[ServerProcess]:
    with own_database(backend, folder) as db:
        proc = ServerProcess(db, folder / "server.log")
        proc.start()
        try:
            yield proc
        finally:
            proc.stop()


@pytest.fixture
def server(backend: str, tmp_path: Path) -> Iterator[ServerProcess]:
    with _serving(backend, tmp_path) as proc:
        yield proc


@pytest.fixture(scope="module")
def shared_server(backend: str, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[ServerProcess]:
    """One real server for a module whose tests each make their own endpoints."""
    with _serving(backend, tmp_path_factory.mktemp("shared-server")) as proc:
        yield proc
