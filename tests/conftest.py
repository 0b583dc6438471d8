"""Shared fixtures: a real SQLite store in a temp dir, the app over ASGITransport, and real
`hookscope serve` processes for whatever needs a socket."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from app.main import create_app
from app.settings import Settings
from app.store import SQLiteStore
from tests.serverproc import ServerProcess

BASE = "http://hookscope.test"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # A smaller body limit than the default keeps the 413 tests quick.
    return Settings(db=str(tmp_path / "hookscope.db"), max_body_bytes=256 * 1024)


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(settings.db)
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


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path / "server.db", tmp_path / "server.log")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
