"""Shared fixtures: a real SQLite store in a temp dir, the app over ASGITransport, and real
`hookscope serve` processes for whatever needs a socket."""

from __future__ import annotations

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
from hookscope.storage.sqlite.store import SQLiteStore
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


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # A smaller body limit than the default keeps the 413 tests quick.
    return Settings(db=str(tmp_path / "hookscope.db"), max_body_bytes=256 * 1024,
                    allowed_hosts="hookscope.test")


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(settings.db, max_total_bytes=settings.max_total_bytes)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def app(settings: Settings, store: SQLiteStore) -> Starlette:
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
def _serving(folder: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(folder / "server.db", folder / "server.log")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with _serving(tmp_path) as proc:
        yield proc


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One real server for a module whose tests each make their own endpoints."""
    with _serving(tmp_path_factory.mktemp("shared-server")) as proc:
        yield proc
