"""The limits a PostgreSQL store holds its captures to, inside the transactions that change them
(as storage.sqlite.retention does for SQLite): an endpoint's max_captures and max_bytes, and
HOOKSCOPE_MAX_TOTAL_BYTES over all endpoints. The oldest captures go first, an endpoint's newest
never, and the endpoints' counters are kept in step with every row deleted.
"""

from __future__ import annotations

from typing import Any

# The key of the advisory lock that serialises pruning to the total limit across processes.
TOTAL_LOCK = 0x546F74  # "Tot"
PRUNE_BATCH = 500


class Retention:
    def __init__(self, max_total_bytes: int = 0) -> None:
        self.max_total_bytes = max_total_bytes

    async def lock_total(self, conn: Any) -> None:
        """With a total limit, every write transaction takes this lock first, before any row:
        pruning to the total deletes other endpoints' captures and updates their rows, and one
        lock order for all writers (this lock, then endpoint rows in id order, then captures)
        is what keeps them from deadlocking."""
        if self.max_total_bytes:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", TOTAL_LOCK)

    async def prune(self, conn: Any, endpoints: list[Any]) -> None:
        """Hold the endpoints (rows of id, capture_count, max_captures, stored_bytes, max_bytes
        as this transaction left them), and all of them together, to their limits."""
        for row in endpoints:
            endpoint_id = row["id"]
            if row["capture_count"] > row["max_captures"]:
                await delete_counted(conn, "DELETE FROM captures WHERE pk IN (SELECT pk FROM "
                                     "captures WHERE endpoint_id = $1 ORDER BY seq LIMIT $2) "
                                     "RETURNING endpoint_id, stored",
                                     endpoint_id, row["capture_count"] - row["max_captures"])
                row = await conn.fetchrow("SELECT stored_bytes, max_bytes FROM endpoints "
                                          "WHERE id = $1", endpoint_id)
            if row["max_bytes"] is not None and row["stored_bytes"] > row["max_bytes"]:
                await _prune_bytes(conn, endpoint_id, row["stored_bytes"] - row["max_bytes"])
        if self.max_total_bytes:
            total = await conn.fetchval("SELECT COALESCE(sum(stored_bytes), 0) FROM endpoints")
            await _prune_total(conn, total - self.max_total_bytes)


async def delete_counted(conn: Any, sql: str, *args: Any) -> None:
    """Delete what `sql` returns (endpoint_id, stored), keeping the counters in step."""
    freed: dict[int, list[int]] = {}
    for endpoint_id, stored in await conn.fetch(sql, *args):
        totals = freed.setdefault(endpoint_id, [0, 0])
        totals[0] += 1
        totals[1] += stored
    if freed:
        await conn.executemany(
            "UPDATE endpoints SET capture_count = capture_count - $2, "
            "stored_bytes = stored_bytes - $3 WHERE id = $1",
            [(key, count, size) for key, (count, size) in freed.items()])


async def _prune_bytes(conn: Any, endpoint_id: int, excess: int) -> None:
    """Delete an endpoint's oldest captures, never its newest, until `excess` stored bytes are
    gone. An endpoint held at its max_bytes prunes a little at nearly every commit."""
    newest = await conn.fetchval("SELECT max(seq) FROM captures WHERE endpoint_id = $1",
                                 endpoint_id)
    if newest is not None:
        await _prune_oldest(
            conn, excess, "SELECT seq, pk, stored FROM captures WHERE endpoint_id = $2 AND "
            "seq > $1 AND seq < $3 ORDER BY seq LIMIT $4", endpoint_id, newest)


async def _prune_total(conn: Any, excess: int) -> None:
    """Delete the oldest captures of all endpoints, none an endpoint's newest, until `excess`
    stored bytes are gone."""
    await _prune_oldest(
        conn, excess, "SELECT c.pk, c.pk, c.stored FROM captures c WHERE c.pk > $1 AND "
        "EXISTS (SELECT 1 FROM captures n WHERE n.endpoint_id = c.endpoint_id AND "
        "n.seq > c.seq) ORDER BY c.pk LIMIT $2")


async def _prune_oldest(conn: Any, excess: int, oldest: str, *args: Any) -> None:
    """Delete what `oldest` lists (cursor, pk, stored; $1 the cursor to go on after, the batch
    size last) until `excess` stored bytes are gone: read in batches, so a large table is not
    read whole for the few captures one commit pushes out."""
    after = 0
    while excess > 0:
        rows = await conn.fetch(oldest, after, *args, PRUNE_BATCH)
        if not rows:
            return
        doomed = []
        for _, pk, stored in rows:
            if excess <= 0:
                break
            doomed.append(pk)
            excess -= stored
        after = rows[-1][0]
        await delete_counted(conn, "DELETE FROM captures WHERE pk = ANY($1::bigint[]) "
                             "RETURNING endpoint_id, stored", doomed)
