"""What every store promises (the Store protocol, hookscope.storage), through the protocol only.

Every test runs on each backend (conftest.py's `database`): SQLite in a temporary folder, and
PostgreSQL in its test process's database of the server HOOKSCOPE_TEST_POSTGRES names (tests/pg.py
says when that is skipped). What only SQLite does (its writer, checkpointer, lock file,
migrations) is tested in test_sqlite_store.py; what only PostgreSQL does, in
test_postgres_store.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from hookscope.models import Capture, Endpoint, new_capture_id, now_us
from hookscope.storage import (
    CaptureQuery,
    Conflict,
    Gone,
    StorageSettings,
    Store,
    build_store,
)

pytestmark = pytest.mark.anyio

OpenStore = Callable[..., Awaitable[Store]]


@pytest.fixture
async def open_store(database: str) -> AsyncIterator[OpenStore]:
    """Opens a store of the backend on one database (again, after a close: a restart)."""
    opened: list[Store] = []

    async def open_(**options: int) -> Store:
        store = build_store(StorageSettings(db=database, **options))
        await store.open()
        opened.append(store)
        return store

    yield open_
    for store in opened:
        await store.close()


@pytest.fixture
async def store(open_store: OpenStore) -> Store:
    return await open_store()


def _capture(endpoint: Endpoint, body: bytes, *, path: str = "", query: str = "",
             headers: list[list[str]] | None = None, method: str = "POST") -> Capture:
    received = now_us()
    return Capture(id=new_capture_id(received), endpoint_id=endpoint.id,
                   endpoint_token=endpoint.token, received_at=received, method=method,
                   path=f"/h/{endpoint.token}{path}", query=query,
                   headers=headers or [["content-type", "text/plain"]],
                   remote_addr="127.0.0.1", content_type="text/plain", body_size=len(body),
                   truncated=False, response_status=200, parsed_kind="text", body=body)


async def _endpoint(store: Store, **fields: object) -> Endpoint:
    return await store.create_endpoint({"created_at": now_us(), "max_captures": 100, **fields})


async def _seqs(store: Store, endpoint: Endpoint, **query: object) -> list[int]:
    return [c.seq for c in await store.list_captures(endpoint, CaptureQuery(limit=1000,
                                                                             **query))]


async def test_a_restart_keeps_endpoints_captures_and_the_sequence(open_store):
    store = await open_store()
    endpoint = await _endpoint(store, alias="keep-me", name="kept")
    ids = []
    for i in range(3):
        capture = _capture(endpoint, f"body {i}".encode())
        await store.add_capture(capture)
        ids.append(capture.id)
    await store.close()

    again = await open_store()
    kept = await again.get_endpoint("keep-me")
    assert kept is not None
    assert (kept.token, kept.name, kept.capture_count, kept.last_seq) == (
        endpoint.token, "kept", 3, 3)
    for i, capture_id in enumerate(ids):
        capture = await again.get_capture(capture_id)
        assert capture is not None and capture.body == f"body {i}".encode()
    assert await again.add_capture(_capture(endpoint, b"after restart")) == 4


async def test_bodies_headers_and_query_come_back_exactly(store):
    endpoint = await _endpoint(store)
    body = bytes(range(256)) * 4
    headers = [["X-Dup", "1"], ["x-dup", "2"], ["X-Latin", "caf\xe9"], ["Content-Type", "a/b"]]
    capture = _capture(endpoint, body, path="/sub/path", query="a=1&a=2&b=%20",
                       headers=headers, method="PATCH")
    await store.add_capture(capture)
    back = await store.get_capture(capture.id)
    assert back is not None
    assert (back.body, back.headers, back.query, back.path, back.method) == (
        body, headers, "a=1&a=2&b=%20", f"/h/{endpoint.token}/sub/path", "PATCH")
    summary = await store.get_capture(capture.id, body=False)
    assert summary is not None and summary.body is None and summary.body_size == len(body)


async def test_concurrent_captures_get_distinct_growing_sequence_numbers(store):
    endpoint = await _endpoint(store, max_captures=10_000)
    seqs = await asyncio.gather(*(store.add_capture(_capture(endpoint, str(i).encode()))
                                  for i in range(300)))
    assert sorted(seqs) == list(range(1, 301))
    assert await _seqs(store, endpoint) == list(range(300, 0, -1))


async def test_pruning_keeps_the_newest_max_captures(store):
    endpoint = await _endpoint(store, max_captures=3)
    for i in range(7):
        await store.add_capture(_capture(endpoint, str(i).encode()))
    assert await _seqs(store, endpoint) == [7, 6, 5]
    current = await store.get_endpoint(endpoint.token)
    assert current is not None and current.capture_count == 3


async def test_pruning_under_concurrent_load_never_exceeds_the_limit(store):
    endpoint = await _endpoint(store, max_captures=10)
    await asyncio.gather(*(store.add_capture(_capture(endpoint, str(i).encode()))
                           for i in range(200)))
    assert await _seqs(store, endpoint) == list(range(200, 190, -1))


async def test_max_bytes_prunes_the_oldest_but_never_the_newest(store):
    endpoint = await _endpoint(store, max_bytes=3000)
    for i in range(5):
        await store.add_capture(_capture(endpoint, bytes([i]) * 1000))
    kept = await _seqs(store, endpoint)
    assert kept[0] == 5 and len(kept) < 5
    current = await store.get_endpoint(endpoint.token)
    assert current is not None and current.stored_bytes <= 3000
    await store.add_capture(_capture(endpoint, b"x" * 10_000))  # alone over the limit
    assert await _seqs(store, endpoint) == [6]


async def test_the_total_limit_holds_over_all_endpoints(open_store):
    store = await open_store(max_total_bytes=5000)
    first, second = await _endpoint(store), await _endpoint(store)
    for i in range(6):
        await store.add_capture(_capture(first if i % 2 else second, b"y" * 1000))
    total = 0
    for endpoint in (first, second):
        current = await store.get_endpoint(endpoint.token)
        assert current is not None and current.capture_count >= 1  # the newest stays
        total += current.stored_bytes
    assert total <= 5000


async def test_lowering_max_captures_prunes_at_once(store):
    endpoint = await _endpoint(store, max_captures=10)
    for i in range(6):
        await store.add_capture(_capture(endpoint, str(i).encode()))
    updated = await store.update_endpoint(endpoint, {"max_captures": 2})
    assert updated.capture_count == 2
    assert await _seqs(store, endpoint) == [6, 5]


async def test_a_capture_looked_up_before_a_patch_obeys_the_new_limit(store):
    stale = await _endpoint(store, max_captures=2)
    await store.update_endpoint(stale, {"max_captures": 10})
    for i in range(5):  # requests that found the endpoint while it still said 2
        await store.add_capture(_capture(stale, str(i).encode()))
    assert await _seqs(store, stale) == [5, 4, 3, 2, 1]


async def test_the_sequence_only_grows_across_deletes_and_clears(store):
    endpoint = await _endpoint(store)
    first = _capture(endpoint, b"a")
    await store.add_capture(first)
    await store.add_capture(_capture(endpoint, b"b"))
    assert await store.delete_capture(first.id) is True
    assert await store.delete_capture(first.id) is False
    assert await store.get_capture(first.id) is None
    assert await store.clear_captures(endpoint) == 1
    assert await _seqs(store, endpoint) == []
    assert await store.add_capture(_capture(endpoint, b"c")) == 3


async def test_endpoint_ids_are_never_reused_and_a_late_capture_is_gone(store):
    deleted = await _endpoint(store)
    await store.add_capture(_capture(deleted, b"kept until the delete"))
    assert await store.delete_endpoint(deleted) == 1
    assert await store.get_endpoint(deleted.token) is None
    newer = await _endpoint(store)
    assert newer.id != deleted.id
    with pytest.raises(Gone):  # a capture still in flight for the deleted endpoint
        await store.add_capture(_capture(deleted, b"late"))
    assert await store.list_captures(newer, CaptureQuery()) == []
    with pytest.raises(Gone):
        await store.update_endpoint(deleted, {"name": "too late"})


async def test_an_alias_is_unique_among_aliases_and_tokens(store):
    taken = await _endpoint(store, alias="taken")
    other = await _endpoint(store)
    with pytest.raises(Conflict) as raised:
        await _endpoint(store, alias="taken")
    assert raised.value.field == "alias"
    with pytest.raises(Conflict):
        await store.update_endpoint(other, {"alias": taken.token})
    found = await store.get_endpoint("taken")
    assert found is not None and found.id == taken.id


async def test_one_failing_operation_does_not_fail_the_others(store):
    await _endpoint(store, alias="taken")
    endpoint = await _endpoint(store)
    results = await asyncio.gather(
        *(store.add_capture(_capture(endpoint, b"x")) for _ in range(20)),
        _endpoint(store, alias="taken"),
        *(store.add_capture(_capture(endpoint, b"y")) for _ in range(20)),
        return_exceptions=True)
    assert isinstance(results[20], Conflict)
    assert sorted(r for i, r in enumerate(results) if i != 20) == list(range(1, 41))


async def test_listing_filters_and_pages_by_sequence(store):
    endpoint = await _endpoint(store)
    for i in range(6):
        await store.add_capture(_capture(endpoint, b"z", method="GET" if i % 2 else "POST"))
    assert await _seqs(store, endpoint, method="GET") == [6, 4, 2]
    assert await _seqs(store, endpoint, before=4) == [3, 2, 1]
    assert await _seqs(store, endpoint, after=4) == [5, 6]  # oldest first, to resume
    assert [c.seq for c in await store.list_captures(endpoint, CaptureQuery(limit=2))] == [6, 5]
    assert await _seqs(store, endpoint, signature="unchecked", validation="unknown") == [
        6, 5, 4, 3, 2, 1]


@pytest.mark.parametrize(("where", "text"), [("path", "needle-in-path"),
                                             ("query", "needle%in_query"),
                                             ("headers", "needle caf\xe9"),
                                             ("body", "needle\\body")])
async def test_q_finds_text_in_path_query_headers_and_body(store, where, text):
    endpoint = await _endpoint(store)
    await store.add_capture(_capture(endpoint, b"nothing to see"))
    fields = {"path": {"path": "/" + text}, "query": {"query": text},
              "headers": {"headers": [["x-note", text]]}}.get(where, {})
    found = _capture(endpoint, text.encode() if where == "body" else b"other", **fields)
    await store.add_capture(found)
    assert await _seqs(store, endpoint, q=text) == [2]
    assert await _seqs(store, endpoint, q=text.replace("needle", "NeEdLe")) == [2]  # ASCII case
    assert await _seqs(store, endpoint, q="%") == ([2] if "%" in text else [])
    if "\xe9" in text:  # only ASCII letters match in either case, on every backend
        assert await _seqs(store, endpoint, q="CAF\xc9") == []


async def test_a_signature_verdict_can_be_replaced(store):
    endpoint = await _endpoint(store)
    capture = _capture(endpoint, b"signed")
    await store.add_capture(capture)
    verdict = {"status": "verified", "scheme": "github", "secret_index": 0}
    assert await store.set_signature(capture.id, verdict) is True
    back = await store.get_capture(capture.id)
    assert back is not None and back.signature == verdict
    assert await _seqs(store, endpoint, signature="verified") == [1]
    assert await store.set_signature("no-such-capture", verdict) is False


async def test_expired_endpoints_go_with_their_captures(store):
    now = now_us()
    expired = await _endpoint(store, expires_at=now - 1)
    lasting = await _endpoint(store, expires_at=now + 60_000_000)
    await store.add_capture(_capture(expired, b"old"))
    assert await store.delete_expired(now) == [expired.id]
    assert await store.get_endpoint(expired.token) is None
    assert await store.get_endpoint(lasting.token) is not None


async def test_a_revoked_session_stays_revoked(store):
    assert await store.session_revoked("nonce-1") is False
    await store.revoke_session("nonce-1", int(now_us() / 1_000_000) + 3600)
    assert await store.session_revoked("nonce-1") is True
    assert await store.session_revoked("nonce-2") is False


async def test_an_endpoint_change_reaches_the_capture_path(store):
    endpoint = await _endpoint(store, name="before")
    target = await store.capture_target(endpoint.token)
    assert target is not None and target.name == "before"
    await store.update_endpoint(endpoint, {"name": "after"})
    target = await store.capture_target(endpoint.token)
    assert target is not None and target.name == "after"


async def test_a_closed_store_refuses_work_instead_of_hanging(store):
    endpoint = await _endpoint(store)
    await store.close()
    with pytest.raises(RuntimeError, match="closed"):
        await asyncio.wait_for(store.add_capture(_capture(endpoint, b"x")), 5)


async def test_a_capture_is_found_by_its_sequence_number(store):
    endpoint = await _endpoint(store)
    first = _capture(endpoint, b"first")
    await store.add_capture(first)
    await store.add_capture(_capture(endpoint, b"second"))
    found = await store.capture_at(endpoint.id, 1)
    assert found is not None and (found.id, found.seq, found.body) == (first.id, 1, None)
    assert await store.capture_at(endpoint.id, 3) is None


async def test_deliveries_are_kept_in_order_and_go_with_their_capture(store):
    endpoint = await _endpoint(store, max_captures=1)
    first = _capture(endpoint, b"one")
    await store.add_capture(first)
    records = [{"id": f"d_{n}", "capture": first.id, "status": 500 + n, "target": "http://t/"}
               for n in range(3)]
    for record in records:
        assert await store.add_delivery(first, record) is True
    assert await store.list_deliveries(first.id) == records
    await store.add_capture(_capture(endpoint, b"two"))  # max_captures 1: the first is pruned
    assert await store.list_deliveries(first.id) == []
    assert await store.add_delivery(first, {"id": "d_late", "capture": first.id}) is False


async def test_a_key_or_a_filter_holding_a_nul_finds_nothing(store):
    endpoint = await _endpoint(store)
    await store.add_capture(_capture(endpoint, b"a\x00b"))
    assert await store.get_endpoint("\x00") is None
    assert await store.capture_target("to\x00ken") is None
    assert await store.get_capture("c_\x00") is None
    assert await store.delete_capture("c_\x00") is False
    assert await _seqs(store, endpoint, method="PO\x00ST") == []
    assert await _seqs(store, endpoint, format="\x00") == []
    assert await _seqs(store, endpoint, q="a\x00b") == [1]  # a body may hold one
