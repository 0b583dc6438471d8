"""The uvicorn server Hookscope runs under, shared by `hookscope serve` and the pytest plugin."""

from __future__ import annotations

import gc
import socket
import sys

import uvicorn
from starlette.applications import Starlette

from hookscope.ingest.protocol import guarded_protocol
from hookscope.main import create_app
from hookscope.models import MAX_DELAY_MS
from hookscope.settings import Settings


class HookscopeServer(uvicorn.Server):
    """uvicorn's server, ending live streams and long-polls the moment shutdown begins: uvicorn
    waits for open connections before it runs the app's own shutdown, so without this an open
    `wait=60` would hold the exit for a minute."""

    def __init__(self, config: uvicorn.Config, app: Starlette) -> None:
        super().__init__(config)
        self.app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.app.state.hub.close()
        await super().shutdown(sockets)


def build_server(settings: Settings, app: Starlette | None = None) -> HookscopeServer:
    app = app or create_app(settings)
    trusted = settings.forwarded_allow_ips
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=guarded_protocol(settings) if settings.http == "httptools" else "h11",
        h11_max_incomplete_event_size=settings.max_header_bytes,
        limit_concurrency=settings.max_connections,
        lifespan="on",
        access_log=settings.access_log,
        log_level=settings.log_level,
        # X-Forwarded-For is never trusted unless the operator names the proxies.
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or None,
        server_header=False,
        # Longer than the longest configurable reply delay, so in-flight captures are answered.
        timeout_graceful_shutdown=MAX_DELAY_MS // 1000 + 10,
    )
    return HookscopeServer(config, app)


def listen(config: uvicorn.Config, *, reuse_port: bool = False) -> socket.socket:
    """The listening socket, bound here rather than by uvicorn (which exits the process when a
    port is taken), so a failure is an OSError the command reports. With `reuse_port`, other
    Hookscope processes on the same database bind it too: they share the port and the kernel
    spreads connections among them (SO_REUSEPORT)."""
    if reuse_port and not hasattr(socket, "SO_REUSEPORT"):
        raise OSError("--reuse-port needs SO_REUSEPORT, which this system lacks")
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((config.host, config.port))
        sock.listen(config.backlog)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


YOUNG_GC_THRESHOLD = 10_000


def tune_process() -> None:
    """The interpreter settings a server process runs with."""
    # The writer thread shares the GIL with the event loop; a shorter switch interval than
    # Python's default keeps the loop from waiting that long for it (bench/stream).
    sys.setswitchinterval(0.0005)
    # The objects of the loaded app (modules, compiled format schemas) live as long as
    # the process: out of the collector's sight, each full collection has that much less to
    # scan while captures wait (bench/stream).
    gc.collect()
    gc.freeze()
    # A capture fanned out to N viewers wakes N streams at once, which alone crosses Python's
    # default young-generation threshold (700 objects): each fan-out then ran a young
    # collection half-way, moving every waiting stream's future into the old generation, and
    # every few seconds that added up to a full collection over all the streams (the whole
    # tail of bench/stream; docs/performance.md).
    gc.set_threshold(YOUNG_GC_THRESHOLD, *gc.get_threshold()[1:])
