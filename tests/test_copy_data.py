"""`hookscope copy-data` (hookscope.storage.copy): a history copied between real SQLite files and
a real PostgreSQL database, either way, exactly (every column, every byte); continued without
duplicates after an interruption; refused when the destination's endpoints clash; and checked,
so that a destination changed afterwards is caught. The command runs as a real process too."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest

from hookscope.cli.output import size
from hookscope.models import Capture, Endpoint, new_capture_id, now_us
from hookscope.storage import StorageSettings, Store, build_store
from hookscope.storage.copy import CaptureRow, CopyRefused, EndpointRow, Report, copy_data
from hookscope.storage.sqlite.lock import take_lock
from tests.clirun import cli_env, hookscope, hookscope_process
from tests.pg import drop_database, fresh_database

T = TypeVar("T")
# Over the SQLite source's body file threshold: this body is kept in a file beside it.
THRESHOLD = 64 * 1024
BIG = os.urandom(THRESHOLD + 5000)
BINARY = bytes(range(256)) * 4
SECRETS = ["s3cret-signing-key", "the-previous-one"]


def _run(job: Awaitable[T]) -> T:
    async def wrapped() -> T:
        return await job

    return asyncio.run(wrapped())


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    url = _run(fresh_database())
    yield url
    _run(drop_database(url))


@pytest.fixture
def pg(database: str) -> str:
    """The module's PostgreSQL database, emptied: quicker than a new one for each test."""
    _sql(database, ("DROP TABLE IF EXISTS deliveries, captures, endpoints, revoked_sessions, "
                    "rate_buckets, hookscope_schema",), ("DROP FUNCTION IF EXISTS hookscope_take",))
    return database


@pytest.fixture
def source(tmp_path: Path) -> str:
    """An SQLite history with something of everything (`_history`)."""
    path = str(tmp_path / "source.db")
    _run(_with_store(path, _history, body_file_bytes=THRESHOLD))
    return path


async def _with_store(db: str, fill: Any, **options: int) -> Any:
    store = build_store(StorageSettings(db=db, **options))
    await store.open()
    try:
        return await fill(store)
    finally:
        await store.close()


def _capture(endpoint: Endpoint, body: bytes, **fields: Any) -> Capture:
    received = now_us()
    values: dict[str, Any] = {
        "method": "POST", "path": f"/h/{endpoint.token}/orders", "query": "", "headers": [],
        "remote_addr": "203.0.113.9", "content_type": "application/octet-stream",
        "truncated": False, "response_status": 200, "parsed_kind": "binary", **fields}
    return Capture(id=new_capture_id(received), endpoint_id=endpoint.id,
                   endpoint_token=endpoint.token, received_at=received, body_size=len(body),
                   body=body, **values)


async def _history(store: Store) -> None:
    """Three endpoints: one with secrets, a schema, every setting and captures of every kind
    (JSON with verdicts, binary and truncated, a body in a file, duplicate headers, the newest
    deleted); one never used; one cleared and used again. And a revoked browser session."""
    orders = await store.create_endpoint({
        "created_at": now_us(), "max_captures": 100, "alias": "orders", "name": "Orders ✓",
        "expires_at": now_us() + 86_400_000_000, "max_bytes": 5_000_000, "rate_limit": 5.0,
        "verify": {"scheme": "github", "secrets": SECRETS},
        "format": "custom", "schema": {"type": "object", "required": ["id"]},
        "response": {"status": 202, "headers": {"X-Reply": "yes"}, "body": "ok", "delay_ms": 5},
        "reject": {"bad_signature": True, "invalid_payload": False}})
    captures = [
        _capture(orders, '{"id": 1, "text": "café"}'.encode(), content_type="application/json",
                 headers=[["Content-Type", "application/json"], ["X-Hub-Signature-256", "sha"]],
                 parsed_kind="json", query="a=1&a=2",
                 signature={"scheme": "github", "status": "verified", "reason": None,
                            "secret_index": 1},
                 validation={"format": "custom", "detected": False, "status": "valid",
                             "errors": []}),
        _capture(orders, BINARY, truncated=True, response_status=413),
        _capture(orders, BIG),
        _capture(orders, b"{not json", content_type="application/json", parsed_kind="json",
                 parsed_error="invalid JSON: unexpected character",
                 headers=[["X-Dup", "1"], ["x-dup", "2"], ["X-Dup", "é 3"]],
                 signature={"scheme": "github", "status": "failed",
                            "reason": "the signature does not match", "secret_index": None},
                 validation={"format": "custom", "detected": False, "status": "invalid",
                             "errors": [{"path": "", "message": "'id' is a required property"}]}),
        _capture(orders, b"deleted"),
    ]
    for capture in captures:
        await store.add_capture(capture)
    await store.delete_capture(captures[-1].id)
    await store.create_endpoint({"created_at": now_us(), "max_captures": 10})
    cleared = await store.create_endpoint({"created_at": now_us(), "max_captures": 10,
                                           "alias": "cleared"})
    for body in (b"one", b"two"):
        await store.add_capture(_capture(cleared, body))
    await store.clear_captures(cleared)
    await store.add_capture(_capture(cleared, b"three"))
    await store.revoke_session("n0nce", int(now_us() / 1e6) + 3600)
    for n in (1, 2, 3):  # more than a batch of 2
        await store.add_delivery(captures[0], {"id": f"d_{n}", "capture": captures[0].id,
                                               "attempt": n, "status": 500 + n})


async def _busy(store: Store) -> None:
    """An endpoint with 23 captures of different sizes, and one after it with 3."""
    for count in (23, 3):
        endpoint = await store.create_endpoint({"created_at": now_us(), "max_captures": 100})
        for n in range(count):
            await store.add_capture(_capture(endpoint, b"x" * n * 10))


async def _dump(db: str) -> dict[str, Any]:
    """Every column of every row, comparable between backends: endpoints by token rather than
    id, bodies read from their files, and the columns of one backend's own (SQLite's rowid and
    file_bytes, PostgreSQL's pk and stored, checked against the endpoint's count) left out."""
    if db.startswith("postgresql://"):
        conn = await asyncpg.connect(db)
        try:
            endpoints = [dict(row) for row in await conn.fetch("SELECT * FROM endpoints")]
            captures = [dict(row) for row in await conn.fetch("SELECT * FROM captures")]
            sessions = [tuple(row) for row in await conn.fetch("SELECT * FROM revoked_sessions")]
            deliveries = [tuple(row) for row in await conn.fetch(
                "SELECT id, capture_id, created_at, record FROM deliveries ORDER BY pk")]
        finally:
            await conn.close()
        for capture in captures:
            del capture["pk"]
            assert capture.pop("stored") == (len(capture["body"]) + len(capture["path"].encode())
                                             + len(capture["query"].encode())
                                             + len(capture["headers"].encode()))
    else:
        conn = sqlite3.connect(db)
        conn.row_factory = sqlite3.Row
        try:
            endpoints = [dict(row) for row in conn.execute("SELECT * FROM endpoints")]
            captures = [dict(row) for row in conn.execute("SELECT * FROM captures")]
            sessions = [tuple(row) for row in conn.execute("SELECT * FROM revoked_sessions")]
            deliveries = [tuple(row) for row in conn.execute(
                "SELECT id, capture_id, created_at, record FROM deliveries ORDER BY rowid")]
        finally:
            conn.close()
        for capture in captures:
            del capture["rowid"]
            capture["truncated"] = bool(capture["truncated"])
            if capture.pop("file_bytes"):
                capture["body"] = Path(f"{db}.bodies", capture["id"]).read_bytes()
    tokens = {endpoint.pop("id"): endpoint["token"] for endpoint in endpoints}
    for capture in captures:
        capture["endpoint_id"] = tokens[capture["endpoint_id"]]
    return {"endpoints": sorted(endpoints, key=lambda e: e["token"]),
            "captures": sorted(captures, key=lambda c: c["id"]), "sessions": sorted(sessions),
            "deliveries": deliveries}


def _problems(report: Report) -> dict[str, list[str]]:
    return {e.alias or e.token: e.problems for e in report.endpoints if e.problems}


def test_sqlite_to_postgresql_and_back_keeps_every_column_and_byte(source, pg, tmp_path):
    original = _run(_dump(source))
    assert len(original["captures"]) == 5 and len(original["endpoints"]) == 3
    assert len(original["deliveries"]) == 3
    assert BIG in [c["body"] for c in original["captures"]]  # read from its file

    report = _run(copy_data(source, pg, batch=2))
    assert report.verified, _problems(report)
    assert [(e.alias, e.created, e.copied, e.source.count) for e in report.endpoints] == [
        ("orders", True, 4, 4), (None, True, 0, 0), ("cleared", True, 1, 1)]
    assert report.total("bytes") == sum(len(c["body"]) for c in original["captures"])
    assert report.sessions == 1
    assert _run(_dump(pg)) == original

    back = str(tmp_path / "back" / "hookscope.db")
    assert _run(copy_data(pg, back)).verified
    assert _run(_dump(back)) == original

    async def carry_on(store: Store) -> tuple[Endpoint | None, Capture | None, int]:
        orders = await store.get_endpoint("orders")
        assert orders is not None
        big = next(c for c in original["captures"] if c["body"] == BIG)
        return (orders, await store.get_capture(big["id"]),
                await store.add_capture(_capture(orders, b"next")))

    # The stores read the copies as their own, and their sequences carry on past the deleted one.
    for db in (pg, back):
        orders, big_capture, seq = _run(_with_store(db, carry_on))
        assert orders is not None and orders.verify == {"scheme": "github", "secrets": SECRETS}
        assert (orders.last_seq, orders.capture_count, seq) == (5, 4, 6)
        assert big_capture is not None and big_capture.body == BIG


@pytest.mark.parametrize("direction", ["sqlite-to-postgresql", "postgresql-to-sqlite"])
def test_an_interrupted_copy_continues_where_it_stopped_and_copies_each_capture_once(
        tmp_path, pg, direction):
    sqlite_db = str(tmp_path / "hookscope.db")
    src, dst = (sqlite_db, pg) if direction == "sqlite-to-postgresql" else (pg, sqlite_db)
    _run(_with_store(src, _busy))
    batches: list[int] = []

    class Crash(Exception):
        pass

    def crash_after_two(_: object, copied: int) -> None:
        batches.append(copied)
        if len(batches) == 2:
            raise Crash

    with pytest.raises(Crash):
        _run(copy_data(src, dst, batch=4, progress=crash_after_two))
    partial = _run(_dump(dst))
    # Both endpoints were created at once; of the first, the two batches committed, counted.
    assert sorted(e["capture_count"] for e in partial["endpoints"]) == [0, 8]
    assert sorted(c["body"] for c in partial["captures"]) == [b"x" * n * 10 for n in range(8)]
    checked = _run(copy_data(src, dst, verify_only=True))
    first, second = (e.problems for e in checked.endpoints)
    assert len(first) == 2 and re.fullmatch(
        r"its captures differ: 23 captures, 2530 bytes, sha256 [0-9a-f]{16} in the source; 8, "
        r"280, [0-9a-f]{16} in the destination; first seq 9 \(c_[0-9a-f]{32}\) is missing in "
        r"the destination", first[0]), first
    assert first[1].startswith("its counters differ: capture_count 8 (source 23), stored_bytes ")
    assert second[0] == (f"its captures differ: 3 captures, 30 bytes, sha256 "
                         f"{checked.endpoints[1].source.sha256[:16]} in the source; 0, 0, "
                         f"{hashlib.sha256().hexdigest()[:16]} in the destination; first seq 1 "
                         f"({_capture_ids(src)[1]}) is missing in the destination")
    assert second[1].startswith("its counters differ: capture_count 0 (source 3), stored_bytes 0 ")

    report = _run(copy_data(src, dst, batch=4))
    assert report.verified, _problems(report)
    assert [(e.created, e.copied) for e in report.endpoints] == [(False, 15), (False, 3)]
    assert _run(_dump(dst)) == _run(_dump(src))
    again = _run(copy_data(src, dst, batch=4))
    assert again.verified and again.total("copied") == 0
    assert _run(_dump(dst)) == _run(_dump(src))


def _capture_ids(db: str) -> list[str]:
    """The id of each endpoint's first capture, the endpoints in the order they were made."""
    dump = _run(_dump(db))
    return [min((c for c in dump["captures"] if c["endpoint_id"] == e["token"]),
                key=lambda c: c["seq"])["id"]
            for e in sorted(dump["endpoints"], key=lambda e: e["created_at"])]


def _sql(url: str, *statements: tuple[Any, ...]) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(url)
        try:
            for statement in statements:
                await conn.execute(*statement)
        finally:
            await conn.close()

    _run(run())


def test_endpoints_that_clash_in_the_destination_refuse_the_whole_copy(source, pg):
    tokens = {e["alias"]: e["token"] for e in _run(_dump(source))["endpoints"]}

    async def clash(store: Store) -> str:
        await store.create_endpoint({"created_at": now_us(), "max_captures": 1,
                                     "name": "not a copy"})
        holder = await store.create_endpoint({"created_at": now_us(), "max_captures": 1,
                                              "alias": "cleared"})
        return holder.token

    holder = _run(_with_store(pg, clash))
    # The first one takes the token of the source's "orders", but it is an endpoint of its own.
    _sql(pg, ("UPDATE endpoints SET token = $1 WHERE name = 'not a copy'", tokens["orders"]))
    before = _run(_dump(pg))
    with pytest.raises(CopyRefused) as refused:
        _run(copy_data(source, pg))
    lines = str(refused.value).splitlines()
    assert lines[0] == ("the destination holds endpoints that are not copies of the source's; "
                        "nothing was copied:")
    assert re.fullmatch(rf"  {tokens['orders']}: the destination has an endpoint with this token, "
                        r"created \S+Z, not a copy of this one \(created \S+Z\)", lines[1])
    assert lines[2:] == [f"  {tokens['cleared']}: its alias 'cleared' is taken in the "
                         f"destination by endpoint {holder}"]
    assert _run(_dump(pg)) == before

    result = hookscope("copy-data", "--from", source, "--to", pg)
    assert result.code == 2 and result.out == ""
    assert result.err.splitlines()[:2] == [f"hookscope: {lines[0]}", lines[1]]
    assert _run(_dump(pg)) == before


def test_verification_catches_a_destination_changed_after_the_copy(source, pg):
    assert _run(copy_data(source, pg)).verified
    ours = _run(_dump(source))
    tokens = {e["alias"]: e["token"] for e in ours["endpoints"]}
    binary = next(c for c in ours["captures"] if c["body"] == BINARY)
    assert binary["seq"] == 2 and BINARY[100] == 100
    _sql(pg, ("UPDATE captures SET body = set_byte(body, 100, 99) WHERE id = $1", binary["id"]))

    checked = hookscope_process("copy-data", "--from", source, "--to", pg, "--verify-only",
                                server_url=None)
    assert checked.returncode == 1, checked.stderr
    assert checked.stdout.splitlines()[-1] == "verified  NO: 1 of 3 endpoints differ"
    [problem] = checked.stderr.splitlines()
    assert re.fullmatch(
        rf"hookscope: endpoint orders \({tokens['orders']}\): its captures differ: 4 captures, "
        rf"(\d+) bytes, sha256 [0-9a-f]{{16}} in the source; 4, \1, [0-9a-f]{{16}} in the "
        rf"destination; first seq 2 \({binary['id']}\) differs in body", problem), problem

    # A capture gone, a secret changed: each named. A copy run again only adds what is missing
    # after the destination's newest capture, and brings the endpoints' settings back.
    newest = max((c for c in ours["captures"] if c["endpoint_id"] == tokens["cleared"]),
                 key=lambda c: c["seq"])
    assert _run(_with_store(pg, lambda store: store.delete_capture(newest["id"])))
    _sql(pg, ("UPDATE endpoints SET config = replace(config, 's3cret', 'other') WHERE alias = $1",
              "orders"))
    problems = _problems(_run(copy_data(source, pg, verify_only=True)))
    assert problems["orders"][0] == "its config differ"
    assert problems["cleared"][0].endswith(f"first seq 3 ({newest['id']}) is missing in the "
                                           "destination")
    again = _run(copy_data(source, pg))
    assert [e.copied for e in again.endpoints] == [0, 0, 1]
    assert [p[0] for p in _problems(again).values()] == [problem.split("): ", 1)[1]]

    listed = json.loads(hookscope("copy-data", "--from", source, "--to", pg, "--verify-only",
                                  "--json").out)
    assert listed["verified"] is False and "copied" not in listed
    assert [(e["alias"], e["verified"], e["captures"]) for e in listed["per_endpoint"]] == [
        ("orders", False, 4), (None, True, 0), ("cleared", True, 1)]


def test_the_command_copies_and_says_so_and_refuses_bad_input_in_one_line(source, pg, tmp_path):
    done = hookscope_process("copy-data", "--from", source, "--to", pg, server_url=None)
    assert (done.returncode, done.stderr) == (0, "")
    body_bytes = sum(len(c["body"]) for c in _run(_dump(source))["captures"])
    assert done.stdout.splitlines() == [
        f"from      {source}", f"to        {pg}",
        "copied    3 new endpoints, 5 captures, 1 revoked session",
        f"in all    3 endpoints, 5 captures, {size(body_bytes)} of bodies",
        "verified  yes: each endpoint and its captures match (counts, bytes, sha256)"]
    assert hookscope("copy-data", "--from", source, "--to", pg).out.splitlines()[2] == (
        "copied    0 new endpoints, 0 captures, 1 revoked session")

    missing = str(tmp_path / "missing.db")
    refused = hookscope_process("copy-data", "--from", missing, "--to", pg, server_url=None)
    assert (refused.returncode, refused.stdout) == (2, "")
    assert refused.stderr == f"hookscope: {missing}: no such file\n"

    fresh = str(tmp_path / "fresh.db")
    unreachable = "postgresql://postgres:hunter2@127.0.0.1:1/hookscope"
    for args, message in [
            ((source, str(Path(source).parent / "." / "source.db")),
             "the source and the destination are the same database"),
            ((pg, pg), "the source and the destination are the same database"),
            ((source, unreachable), "cannot use the PostgreSQL database "
                                    "postgresql://postgres:***@127.0.0.1:1/hookscope: "),
            ((pg.rsplit("/", 1)[0] + "/postgres", fresh),
             f"{pg.rsplit('/', 1)[0]}/postgres holds no Hookscope data"),
            ((source, fresh, "--verify-only"), f"{fresh}: no such file")]:
        result = hookscope("copy-data", "--from", args[0], "--to", *args[1:])
        assert (result.code, result.out) == (2, ""), (args, result.err)
        assert result.err.startswith(f"hookscope: {message}") and result.err.count("\n") == 1, (
            args, result.err)
        assert "hunter2" not in result.err and "Traceback" not in result.err
    assert not os.path.exists(fresh)

    lock = take_lock(source)  # as a running Hookscope holds it
    try:
        result = hookscope("copy-data", "--from", source, "--to", pg)
        assert result.code == 2 and result.err == (
            f"hookscope: {source} is in use by a running Hookscope; stop it first: what it takes "
            "meanwhile would be left out\n")
        assert hookscope("copy-data", "--from", pg, "--to", source).err == (
            f"hookscope: {source} is in use by a running Hookscope; stop it first: only one "
            "process writes an SQLite file\n")
        assert hookscope("copy-data", "--from", source, "--to", pg, "--verify-only").code == 0
    finally:
        os.close(lock)
    assert hookscope("copy-data", "--from", source, "--to", pg, "--batch", "0").code == 2


def test_ctrl_c_stops_the_command_between_batches_and_the_next_run_finishes(tmp_path, pg):
    source = str(tmp_path / "hookscope.db")

    async def many(store: Store) -> None:
        endpoint = await store.create_endpoint({"created_at": now_us(), "max_captures": 5000})
        await asyncio.gather(*(store.add_capture(_capture(endpoint, b"z" * 100))
                               for _ in range(3000)))

    _run(_with_store(source, many))
    # One capture a transaction: the copy takes long enough to be stopped in the middle.
    command = subprocess.Popen([sys.executable, "-m", "hookscope", "copy-data", "--from", source,
                                "--to", pg, "--batch", "1"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=cli_env(None))
    try:
        while not _copied(pg) and command.poll() is None:
            time.sleep(0.02)
        command.send_signal(signal.SIGINT)
        out, err = command.communicate(timeout=60)
    finally:
        command.kill()
    assert (command.returncode, out) == (130, "")
    assert err == ("hookscope: interrupted; what was copied stays; the same command continues "
                   "from there\n")
    count, seqs, counted = _copied(pg)
    assert 0 < count < 3000 and seqs == count and counted == count
    result = hookscope("copy-data", "--from", source, "--to", pg)
    assert result.code == 0 and result.out.splitlines()[2] == (
        f"copied    0 new endpoints, {3000 - count} captures, 0 revoked sessions")


def _copied(url: str) -> tuple[int, int, int] | None:
    """How many captures the destination holds, its highest seq and its endpoint's count of
    them; None before there are any."""
    async def read() -> tuple[int, int, int] | None:
        conn = await asyncpg.connect(url)
        try:
            if not await conn.fetchval("SELECT to_regclass('captures') IS NOT NULL"):
                return None
            row = await conn.fetchrow("SELECT count(*), max(seq), (SELECT capture_count FROM "
                                      "endpoints) FROM captures")
        finally:
            await conn.close()
        return (row[0], row[1], row[2]) if row[0] else None

    return _run(read())


def test_the_copy_carries_every_column_of_both_schemas(source, pg):
    """A migration that adds a column adds it to EndpointRow or CaptureRow too, or this fails."""
    _run(copy_data(source, pg))
    conn = sqlite3.connect(source)
    try:
        sqlite = {table: {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
                  for table in ("endpoints", "captures")}
    finally:
        conn.close()

    async def columns() -> dict[str, set[str]]:
        db = await asyncpg.connect(pg)
        try:
            return {table: {row[0] for row in await db.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_name = $1",
                table)} for table in ("endpoints", "captures")}
        finally:
            await db.close()

    postgres = _run(columns())
    # The rows' own keys, how each finds its endpoint, and what a store derives (SQLite's
    # file_bytes, where the body is; PostgreSQL's stored, what it counts).
    assert sqlite["endpoints"] == postgres["endpoints"] == set(EndpointRow._fields)
    assert sqlite["captures"] - {"rowid", "endpoint_id", "file_bytes"} == set(CaptureRow._fields)
    assert postgres["captures"] - {"pk", "endpoint_id", "stored"} == set(CaptureRow._fields)
