"""What only the PostgreSQL store does: several stores (processes) writing one database without
deadlocks, commits forced onto disk, and a close that leaves no capture waiting. What every
store promises is in test_store_contract.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from hookscope.models import Capture, Endpoint, new_capture_id, now_us
from hookscope.storage import CaptureQuery
from hookscope.storage.postgres import retention
from hookscope.storage.postgres.store import PostgresStore
from tests.pg import drop_database, fresh_database

pytestmark = [pytest.mark.anyio, pytest.mark.postgresql]


@pytest.fixture
async def database() -> AsyncIterator[str]:
    url = await fresh_database()
    yield url
    await drop_database(url)


def _capture(endpoint: Endpoint, body: bytes) -> Capture:
    received = now_us()
    return Capture(id=new_capture_id(received), endpoint_id=endpoint.id,
                   endpoint_token=endpoint.token, received_at=received, method="POST",
                   path=f"/h/{endpoint.token}", query="", headers=[], remote_addr=None,
                   content_type=None, body_size=len(body), truncated=False, response_status=200,
                   parsed_kind="text", body=body)


async def _endpoint(store: PostgresStore, **fields: object) -> Endpoint:
    return await store.create_endpoint({"created_at": now_us(), "max_captures": 100, **fields})


async def test_two_stores_under_a_total_limit_never_deadlock(database):
    one = PostgresStore(database, max_total_bytes=20_000)
    two = PostgresStore(database, max_total_bytes=20_000)
    await one.open()
    await two.open()
    try:
        first, second = await _endpoint(one), await _endpoint(two)
        results = await asyncio.gather(
            *(store.add_capture(_capture(endpoint, b"x" * 500))
              for _ in range(120) for store, endpoint in ((one, first), (two, second))),
            *(one.update_endpoint(first, {"name": f"n{i}"}) for i in range(10)),
            return_exceptions=True)
        assert [r for r in results if isinstance(r, BaseException)] == []
        kept = [await one.get_endpoint(e.token) for e in (first, second)]
        assert sum(e.stored_bytes for e in kept if e) <= 20_000
        assert all(e and e.capture_count >= 1 for e in kept)
    finally:
        await one.close()
        await two.close()


async def test_deleting_a_capture_beside_new_ones_at_the_limit_never_deadlocks(database):
    store = PostgresStore(database)
    await store.open()
    try:
        endpoint = await _endpoint(store, max_captures=5)
        for round_ in range(20):
            oldest = (await store.capture_at(endpoint.id, round_ * 2 + 1)) if round_ else None
            jobs = [store.add_capture(_capture(endpoint, b"y")) for _ in range(2)]
            if oldest is not None:
                jobs.append(store.delete_capture(oldest.id))
            results = await asyncio.gather(*jobs, return_exceptions=True)
            assert [r for r in results if isinstance(r, BaseException)] == []
        current = await store.get_endpoint(endpoint.token)
        assert current.capture_count <= 5 and current.last_seq == 40
    finally:
        await store.close()


async def test_commits_are_synchronous_whatever_the_database_says(database):
    admin = PostgresStore(database)
    await admin.open()
    try:
        async with admin._reads().acquire() as conn:
            name = database.rsplit("/", 1)[1]
            await conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    finally:
        await admin.close()
    store = PostgresStore(database)
    await store.open()
    try:
        assert await store._writer.conn.fetchval("SHOW synchronous_commit") == "on"
    finally:
        await store.close()


async def test_closing_fails_what_it_cannot_commit_instead_of_leaving_it_waiting(database):
    store = PostgresStore(database)
    await store.open()
    endpoint = await _endpoint(store)
    pending = [asyncio.ensure_future(store.add_capture(_capture(endpoint, b"z")))
               for _ in range(50)]
    await asyncio.sleep(0)
    await store.close()
    done, waiting = await asyncio.wait(pending, timeout=5)
    assert waiting == set()
    for future in done:  # committed and answered, or refused: never left hanging
        assert future.exception() is None or "closed" in str(future.exception())


async def test_pruning_to_the_total_reads_the_oldest_in_batches(database, monkeypatch):
    """One commit that frees more than a batch of captures goes on to the next batch, oldest
    first over all endpoints, and never takes an endpoint's newest."""
    monkeypatch.setattr(retention, "PRUNE_BATCH", 3)
    store = PostgresStore(database)
    await store.open()
    try:
        endpoints = [await _endpoint(store) for _ in range(2)]
        for n in range(10):
            for endpoint in endpoints:
                await store.add_capture(_capture(endpoint, b"%02d" % n + b"." * 98))
        each = (await store.get_endpoint(endpoints[0].token)).stored_bytes // 10
    finally:
        await store.close()
    limited = PostgresStore(database, max_total_bytes=each * 5)
    await limited.open()
    try:
        await limited.add_capture(_capture(endpoints[0], b"10" + b"." * 98))
        kept = [[c.seq for c in await limited.list_captures(e, CaptureQuery(limit=100))]
                for e in endpoints]
        # 21 captures, room for 5: the 16 oldest went, in the order they came, which leaves the
        # newest three of the first endpoint and two of the second.
        assert kept == [[11, 10, 9], [10, 9]]
    finally:
        await limited.close()


async def test_pruning_to_max_bytes_reads_the_oldest_in_batches(database, monkeypatch):
    monkeypatch.setattr(retention, "PRUNE_BATCH", 3)
    store = PostgresStore(database)
    await store.open()
    try:
        endpoint = await _endpoint(store)
        for n in range(10):
            await store.add_capture(_capture(endpoint, b"%02d" % n + b"." * 98))
        each = (await store.get_endpoint(endpoint.token)).stored_bytes // 10
        # Room for 4: the 6 oldest go in one commit, over two batches, the newest never.
        await store.update_endpoint(endpoint, {"max_bytes": each * 4})
        kept = [c.seq for c in await store.list_captures(endpoint, CaptureQuery(limit=100))]
        assert kept == [10, 9, 8, 7]
        await store.update_endpoint(endpoint, {"max_bytes": 1})  # less than any one capture
        kept = [c.seq for c in await store.list_captures(endpoint, CaptureQuery(limit=100))]
        assert kept == [10]
    finally:
        await store.close()
