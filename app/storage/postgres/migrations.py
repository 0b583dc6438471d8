"""The PostgreSQL schema, as forward migrations numbered in `hookscope_schema`.

As with SQLite, a release only appends; several processes that start at once take turns through
an advisory lock, and the first brings the schema up to date while the others wait, then find
nothing left to do. A database written by a newer release is refused.
"""

from __future__ import annotations

from typing import Any

from hookscope.storage import SchemaTooNew

# Any number, the same in every process: the key of the advisory lock migrations run under.
MIGRATION_LOCK = 0x486F6F6B  # "Hook"

MIGRATIONS: tuple[str, ...] = (
    # 1: endpoints, captures (the body last, counted in `stored` as SQLite's STORED_BYTES counts
    # it: body, path, query and headers), revoked browser sessions. Endpoint ids are never reused
    # (a sequence), so a capture in flight for a deleted endpoint can only fail.
    """
    CREATE TABLE endpoints (
        id BIGSERIAL PRIMARY KEY,
        token TEXT NOT NULL UNIQUE,
        alias TEXT UNIQUE,
        name TEXT,
        created_at BIGINT NOT NULL,
        expires_at BIGINT,
        max_captures BIGINT NOT NULL,
        max_bytes BIGINT,
        config TEXT NOT NULL,
        last_seq BIGINT NOT NULL DEFAULT 0,
        capture_count BIGINT NOT NULL DEFAULT 0,
        stored_bytes BIGINT NOT NULL DEFAULT 0,
        last_capture_at BIGINT
    );
    CREATE TABLE captures (
        pk BIGSERIAL PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        endpoint_id BIGINT NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
        seq BIGINT NOT NULL,
        received_at BIGINT NOT NULL,
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        query TEXT NOT NULL,
        headers TEXT NOT NULL,
        remote_addr TEXT,
        content_type TEXT,
        body_size BIGINT NOT NULL,
        truncated BOOLEAN NOT NULL,
        response_status INTEGER NOT NULL,
        parsed_kind TEXT NOT NULL,
        parsed_error TEXT,
        signature_status TEXT NOT NULL,
        signature TEXT,
        validation_status TEXT NOT NULL,
        format TEXT,
        validation TEXT,
        stored BIGINT NOT NULL,
        body BYTEA NOT NULL,
        UNIQUE (endpoint_id, seq)
    );
    CREATE TABLE revoked_sessions (
        nonce TEXT PRIMARY KEY,
        expires_at BIGINT NOT NULL
    );
    """,
    # 2: rate limits shared by every process: one token bucket per capped endpoint (`e<id>`)
    # and one for all capture URLs (`*`), refilled on the database's clock, so every process and
    # host counts against the same figures. hookscope_take takes one token from each named
    # bucket, all or none, locking the rows in the order given (callers sort their names) and
    # returns 0, or the seconds until each bucket has a token.
    """
    CREATE TABLE rate_buckets (
        name TEXT PRIMARY KEY,
        rate DOUBLE PRECISION NOT NULL,
        tokens DOUBLE PRECISION NOT NULL,
        stamp DOUBLE PRECISION NOT NULL
    );
    CREATE FUNCTION hookscope_take(names TEXT[], rates DOUBLE PRECISION[])
    RETURNS DOUBLE PRECISION LANGUAGE plpgsql AS $$
    DECLARE
        now DOUBLE PRECISION := extract(epoch FROM clock_timestamp());
        levels DOUBLE PRECISION[] := '{}';
        level DOUBLE PRECISION;
        wait DOUBLE PRECISION := 0;
        bucket RECORD;
    BEGIN
        FOR i IN 1 .. cardinality(names) LOOP
            -- Made full when missing, locked either way, and read in the same statement: a
            -- sweep that deletes a full bucket cannot slip in between.
            INSERT INTO rate_buckets AS b (name, rate, tokens, stamp)
                VALUES (names[i], rates[i], greatest(1, rates[i]), now)
                ON CONFLICT (name) DO UPDATE SET rate = b.rate
                RETURNING b.tokens, b.stamp INTO bucket;
            level := least(greatest(1, rates[i]),
                           bucket.tokens + greatest(0, now - bucket.stamp) * rates[i]);
            levels := levels || level;
            IF level < 1 THEN
                wait := greatest(wait, (1 - level) / rates[i]);
            END IF;
        END LOOP;
        FOR i IN 1 .. cardinality(names) LOOP
            UPDATE rate_buckets
                SET rate = rates[i], stamp = now,
                    tokens = levels[i] - CASE WHEN wait = 0 THEN 1 ELSE 0 END
                WHERE name = names[i];
        END LOOP;
        RETURN wait;
    END
    $$;
    """,
    # 3: forwarding attempts recorded on a capture (`hookscope listen`, an endpoint's `forward`),
    # each a JSON record; they go with their capture.
    """
    CREATE TABLE deliveries (
        pk BIGSERIAL PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        capture_id TEXT NOT NULL REFERENCES captures(id) ON DELETE CASCADE,
        created_at BIGINT NOT NULL,
        record TEXT NOT NULL
    );
    CREATE INDEX deliveries_capture ON deliveries(capture_id, pk);
    """,
)

LATEST = len(MIGRATIONS)


async def migrate(conn: Any, *, target: int = LATEST) -> int:
    """Bring the database to `target`; the version it started at."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute("CREATE TABLE IF NOT EXISTS hookscope_schema (version INTEGER NOT NULL)")
        version = await conn.fetchval("SELECT max(version) FROM hookscope_schema") or 0
        if version > LATEST:
            raise SchemaTooNew(
                f"database schema version {version} is newer than this Hookscope knows "
                f"({LATEST}); upgrade Hookscope or use another database")
        for number in range(version + 1, target + 1):
            await conn.execute(MIGRATIONS[number - 1])
            await conn.execute("INSERT INTO hookscope_schema (version) VALUES ($1)", number)
        return int(version)
