"""The uvicorn server Hookscope runs under, shared by `hookscope serve` and the pytest plugin."""

from __future__ import annotations

import socket

import uvicorn
from starlette.applications import Starlette

from app.inputs import MAX_DELAY_MS
from app.main import create_app
from app.settings import Settings


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
        http=settings.http,
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
