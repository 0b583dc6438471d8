"""A worker process of HOOKSCOPE_WORKERS: its link to the main process, and its hub.

The design, and what holds across the processes, is in hookscope.cluster (the main process's side).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
from collections.abc import Callable
from functools import partial

from starlette.applications import Starlette

from hookscope.cluster.channel import Channel, receive_blocking
from hookscope.ingest.limits import FailureThrottle
from hookscope.live.local import LocalHub, LocalSubscription
from hookscope.settings import Settings
from hookscope.storage import Store

log = logging.getLogger("hookscope.worker")


class Link:
    """A worker's side of its channel to the main process."""

    sweeps = False  # the main process deletes expired endpoints
    shared = True

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.channel = Channel()
        self.hub = WorkerHub(self)
        self.on_lost: Callable[[], None] | None = None

    async def start(self, app: Starlette) -> None:
        store: Store = app.state.store
        hub = self.hub

        async def forget() -> None:
            store.forget_targets()

        async def watched(endpoint_id: int) -> None:
            hub.watched.add(endpoint_id)

        async def forget_all() -> None:
            with contextlib.suppress(ConnectionError):  # the main process is gone: we stop too
                await self.channel.call("forget_all")

        throttle: FailureThrottle = app.state.auth_throttle
        store.targets_changed = forget_all
        throttle.tell_others = partial(self.channel.note, "failed_guess")
        self.channel.calls = {"forget": forget, "watched": watched}
        self.channel.notes = {"unwatched": hub.watched.discard, "publish": hub.deliver,
                              "close_endpoint": hub.drop_endpoint,
                              "failed_guess": throttle.failed_elsewhere,
                              "watched_all": hub.watched.update}
        self.channel.on_lost = self._lost
        await asyncio.get_running_loop().create_unix_connection(lambda: self.channel,
                                                                sock=self._sock)
        # Before it serves: what is watched already (a worker started in place of one that
        # died), and from then on every change, watcher and wrong token.
        with contextlib.suppress(ConnectionError):  # the main process is gone: we stop too
            await self.channel.call("joining")

    def _lost(self) -> None:
        if self.on_lost is not None:
            self.on_lost()

    def stopping(self) -> None:
        self.channel.note("leaving")  # so the main process does not start another in its place

    async def stop(self) -> None:
        self.channel.close()

    async def admit(self, endpoint_id: int, rate: float | None) -> int:
        try:
            return int(await self.channel.call("admit", endpoint_id, rate))
        except ConnectionError:  # the main process is gone, and this worker is stopping
            return 0


class WorkerHub(LocalHub):
    """A worker's hub: its own watchers, fed by its own captures and by the main process; and
    the endpoints the main process said someone watches."""

    def __init__(self, link: Link) -> None:
        super().__init__()
        self._link = link
        self.watched: set[int] = set()

    async def ready(self, endpoint_id: int) -> None:
        if endpoint_id in self._subscribers:
            with contextlib.suppress(ConnectionError):  # the main process is gone: we stop too
                await self._link.channel.call("watch", endpoint_id)

    def unsubscribe(self, subscription: LocalSubscription) -> None:
        endpoint_id = subscription.endpoint_id
        had = endpoint_id in self._subscribers
        super().unsubscribe(subscription)
        if had and endpoint_id not in self._subscribers:
            self._link.channel.note("unwatch", endpoint_id)

    def wanted(self, endpoint_id: int) -> bool:
        return endpoint_id in self.watched or endpoint_id in self._subscribers

    def publish(self, endpoint_id: int, seq: int, data: str) -> None:
        super().publish(endpoint_id, seq, data)
        self._link.channel.note("publish", endpoint_id, seq, data)

    def deliver(self, endpoint_id: int, seq: int, data: str) -> None:
        super().publish(endpoint_id, seq, data)

    def close_endpoint(self, endpoint_id: int) -> None:
        super().close_endpoint(endpoint_id)
        self._link.channel.note("close_endpoint", endpoint_id)

    def drop_endpoint(self, endpoint_id: int) -> None:
        super().close_endpoint(endpoint_id)


def run_worker() -> None:
    """A worker process's main: argv holds the listening socket's and the channel's fds; the
    main process sends the settings first."""
    from hookscope.main import create_app
    from hookscope.server import build_server, tune_process

    listen_fd, channel_fd = (int(arg) for arg in sys.argv[1:3])
    channel_sock = socket.socket(fileno=channel_fd)
    settings: Settings = receive_blocking(channel_sock)
    listener = socket.socket(fileno=listen_fd)
    link = Link(channel_sock)
    app = create_app(settings, peers=link)
    server = build_server(settings, app)  # its uvicorn config sets the log level

    def main_gone() -> None:
        if not server.should_exit:
            log.error("the main Hookscope process is gone; worker %d stops", os.getpid())
            server.should_exit = True

    link.on_lost = main_gone
    tune_process()
    server.run(sockets=[listener])
