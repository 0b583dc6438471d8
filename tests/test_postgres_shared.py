"""What several processes on one PostgreSQL database share through it besides captures: a logout,
the failed-login throttle and the capture rate limits. Each process is an app with a store of its
own, as two `hookscope serve` processes (or hosts) would be."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
import pytest

from hookscope.main import create_app
from hookscope.routes.access import COOKIE, session_value
from hookscope.settings import Settings
from hookscope.storage.postgres.store import PostgresStore
from tests.conftest import BASE
from tests.pg import drop_database, fresh_database

pytestmark = pytest.mark.anyio
TOKEN = "correct-horse-battery-staple"


@asynccontextmanager
async def _processes(count: int = 2, **overrides: object
                     ) -> AsyncIterator[list[httpx.AsyncClient]]:
    """`count` apps on one fresh database, each with its own store, as processes have."""
    database = await fresh_database()
    try:
        async with AsyncExitStack() as stack:
            clients = []
            for _ in range(count):
                settings = Settings(db=database, allowed_hosts="hookscope.test", **overrides)
                store = PostgresStore(database)
                await store.open()
                stack.push_async_callback(store.close)
                clients.append(await stack.enter_async_context(httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=create_app(settings, store=store)),
                    base_url=BASE, follow_redirects=False)))
            yield clients
    finally:
        await drop_database(database)


async def _eventually(condition: Callable[[], Awaitable[bool]]) -> bool:
    """Whether `condition()` (a coroutine function) comes true within a few seconds: a note
    between processes arrives a moment after the request that sent it was answered."""
    for _ in range(250):
        if await condition():
            return True
        await asyncio.sleep(0.02)
    return False


async def test_a_logout_through_one_process_ends_the_session_in_every_other():
    async with _processes(token=TOKEN) as (first, second):
        response = await first.post(
            "/login", content=f"token={TOKEN}&next=%2F".encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": BASE})
        copied = {"Cookie": response.headers["set-cookie"].split(";", 1)[0]}
        other_browser = {"Cookie": f"{COOKIE}={session_value(TOKEN)}"}
        assert (await second.get("/api/endpoints", headers=copied)).status_code == 200
        assert (await first.post("/logout", headers={"Origin": BASE})).status_code == 303
        refused = await second.get("/api/endpoints", headers=copied)
        assert refused.status_code == 401
        assert refused.headers["set-cookie"].startswith(f"{COOKIE}=; Max-Age=0")
        assert (await second.get("/api/endpoints", headers=other_browser)).status_code == 200


async def test_wrong_tokens_guessed_at_one_process_are_counted_by_every_other():
    async with _processes(token=TOKEN) as (first, second):
        right = {"Authorization": f"Bearer {TOKEN}"}
        for i in range(10):  # all ten guesses at the first process
            wrong = await first.get("/api/endpoints", headers={"Authorization": f"Bearer {i}"})
            assert wrong.status_code == 401, i

        async def second_refuses() -> bool:
            return (await second.get("/api/endpoints", headers=right)).status_code == 429

        assert await _eventually(second_refuses)
        refused = await second.get("/api/endpoints", headers=right)
        assert refused.json()["error"]["code"] == "rate_limited"
        assert "too many failed attempts" in refused.json()["error"]["message"]
        assert (await first.get("/api/endpoints", headers=right)).status_code == 429


async def test_an_endpoints_rate_limit_holds_across_processes():
    async with _processes() as (first, second):
        # 0.2 a second: a bucket of one, refilled in five seconds, longer than the test runs.
        endpoint = (await first.post("/api/endpoints", json={"rate_limit": 0.2})).json()
        url = f"/h/{endpoint['token']}"
        answers = [await client.post(url, content=b"x")
                   for client in (first, second, second, first, second)]
        assert [a.status_code for a in answers] == [200, 429, 429, 429, 429]
        refused = answers[1]
        assert refused.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(refused.headers["retry-after"]) <= 5
        listed = (await second.get(f"/api/endpoints/{endpoint['token']}/captures")).json()
        assert len(listed["captures"]) == 1  # a refused request is not stored


async def test_the_server_wide_rate_limit_holds_across_processes():
    async with _processes(rate_limit=1) as (first, second):
        tokens = [(await first.post("/api/endpoints", json={})).json()["token"]
                  for _ in range(2)]
        one = await first.post(f"/h/{tokens[0]}", content=b"x")
        other = await second.post(f"/h/{tokens[1]}", content=b"x")
        assert (one.status_code, other.status_code) == (200, 429)
        assert other.headers["retry-after"] == "1"


async def test_a_delivery_of_any_size_is_recorded_and_shared():
    # Its text fields at their limits, in characters of three bytes each: more than NOTIFY's
    # 8000 bytes, which must not matter.
    async with _processes() as (first, second):
        token = (await first.post("/api/endpoints", json={})).json()["token"]
        capture = (await first.post(f"/h/{token}", content=b"x")).headers["x-hookscope-capture"]
        report = {"target": "http://localhost/" + "€" * 2000, "by": "€" * 200,
                  "status": None, "error": "€" * 1000, "outcome": "failed"}
        recorded = await first.post(f"/api/captures/{capture}/deliveries", json=report)
        assert recorded.status_code == 201, recorded.text
        listed = (await second.get(f"/api/captures/{capture}")).json()["deliveries"]
        assert [d["by"] for d in listed] == ["€" * 200]
