"""Limits a user sets: stored bytes per endpoint and in all, requests per second, expiry."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from contextlib import asynccontextmanager, closing
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from hookscope.main import create_app
from hookscope.settings import Settings
from hookscope.storage import StorageSettings, build_store
from hookscope.storage.sqlite.migrations import migrate
from hookscope.storage.sqlite.store import SQLiteStore
from tests.conftest import BASE, stored_bytes
from tests.serverproc import ServerProcess

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def _client(database: str, **overrides):
    settings = Settings(db=database, allowed_hosts="hookscope.test", **overrides)
    store = build_store(StorageSettings.of(settings))
    await store.open()
    try:
        app = create_app(settings, store=store)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url=BASE) as client:
            yield client
    finally:
        await store.close()


async def _seqs(client, token: str) -> list[int]:
    reply = (await client.get(f"/api/endpoints/{token}/captures?after=0&limit=1000")).json()
    return [c["seq"] for c in reply["captures"]]


async def _endpoint(client, token: str) -> dict:
    return (await client.get(f"/api/endpoints/{token}")).json()


async def _size_of(client, body: bytes) -> int:
    """The stored bytes of a capture of `body`, sent as these tests send one (found on an
    endpoint of its own, deleted after)."""
    token = (await client.post("/api/endpoints")).json()["token"]
    await client.post(f"/h/{token}", content=body)
    (capture,) = (await client.get(f"/api/endpoints/{token}/captures")).json()["captures"]
    await client.delete(f"/api/endpoints/{token}")
    return stored_bytes(capture)


async def test_max_bytes_prunes_the_oldest_captures(client):
    size = await _size_of(client, b"A" * 100)
    limit = 2 * size + size // 2
    token = (await client.post("/api/endpoints", json={"max_bytes": limit})).json()["token"]
    for i in range(5):
        assert (await client.post(f"/h/{token}", content=bytes([65 + i]) * 100)).status_code == 200
    assert await _seqs(client, token) == [4, 5]
    endpoint = await _endpoint(client, token)
    assert (endpoint["stored_bytes"], endpoint["capture_count"], endpoint["max_bytes"]) == (
        2 * size, 2, limit)


async def test_path_query_and_headers_count_toward_stored_bytes(client):
    token = (await client.post("/api/endpoints")).json()["token"]
    await client.post(f"/h/{token}/{'p' * 1000}?{'q' * 1000}", content=b"body",
                      headers={"x-pad": "h" * 5000})
    (capture,) = (await client.get(f"/api/endpoints/{token}/captures")).json()["captures"]
    stored = (await _endpoint(client, token))["stored_bytes"]
    assert stored == stored_bytes(capture)
    assert 4 + 1000 + 1000 + 5000 < stored < 4 + 1000 + 1000 + 5000 + 500


async def test_the_newest_capture_is_kept_even_when_it_alone_is_over(client):
    token = (await client.post("/api/endpoints", json={"max_bytes": 50})).json()["token"]
    await client.post(f"/h/{token}", content=b"x" * 10)
    await client.post(f"/h/{token}", content=b"y" * 80)
    assert await _seqs(client, token) == [2]
    (newest,) = (await client.get(f"/api/endpoints/{token}/captures")).json()["captures"]
    assert (await _endpoint(client, token))["stored_bytes"] == stored_bytes(newest)


async def test_lowering_max_bytes_prunes_at_once_and_delete_and_clear_count_bytes_out(client):
    size = await _size_of(client, b"z" * 100)
    token = (await client.post("/api/endpoints")).json()["token"]
    ids = [(await client.post(f"/h/{token}", content=b"z" * 100)).headers["x-hookscope-capture"]
           for _ in range(4)]
    assert (await _endpoint(client, token))["stored_bytes"] == 4 * size
    patched = (await client.patch(f"/api/endpoints/{token}",
                                  json={"max_bytes": 3 * size})).json()
    assert (patched["stored_bytes"], patched["capture_count"]) == (3 * size, 3)
    assert await _seqs(client, token) == [2, 3, 4]
    await client.delete(f"/api/captures/{ids[3]}")
    assert (await _endpoint(client, token))["stored_bytes"] == 2 * size
    await client.delete(f"/api/endpoints/{token}/captures")
    endpoint = await _endpoint(client, token)
    assert (endpoint["stored_bytes"], endpoint["capture_count"]) == (0, 0)
    patched = (await client.patch(f"/api/endpoints/{token}", json={"max_bytes": None})).json()
    assert patched["max_bytes"] is None


async def test_max_total_bytes_prunes_the_oldest_of_any_endpoint(database):
    async with _client(database) as client:
        size = await _size_of(client, b"a" * 100)
    async with _client(database, max_total_bytes=5 * size) as client:
        a = (await client.post("/api/endpoints")).json()["token"]
        b = (await client.post("/api/endpoints")).json()["token"]
        for _ in range(4):
            await client.post(f"/h/{a}", content=b"a" * 100)
            await client.post(f"/h/{b}", content=b"b" * 100)
        # Eight captures of `size` bytes sent, alternating a, b: the newest five remain.
        assert await _seqs(client, a) == [3, 4]
        assert await _seqs(client, b) == [2, 3, 4]
        counts = [((await _endpoint(client, t))["capture_count"],
                   (await _endpoint(client, t))["stored_bytes"]) for t in (a, b)]
        assert counts == [(2, 2 * size), (3, 3 * size)]
        # Deleting an endpoint frees its bytes for the others.
        await client.delete(f"/api/endpoints/{b}")
        for _ in range(3):
            await client.post(f"/h/{a}", content=b"a" * 100)
        assert await _seqs(client, a) == [3, 4, 5, 6, 7]


async def test_the_global_limit_keeps_every_endpoints_newest_capture(database):
    async with _client(database) as client:
        size = await _size_of(client, b"a" * 100)
    async with _client(database, max_total_bytes=size + size // 2) as client:
        a = (await client.post("/api/endpoints")).json()["token"]
        b = (await client.post("/api/endpoints")).json()["token"]
        await client.post(f"/h/{a}", content=b"a" * 100)
        await client.post(f"/h/{b}", content=b"b" * 100)
        # Over the limit, but each is its endpoint's newest (and acknowledged): both stay.
        assert (await _seqs(client, a), await _seqs(client, b)) == ([1], [1])
        await client.post(f"/h/{b}", content=b"b" * 100)
        assert (await _seqs(client, a), await _seqs(client, b)) == ([1], [2])


async def test_lowering_max_bytes_keeps_the_newest_remaining_capture(client):
    size = await _size_of(client, b"z" * 100)
    token = (await client.post("/api/endpoints")).json()["token"]
    ids = [(await client.post(f"/h/{token}", content=b"z" * 100)).headers["x-hookscope-capture"]
           for _ in range(3)]
    await client.delete(f"/api/captures/{ids[2]}")
    patched = (await client.patch(f"/api/endpoints/{token}", json={"max_bytes": 50})).json()
    assert await _seqs(client, token) == [2]
    assert (patched["capture_count"], patched["stored_bytes"]) == (1, size)


@pytest.mark.sqlite_only("a migration of an SQLite file written before byte limits")
async def test_a_database_from_before_byte_limits_counts_its_bytes_on_upgrade(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=1)
    conn.execute("INSERT INTO endpoints (token, created_at, max_captures, config) "
                 "VALUES ('old-token', 0, 100, ?)", (json.dumps({"format": "auto"}),))
    for seq, body in ((1, b"12345"), (2, b"\x00" * 7)):
        conn.execute(
            "INSERT INTO captures (id, endpoint_id, seq, received_at, method, path, query, "
            "headers, body_size, truncated, response_status, parsed_kind, signature_status, "
            "validation_status, body) VALUES (?, 1, ?, 0, 'POST', '/h/old-token', '', '[]', ?, "
            "0, 200, 'text', 'unchecked', 'unknown', ?)", (f"c_{seq}", seq, len(body), body))
    conn.execute("UPDATE endpoints SET last_seq = 2, capture_count = 2")
    conn.close()
    store = SQLiteStore(path)
    await store.open()
    try:
        endpoint = await store.get_endpoint("old-token")
        # Bodies of 5 and 7 bytes; each capture's path '/h/old-token', query '' and headers '[]'.
        assert (endpoint.stored_bytes, endpoint.max_bytes) == (12 + 2 * (12 + 0 + 2), None)
    finally:
        await store.close()


async def test_rate_limit_answers_429_with_retry_after_and_stores_nothing(client):
    token = (await client.post("/api/endpoints", json={"rate_limit": 0.5})).json()["token"]
    assert (await client.post(f"/h/{token}", content=b"first")).status_code == 200
    refused = await client.post(f"/h/{token}", content=b"second")
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "2"
    error = refused.json()["error"]
    assert error["code"] == "rate_limited" and "retry in 2 s" in error["message"]
    assert await _seqs(client, token) == [1]
    # Another endpoint without a cap is not affected.
    other = (await client.post("/api/endpoints")).json()["token"]
    assert (await client.post(f"/h/{other}", content=b"free")).status_code == 200


@pytest.mark.sqlite_only("drives the in-memory limiter's clock; on PostgreSQL the buckets are "
                         "on the database's clock (test_postgres_shared.py)")
async def test_rate_limit_allows_a_second_of_burst_then_refills(app, client):
    # The limiter's clock moves only when the test says (real time made this flaky on a slow
    # machine: three requests outlasting 0.15 s earned a third token).
    now = [1000.0]
    app.state.limiter._clock = lambda: now[0]
    token = (await client.post("/api/endpoints", json={"rate_limit": 5})).json()["token"]
    statuses = [(await client.post(f"/h/{token}")).status_code for _ in range(7)]
    assert statuses == [200] * 5 + [429] * 2
    now[0] += 0.45  # two more tokens at 5 per second
    statuses = [(await client.post(f"/h/{token}")).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    # Raising the cap takes effect at once (a new, full bucket).
    await client.patch(f"/api/endpoints/{token}", json={"rate_limit": 100})
    assert (await client.post(f"/h/{token}")).status_code == 200


async def test_the_global_rate_limit_covers_all_capture_urls(database):
    async with _client(database, rate_limit=3) as client:
        tokens = [(await client.post("/api/endpoints")).json()["token"] for _ in range(2)]
        statuses = [(await client.post(f"/h/{tokens[i % 2]}")).status_code for i in range(5)]
        assert statuses == [200, 200, 200, 429, 429]
        # The API itself is not rate limited.
        assert (await client.get("/api/endpoints")).status_code == 200


@pytest.mark.parametrize(("field", "value"), [
    ("rate_limit", 0), ("rate_limit", -1), ("rate_limit", "5"), ("rate_limit", True),
    ("rate_limit", 100_001), ("max_bytes", 0), ("max_bytes", 1.5), ("max_bytes", "1k"),
    ("max_bytes", 2**50 + 1), ("stored_bytes", 5),
])
async def test_bad_limits_are_422_naming_the_field(client, field, value):
    response = await client.post("/api/endpoints", json={field: value})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == field


async def test_default_ttl_and_default_max_bytes_apply_to_new_endpoints(database):
    async with _client(database, default_ttl=3600, default_max_bytes=1000) as client:
        endpoint = (await client.post("/api/endpoints")).json()
        created = datetime.fromisoformat(endpoint["created_at"])
        expires = datetime.fromisoformat(endpoint["expires_at"])
        assert expires - created == timedelta(hours=1)
        assert endpoint["max_bytes"] == 1000
        chosen = (await client.post("/api/endpoints", json={
            "expires_at": None, "max_bytes": None})).json()
        assert (chosen["expires_at"], chosen["max_bytes"]) == (None, None)


async def test_delete_expired_removes_endpoints_and_their_captures(client, store):
    soon = (datetime.now(UTC) + timedelta(seconds=0.3)).isoformat()
    doomed = (await client.post("/api/endpoints", json={"expires_at": soon})).json()["token"]
    kept = (await client.post("/api/endpoints")).json()["token"]
    await client.post(f"/h/{doomed}", content=b"before expiry")
    await asyncio.sleep(0.4)
    assert (await client.post(f"/h/{doomed}")).status_code == 410
    assert len(await store.delete_expired(int(time.time() * 1_000_000))) == 1
    assert (await client.get(f"/api/endpoints/{doomed}")).status_code == 404
    assert (await client.post(f"/h/{doomed}")).status_code == 404
    assert (await client.get(f"/api/endpoints/{kept}")).status_code == 200


def test_the_server_sweeps_expired_endpoints_by_itself(server_database, tmp_path):
    server = ServerProcess(server_database, tmp_path / "sweep.log",
                           env={"HOOKSCOPE_SWEEP_INTERVAL": "1"})
    server.start()
    try:
        soon = (datetime.now(UTC) + timedelta(seconds=0.5)).isoformat()
        token = httpx.post(server.url + "/api/endpoints",
                           json={"expires_at": soon}).json()["token"]
        assert httpx.post(f"{server.url}/h/{token}", content=b"x").status_code == 200
        deadline = time.monotonic() + 10
        while httpx.get(f"{server.url}/api/endpoints/{token}").status_code != 404:
            assert time.monotonic() < deadline, "the sweep never deleted the expired endpoint"
            time.sleep(0.2)
    finally:
        server.stop()


# Each endpoint's token, and "<bytes>/<captures>" of the rows it has, counted from the rows.
_ROW_TOTALS = {
    "sqlite": "SELECT e.token, COALESCE(SUM(length(c.body) + c.file_bytes + "
              "length(CAST(c.path AS BLOB)) + length(CAST(c.query AS BLOB)) + "
              "length(CAST(c.headers AS BLOB))), 0) || '/' || COUNT(c.id) FROM endpoints e "
              "LEFT JOIN captures c ON c.endpoint_id = e.id GROUP BY e.id",
    "postgresql": "SELECT e.token, COALESCE(SUM(octet_length(c.body) + octet_length(c.path) + "
                  "octet_length(c.query) + octet_length(c.headers)), 0) || '/' || COUNT(c.id) "
                  "FROM endpoints e LEFT JOIN captures c ON c.endpoint_id = e.id "
                  "GROUP BY e.id, e.token",
}


async def _row_totals(backend: str, database: str) -> dict[str, str]:
    if backend == "sqlite":
        with closing(sqlite3.connect(database)) as db:
            return dict(db.execute(_ROW_TOTALS[backend]))
    conn = await asyncpg.connect(database)
    try:
        return {row[0]: row[1] for row in await conn.fetch(_ROW_TOTALS[backend])}
    finally:
        await conn.close()


async def test_counters_match_the_rows_after_a_random_mix_of_operations(backend, database):
    import random

    rng = random.Random(7)
    async with _client(database, max_total_bytes=3000) as client:
        tokens = [(await client.post("/api/endpoints", json={"max_bytes": 1200,
                                                            "max_captures": 8})).json()["token"]
                  for _ in range(3)]
        ids: list[str] = []
        for _ in range(150):
            token = rng.choice(tokens)
            roll = rng.random()
            if roll < 0.75:
                response = await client.post(f"/h/{token}", content=b"q" * rng.randint(0, 400))
                ids.append(response.headers["x-hookscope-capture"])
            elif roll < 0.85 and ids:
                await client.delete(f"/api/captures/{ids.pop(rng.randrange(len(ids)))}")
            elif roll < 0.95:
                await client.patch(f"/api/endpoints/{token}", json={
                    "max_bytes": rng.choice([None, 300, 800, 1500]),
                    "max_captures": rng.randint(1, 10)})
            else:
                await client.delete(f"/api/endpoints/{token}/captures")
        rows = await _row_totals(backend, database)
        total = 0
        for token in tokens:
            endpoint = await _endpoint(client, token)
            assert rows[token] == f"{endpoint['stored_bytes']}/{endpoint['capture_count']}"
            total += endpoint["stored_bytes"]
            if endpoint["max_bytes"] is not None and endpoint["capture_count"] > 1:
                assert endpoint["stored_bytes"] <= endpoint["max_bytes"]
            assert endpoint["capture_count"] <= endpoint["max_captures"]
        # Each endpoint's newest may stand over the limit: a body of up to 400 bytes, and its
        # path and headers.
        assert total <= 3000 + 3 * (400 + 500)


def test_idle_rate_buckets_are_forgotten_when_there_are_too_many(monkeypatch):
    from hookscope.ingest import limits

    monkeypatch.setattr(limits, "MAX_BUCKETS", 3)
    now = [100.0]
    limiter = limits.RateLimiter()
    limiter._clock = lambda: now[0]
    for endpoint_id in (1, 2, 3):
        assert limiter.admit(endpoint_id, 1.0) == 0
    assert limiter.admit(1, 1.0) == 1  # endpoint 1's bucket is empty: retry in 1 s
    now[0] += 0.5
    assert limiter.admit(4, 1.0) == 0  # none idle yet: kept, the table grows by one
    assert set(limiter._buckets) == {1, 2, 3, 4}
    now[0] += 5
    assert limiter.admit(5, 1.0) == 0  # all refilled: the idle ones go
    assert set(limiter._buckets) == {5}


def test_failures_count_per_ipv4_address_and_per_ipv6_64():
    from hookscope.ingest.limits import FailureThrottle

    throttle = FailureThrottle(attempts=2, refill_s=10)
    now = [0.0]
    throttle._clock = lambda: now[0]
    for address in ("2001:db8:1:2::1", "2001:db8:1:2:ffff::9"):  # one /64: one client
        throttle.failed(address)
    assert throttle.blocked("2001:db8:1:2::77") == 10
    assert throttle.blocked("2001:db8:1:3::1") == 0  # the next /64 is another client
    throttle.failed("::ffff:192.0.2.1")  # an IPv4 client seen through an IPv6 socket
    throttle.failed("192.0.2.1")
    assert throttle.blocked("192.0.2.1") == 10 and throttle.blocked("192.0.2.2") == 0
    now[0] += 10
    assert throttle.blocked("192.0.2.1") == 0  # one try back


def test_a_flood_of_addresses_evicts_the_longest_quiet_without_a_scan(monkeypatch):
    import hookscope.ingest.limits as limits

    monkeypatch.setattr(limits, "MAX_BUCKETS", 3)
    throttle = limits.FailureThrottle(attempts=1)
    for address in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        throttle.failed(address)
    throttle.failed("192.0.2.1")  # failed again: now the most recent
    throttle.failed("192.0.2.4")  # a fourth: .2, the one quiet longest, makes room
    assert list(throttle._buckets) == ["192.0.2.3", "192.0.2.1", "192.0.2.4"]
    assert throttle.blocked("192.0.2.1") and not throttle.blocked("192.0.2.2")
