"""Every setting in one declarative table.

Each field of `Settings` carries its environment variable and help text in its metadata; the CLI,
the settings table in docs/running.md and the tests all read this one table (`SETTINGS`), so a
setting cannot exist without being documented.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MIB = 1024 * 1024
_SEVERAL_PROCESSES = (
    "HOOKSCOPE_WORKERS (--workers) {}: {}: run `hookscope serve --reuse-port` once per process "
    "under a supervisor such as systemd, on the same --db and --port (docs/running.md, "
    "\"Several processes and hosts\")")


def _setting(default: Any, env: str, help: str, *, cli: str | None = None) -> Any:
    return field(default=default, metadata={"env": env, "help": help, "cli": cli})


@dataclass(frozen=True)
class Settings:
    host: str = _setting("127.0.0.1", "HOOKSCOPE_HOST", "Address to listen on.", cli="--host")
    port: int = _setting(8000, "HOOKSCOPE_PORT", "Port to listen on (0 picks a free one).",
                         cli="--port")
    db: str = _setting("data/hookscope.db", "HOOKSCOPE_DB",
                       "SQLite database file (its folder is created if missing), or a "
                       "postgresql://user:password@host:port/database URL.", cli="--db")
    synchronous: str = _setting(
        "normal", "HOOKSCOPE_SYNCHRONOUS",
        "When a capture counts as stored. normal: committed to SQLite's WAL, which survives a "
        "killed process (a power cut may lose the last commits). full: each commit is also synced "
        "to disk before its captures are answered, which survives a power cut (if the disk "
        "honours flushes), at a cost in captures a second under load (docs/performance.md).",
        cli="--synchronous")
    body_file_bytes: int = _setting(
        0, "HOOKSCOPE_BODY_FILE_BYTES",
        "Bodies of at least this many bytes are kept as files in a folder beside the database "
        "(<db>.bodies), not in it: written once rather than twice, for large bodies at speed. "
        "0, or a value over HOOKSCOPE_MAX_BODY_BYTES: new bodies all go into the database file "
        "(files already written stay readable).")
    db_pool: int = _setting(
        10, "HOOKSCOPE_DB_POOL",
        "PostgreSQL: the most connections this process opens for reads and changes, besides "
        "its one for committing captures and its one for LISTEN (so at most this plus 2 per "
        "process count against the server's max_connections).", cli="--db-pool")
    workers: int = _setting(
        1, "HOOKSCOPE_WORKERS",
        "Only 1: an SQLite database is served by one process, and on PostgreSQL each process "
        "is started on its own (several `hookscope serve --reuse-port` under a supervisor, "
        "docs/running.md).",
        cli="--workers")
    reuse_port: bool = _setting(
        False, "HOOKSCOPE_REUSE_PORT",
        "Listen with SO_REUSEPORT (Linux), so that several `hookscope serve` processes on one "
        "PostgreSQL database share one port and the kernel spreads connections among them.",
        cli="--reuse-port")
    public_url: str = _setting(
        "", "HOOKSCOPE_PUBLIC_URL",
        "Base of the absolute URLs Hookscope hands out (e.g. https://hooks.example.com behind a "
        "proxy). Empty: taken from each request's Host.", cli="--public-url")
    token: str = _setting(
        "", "HOOKSCOPE_TOKEN",
        "When set, the API, the live stream and the pages need it (Authorization: Bearer, or the "
        "login page's cookie); capture URLs stay open. Empty: no login.")
    allowed_hosts: str = _setting(
        "", "HOOKSCOPE_ALLOWED_HOSTS",
        "Comma-separated host names the API and pages answer to when no token is set, besides "
        "IP addresses, localhost and the public URL's host (a guard against DNS rebinding). "
        "*: any.")
    max_body_bytes: int = _setting(
        10 * MIB, "HOOKSCOPE_MAX_BODY_BYTES",
        "Largest body stored per capture; a larger one is answered 413 and stored cut at this size "
        "with truncated=true.")
    max_header_bytes: int = _setting(
        64 * 1024, "HOOKSCOPE_MAX_HEADER_BYTES",
        "Largest request head (request line and header fields) accepted, on every route; a larger "
        "one is answered 431 and nothing is stored.")
    header_timeout: int = _setting(
        10, "HOOKSCOPE_HEADER_TIMEOUT",
        "Seconds a client has to send a request's head, from connecting (or from its first byte "
        "on a connection kept alive); then it is answered 408 and disconnected.")
    body_timeout: int = _setting(
        60, "HOOKSCOPE_BODY_TIMEOUT",
        "Seconds a client has to send a request's body once its head has arrived; then it is "
        "answered 408 and disconnected, and nothing is stored.")
    max_connections: int = _setting(
        10_000, "HOOKSCOPE_MAX_CONNECTIONS",
        "Open connections (or requests in progress) per process beyond which a new request is "
        "answered 503; live streams and long-polls count too.")
    default_max_captures: int = _setting(
        10_000, "HOOKSCOPE_DEFAULT_MAX_CAPTURES",
        "max_captures of a new endpoint that does not set its own; beyond it the oldest captures "
        "are pruned.")
    default_max_bytes: int = _setting(
        0, "HOOKSCOPE_DEFAULT_MAX_BYTES",
        "max_bytes of a new endpoint that does not set its own: the bytes it keeps (bodies, and "
        "their paths, queries and header fields) before its oldest captures are pruned. 0: no "
        "limit.")
    max_total_bytes: int = _setting(
        0, "HOOKSCOPE_MAX_TOTAL_BYTES",
        "Bytes kept across all endpoints together (bodies, and their paths, queries and header "
        "fields); beyond it the oldest captures of any endpoint are pruned. 0: no limit.")
    rate_limit: int = _setting(
        0, "HOOKSCOPE_RATE_LIMIT",
        "Requests per second that all capture URLs together accept; beyond it they answer 429 "
        "with Retry-After and store nothing. 0: no limit.")
    default_ttl: int = _setting(
        0, "HOOKSCOPE_DEFAULT_TTL",
        "Seconds until a new endpoint expires when it sets no expires_at. 0: never.")
    sweep_interval: int = _setting(
        60, "HOOKSCOPE_SWEEP_INTERVAL",
        "Seconds between sweeps that delete expired endpoints together with their captures.")
    http: str = _setting(
        "httptools", "HOOKSCOPE_HTTP",
        "HTTP parser: httptools (fastest; accepts the methods llhttp knows, which include WebDAV's "
        "and PURGE/QUERY) or h11 (accepts any method token).", cli="--http")
    replay_allow: str = _setting(
        "", "HOOKSCOPE_REPLAY_ALLOW",
        "Comma-separated CIDRs and host names that replays may be sent to whatever their "
        "addresses: link-local ones (cloud metadata) are refused otherwise, and private and "
        "loopback ones too when the server listens on a non-loopback address.")
    forwarded_allow_ips: str = _setting(
        "", "HOOKSCOPE_FORWARDED_ALLOW_IPS",
        "Comma-separated proxy addresses whose X-Forwarded-For/-Proto are trusted for the client "
        "address. Empty (default): never trusted, the socket's peer is recorded.")
    access_log: bool = _setting(False, "HOOKSCOPE_ACCESS_LOG",
                                "Log one line per request (off by default: it costs throughput).")
    log_level: str = _setting("info", "HOOKSCOPE_LOG_LEVEL",
                              "Server log level: critical, error, warning, info, debug.")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then environment variables, then explicit overrides (CLI flags) win."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(f.metadata["env"])
            if raw is not None and raw != "":
                values[f.name] = _convert(f.name, f.metadata["env"], raw, type(f.default))
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"port must be 0..65535, got {self.port}")
        if self.max_body_bytes < 1:
            raise SettingsError("HOOKSCOPE_MAX_BODY_BYTES must be at least 1")
        if self.max_header_bytes < 1024:
            raise SettingsError("HOOKSCOPE_MAX_HEADER_BYTES must be at least 1024")
        for f in ("header_timeout", "body_timeout", "max_connections"):
            if getattr(self, f) < 1:
                raise SettingsError(f"HOOKSCOPE_{f.upper()} must be at least 1")
        if self.default_max_captures < 1:
            raise SettingsError("HOOKSCOPE_DEFAULT_MAX_CAPTURES must be at least 1")
        for f in ("default_max_bytes", "max_total_bytes", "rate_limit", "default_ttl",
                  "body_file_bytes"):
            if getattr(self, f) < 0:
                raise SettingsError(f"HOOKSCOPE_{f.upper()} must be 0 (off) or more")
        if self.token and (not self.token.isascii() or not self.token.isprintable()
                           or self.token != self.token.strip() or " " in self.token):
            raise SettingsError("HOOKSCOPE_TOKEN must be printable ASCII without spaces (it "
                                "travels in an Authorization header)")
        if self.workers != 1:
            raise SettingsError(_SEVERAL_PROCESSES.format(
                self.workers, "an SQLite file is served by one process; several processes need "
                "a PostgreSQL --db (postgresql://...), each started on its own"
                if not self.db.startswith(("postgresql://", "postgres://")) else
                "on PostgreSQL, start each process on its own"))
        if not 1 <= self.db_pool <= 1000:
            raise SettingsError(f"HOOKSCOPE_DB_POOL must be 1..1000, got {self.db_pool}")
        if self.sweep_interval < 1:
            raise SettingsError("HOOKSCOPE_SWEEP_INTERVAL must be at least 1 second")
        if self.http not in ("httptools", "h11"):
            raise SettingsError(f"HOOKSCOPE_HTTP must be httptools or h11, got {self.http!r}")
        if self.synchronous not in ("normal", "full"):
            raise SettingsError(
                f"HOOKSCOPE_SYNCHRONOUS must be normal or full, got {self.synchronous!r}")
        for item in (i.strip() for i in self.replay_allow.split(",") if i.strip()):
            if not _network_or_host(item):
                raise SettingsError(f"HOOKSCOPE_REPLAY_ALLOW: {item!r} is neither a CIDR such "
                                    "as 10.0.0.0/8 nor a host name")
        if self.public_url and not self.public_url.startswith(("http://", "https://")):
            raise SettingsError("HOOKSCOPE_PUBLIC_URL must start with http:// or https://")


class SettingsError(ValueError):
    """A setting has a value Hookscope cannot run with; the message names it."""


SETTINGS: tuple[dataclasses.Field[Any], ...] = dataclasses.fields(Settings)


def _network_or_host(item: str) -> bool:
    try:
        ipaddress.ip_network(item, strict=False)
        return True
    except ValueError:
        return re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})", item) is not None


def _convert(name: str, env: str, raw: str, kind: type) -> Any:
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{env} must be true or false, got {raw!r}")
    if kind is int:
        try:
            return int(raw.replace("_", ""))
        except ValueError:
            raise SettingsError(f"{env} must be a whole number, got {raw!r}") from None
    return raw
