"""create_app(): the one place that wires Hookscope together."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from hookscope.errors import EXCEPTION_HANDLERS
from hookscope.formats import Validation, load_formats
from hookscope.ingest.limits import FailureThrottle, RateLimiter, SharedRateLimiter
from hookscope.ingest.offload import Offload
from hookscope.live import Hub, delivery_frame
from hookscope.live.local import LocalHub
from hookscope.models import now_us
from hookscope.ops.forwarder import Forwarder
from hookscope.ops.replay import TargetPolicy
from hookscope.routes import build_front, build_middleware, build_routes
from hookscope.routes.common import keep_delivery
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


def create_app(settings: Settings | None = None, *, store: Store | None = None,
               hub: Hub | None = None) -> Hookscope:
    """Build the ASGI app. A store passed in is the caller's to open and close (tests do that);
    otherwise the app opens the store its settings name at startup and closes it at shutdown."""
    settings = settings or Settings()
    owns_store = store is None
    active = store if store is not None else build_store(StorageSettings.of(settings))
    live = hub if hub is not None else LocalHub()

    async def captured_elsewhere(endpoint_id: int, seq: int) -> None:
        """A capture another process committed (PostgreSQL): to this process's viewers."""
        if live.wanted(endpoint_id) and (capture := await active.capture_at(endpoint_id, seq)):
            live.publish(endpoint_id, seq, json.dumps(capture.as_json(full=False)))

    def delivered_elsewhere(endpoint_id: int, summary: dict[str, Any]) -> None:
        live.publish_event(endpoint_id, delivery_frame(summary))

    active.captures_elsewhere = captured_elsewhere
    active.deleted_elsewhere = live.close_endpoint
    active.deliveries_elsewhere = delivered_elsewhere
    policy = TargetPolicy.for_server(settings.host, settings.replay_allow)
    # Each process forwards the captures it took (several may serve one PostgreSQL database).
    forwarder = Forwarder(partial(keep_delivery, active, live), policy)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if owns_store:
            await active.open()
        live.open()
        forwarder.open()
        sweeper = asyncio.create_task(sweep_expired(active, live, settings.sweep_interval))
        try:
            yield
        finally:
            sweeper.cancel()
            live.close()  # end open streams first, so none holds the exit
            await forwarder.close()  # before the store: its workers record deliveries there
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            if owns_store:
                await active.close()

    validation = Validation(load_formats())
    throttle = FailureThrottle()
    limiter = RateLimiter(settings.rate_limit)
    admit = None
    if active.shared:  # other processes serve this database: their counts are kept in it
        admit = SharedRateLimiter(active.take_tokens, settings.rate_limit).admit
        throttle.tell_others = active.tell_failure
        active.failures_elsewhere = throttle.failed_elsewhere
    offload = Offload()
    app = Hookscope(front=build_front(active, settings, validation, live, limiter, offload,
                                      admit, forwarder),
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
    app.state.replay_policy = policy
    app.state.forwarder = forwarder
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
