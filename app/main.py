"""create_app(): the one place that wires Hookscope together."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from hookscope.errors import EXCEPTION_HANDLERS
from hookscope.formats import Validation, load_formats
from hookscope.ingest.limits import FailureThrottle, RateLimiter
from hookscope.ingest.offload import Offload
from hookscope.live import Hub
from hookscope.live.local import LocalHub
from hookscope.models import now_us
from hookscope.ops.replay import TargetPolicy
from hookscope.routes import build_front, build_middleware, build_routes
from hookscope.routes.capture import Admit
from hookscope.settings import Settings
from hookscope.storage import StorageSettings, Store, build_store

log = logging.getLogger("hookscope")


class Hookscope(Starlette):
    """The Starlette app with `front` in front of all of it, its error middleware included: the
    capture path (hookscope.routes.capture) takes capture URLs before Starlette sees them."""

    def __init__(self, *, front: Callable[[ASGIApp], ASGIApp], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._front = front(super().__call__)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._front(scope, receive, send)


class Peers(Protocol):
    """The other processes of a server with HOOKSCOPE_WORKERS over 1, as one process sees them
    (hookscope.cluster): started once the store is open, stopped before it closes."""

    sweeps: bool  # this process deletes expired endpoints
    shared: bool  # its store opens after another process's (no lock file, no sweep of files)

    @property
    def hub(self) -> Hub: ...  # this process's, which knows of the others' watchers

    @property
    def admit(self) -> Admit | None: ...  # asks another process for rate-limit tokens

    async def start(self, app: Starlette) -> None: ...
    def stopping(self) -> None: ...  # the server's shutdown began
    async def stop(self) -> None: ...


def create_app(settings: Settings | None = None, *, store: Store | None = None,
               hub: Hub | None = None, peers: Peers | None = None) -> Hookscope:
    """Build the ASGI app. A store passed in is the caller's to open and close (tests do that);
    otherwise the app opens its SQLite store at startup and closes it at shutdown. `peers` make
    it one process of several (hookscope.cluster), with their hub and their rate limiter."""
    settings = settings or Settings()
    owns_store = store is None
    active = store if store is not None else build_store(
        StorageSettings.of(settings), shared=peers is not None and peers.shared)
    live = hub if hub is not None else peers.hub if peers is not None else LocalHub()

    async def captured_elsewhere(endpoint_id: int, seq: int) -> None:
        """A capture another process committed (PostgreSQL): to this process's viewers."""
        if live.wanted(endpoint_id) and (capture := await active.capture_at(endpoint_id, seq)):
            live.publish(endpoint_id, seq, json.dumps(capture.as_json(full=False)))

    active.captures_elsewhere = captured_elsewhere
    active.deleted_elsewhere = live.close_endpoint

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if owns_store:
            await active.open()
        live.open()
        sweeper = None
        try:  # whatever fails to start, the store is closed (its threads would keep a process)
            if peers is not None:
                await peers.start(app)
            if peers is None or peers.sweeps:
                sweeper = asyncio.create_task(
                    sweep_expired(active, live, settings.sweep_interval))
            yield
        finally:
            if sweeper is not None:
                sweeper.cancel()
            live.close()  # end open streams first, so none holds the exit
            if sweeper is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
            if peers is not None:
                await peers.stop()  # their last captures still need the store
            if owns_store:
                await active.close()

    validation = Validation(load_formats())
    throttle = FailureThrottle()
    limiter = RateLimiter(settings.rate_limit)
    admit = peers.admit if peers is not None else None
    offload = Offload()
    app = Hookscope(front=build_front(active, settings, validation, live, limiter, offload,
                                      admit),
                    routes=build_routes(),
                    middleware=build_middleware(settings, throttle, active),
                    exception_handlers=EXCEPTION_HANDLERS,
                    lifespan=lifespan)
    app.state.settings = settings
    app.state.store = active
    app.state.validation = validation
    app.state.hub = live
    app.state.auth_throttle = throttle
    app.state.limiter = limiter
    app.state.offload = offload
    app.state.replay_policy = TargetPolicy.for_server(settings.host, settings.replay_allow)
    app.state.peers = peers
    return app


async def sweep_expired(store: Store, hub: Hub, interval: float) -> None:
    """Delete expired endpoints with their captures now, then every `interval` seconds."""
    while True:
        try:
            for endpoint_id in await store.delete_expired(now_us()):
                hub.close_endpoint(endpoint_id)
        except Exception:  # a full disk must not end the sweeps for good
            log.exception("expiry sweep failed; next try in %s s", interval)
        await asyncio.sleep(interval)
