"""The database schema, as forward migrations numbered by PRAGMA user_version.

A release only ever appends to MIGRATIONS, so it opens any older database and brings it up to date
in one transaction. A database written by a newer release (user_version beyond what we know) is
refused rather than guessed at.
"""

from __future__ import annotations

import sqlite3

from hookscope.storage import SchemaTooNew

MIGRATIONS: tuple[str, ...] = (
    # 1: endpoints and captures. The body is the last column so listing summaries never reads a
    # large body's overflow pages. Counters on endpoints are kept by the single writer. Endpoint
    # ids are never reused (AUTOINCREMENT), so a capture still in flight for a deleted endpoint
    # can only fail, never land in a newer endpoint that took the same id.
    """
    CREATE TABLE endpoints (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        token TEXT NOT NULL UNIQUE,
        alias TEXT UNIQUE,
        name TEXT,
        created_at INTEGER NOT NULL,
        expires_at INTEGER,
        max_captures INTEGER NOT NULL,
        config TEXT NOT NULL,
        last_seq INTEGER NOT NULL DEFAULT 0,
        capture_count INTEGER NOT NULL DEFAULT 0,
        last_capture_at INTEGER
    );
    CREATE TABLE captures (
        rowid INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        endpoint_id INTEGER NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        received_at INTEGER NOT NULL,
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        query TEXT NOT NULL,
        headers TEXT NOT NULL,
        remote_addr TEXT,
        content_type TEXT,
        body_size INTEGER NOT NULL,
        truncated INTEGER NOT NULL,
        response_status INTEGER NOT NULL,
        parsed_kind TEXT NOT NULL,
        parsed_error TEXT,
        signature_status TEXT NOT NULL,
        signature TEXT,
        validation_status TEXT NOT NULL,
        format TEXT,
        validation TEXT,
        body BLOB NOT NULL
    );
    CREATE UNIQUE INDEX captures_endpoint_seq ON captures(endpoint_id, seq);
    """,
    # 2: a cap on an endpoint's stored body bytes, and the running total it is checked against.
    """
    ALTER TABLE endpoints ADD COLUMN max_bytes INTEGER;
    ALTER TABLE endpoints ADD COLUMN stored_bytes INTEGER NOT NULL DEFAULT 0;
    UPDATE endpoints SET stored_bytes = (
        SELECT COALESCE(SUM(length(body)), 0) FROM captures WHERE endpoint_id = endpoints.id);
    """,
    # 3: a body kept in a file beside the database (bodyfiles.py) leaves the row's body empty
    # and its length here; 0 (all earlier rows): the body is in the row.
    """
    ALTER TABLE captures ADD COLUMN file_bytes INTEGER NOT NULL DEFAULT 0;
    """,
    # 4: a capture's path, query and header fields count toward stored_bytes, as its body does
    # (retention.STORED_BYTES).
    """
    UPDATE endpoints SET stored_bytes = (
        SELECT COALESCE(SUM(length(body) + file_bytes + length(CAST(path AS BLOB))
                            + length(CAST(query AS BLOB)) + length(CAST(headers AS BLOB))), 0)
        FROM captures WHERE endpoint_id = endpoints.id);
    """,
    # 5: browser sessions logged out before they expired (routes.access): a cookie naming one no
    # longer signs in, whichever process it reaches.
    """
    CREATE TABLE revoked_sessions (
        nonce TEXT PRIMARY KEY,
        expires_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
    # 6: forwarding attempts recorded on a capture (`hookscope listen`, an endpoint's `forward`),
    # each a JSON record; they go with their capture.
    """
    CREATE TABLE deliveries (
        rowid INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        capture_id TEXT NOT NULL REFERENCES captures(id) ON DELETE CASCADE,
        created_at INTEGER NOT NULL,
        record TEXT NOT NULL
    );
    CREATE INDEX deliveries_capture ON deliveries(capture_id, rowid);
    """,
)

LATEST = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, *, target: int = LATEST) -> int:
    """Bring the database to `target` (default: the latest). Returns the version it started at."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > LATEST:
        raise SchemaTooNew(
            f"database schema version {version} is newer than this Hookscope knows ({LATEST}); "
            "upgrade Hookscope or use another --db")
    if version >= target:
        return version
    conn.execute("BEGIN IMMEDIATE")
    try:
        for number in range(version + 1, target + 1):
            for statement in _statements(MIGRATIONS[number - 1]):
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {int(target)}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return version


def _statements(script: str) -> list[str]:
    # executescript() would commit our transaction; split on ';' instead (no ';' inside literals).
    return [s.strip() for s in script.split(";") if s.strip()]
