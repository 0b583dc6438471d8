"""Several processes serving one database: HOOKSCOPE_WORKERS (`hookscope serve --workers N`).

One process running Python serves HTTP on one core. This lets N processes serve one address, each on
a listening socket of its own (SO_REUSEPORT, on Linux; see `listen`). Each is a whole Hookscope with
its own SQLite connections and writer on the one database file: SQLite's write lock takes their
commits one at a time, and each writer reloads its endpoint counters (the next `seq`, counts and
bytes for pruning) inside any transaction that follows another process's commit
(storage.sqlite.writer, `PRAGMA data_version`). The first process (main) holds the lock file, opens
the database first (its migrations, its sweep of orphaned body files) and deletes expired endpoints;
it starts the others (workers) and talks to each over a Unix socket pair made before the worker
started, so nothing else can reach it: calls answered in turn and one-way notes, as length-prefixed
pickles between Hookscope's own processes.

What must hold across processes, and how:

- Endpoint changes: each process keeps the capture path's endpoints in memory. After any change
  the process that made it forgets its copies and has the main process call every other process
  to forget theirs, and only then answers, so a capture sent after a PATCH returned sees the new
  settings wherever it lands.
- Live streams and long-polls: a process whose first watcher of an endpoint subscribes calls the
  main process, which tells every worker that the endpoint is watched and waits for each to say
  it heard, before the stream looks in the store. A capture committed after that is published
  (by the process that took it, to the main process, which hands it to every watching process);
  one committed before is in the store when the stream looks. Duplicates are dropped by `seq`.
- Rate limits: a worker asks the main process's limiter, so a cap counts every process's
  requests (only for capped endpoints, or with HOOKSCOPE_RATE_LIMIT).
- Wrong tokens: a process that counts one against a client notes it to the main process, which
  counts it too and notes it to every other worker, so each process's throttle has seen every
  guess (a note, not a call: the refusal is not held up, and a guess may reach the others a
  moment later).
- Shutdown: the main process's shutdown stops the workers (SIGTERM: they answer what is in
  flight and close their connections) and waits for them before closing its own store. A worker
  whose main process is gone stops too.

Per process, not shared: the cap of open streams per endpoint. A worker that dies is started
again (see Cluster._restart). Each worker, before it serves, calls the main process ("joining"):
only from then on does it take part in broadcasts and relays, and it first hears which endpoints
are watched; its throttle counts the wrong tokens guessed from then on. A worker that stops on
its own says so ("leaving"), and is not started again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from starlette.applications import Starlette

from hookscope.cluster.channel import Channel, send_blocking
from hookscope.ingest.limits import FailureThrottle, RateLimiter
from hookscope.live.local import LocalHub, LocalSubscription
from hookscope.models import MAX_DELAY_MS
from hookscope.settings import Settings
from hookscope.storage.sqlite.store import SQLiteStore

log = logging.getLogger("hookscope.cluster")

# How long a change to an endpoint, or a new watcher, waits for every worker to hear of it.
BROADCAST_TIMEOUT_S = 10.0
# How long a stopping worker may take: uvicorn's own grace period (hookscope.server) and some.
STOP_TIMEOUT_S = MAX_DELAY_MS // 1000 + 15
# A worker that dies is started again: at once if it had served RESTART_DELAY_MAX_S, else after
# a pause from RESTART_DELAY_MIN_S, doubled each time one dies that young, up to the maximum.
RESTART_DELAY_MIN_S = 1.0
RESTART_DELAY_MAX_S = 30.0
# Whether each process has a listening socket of its own (see `listen`).
SPREAD = sys.platform.startswith("linux")


class ClusterHub(LocalHub):
    """The main process's hub: its own watchers, which workers have watchers of which endpoint,
    and which endpoints every worker has been told are watched."""

    def __init__(self) -> None:
        super().__init__()
        self.workers: list[Channel] = []
        self._remote: dict[int, set[Channel]] = {}
        self._told: dict[int, asyncio.Future[None]] = {}  # endpoint -> all workers told

    async def ready(self, endpoint_id: int) -> None:
        await self._tell(endpoint_id)

    async def watch(self, channel: Channel, endpoint_id: int) -> None:
        self._remote.setdefault(endpoint_id, set()).add(channel)
        await self._tell(endpoint_id)

    async def _tell(self, endpoint_id: int) -> None:
        """Every worker knows the endpoint is watched once this returns."""
        told = self._told.get(endpoint_id)
        if told is None:
            told = self._told[endpoint_id] = asyncio.ensure_future(
                broadcast(self.workers, "watched", endpoint_id))
        await asyncio.shield(told)

    def told(self) -> list[int]:
        """The endpoints every worker is told (or being told) are watched."""
        return list(self._told)

    def unwatch(self, channel: Channel, endpoint_id: int) -> None:
        channels = self._remote.get(endpoint_id)
        if channels is not None:
            channels.discard(channel)
            if not channels:
                del self._remote[endpoint_id]
        self._untell(endpoint_id)

    def unsubscribe(self, subscription: LocalSubscription) -> None:
        super().unsubscribe(subscription)
        self._untell(subscription.endpoint_id)

    def _untell(self, endpoint_id: int) -> None:
        if not self.wanted(endpoint_id) and self._told.pop(endpoint_id, None) is not None:
            for channel in self.workers:
                channel.note("unwatched", endpoint_id)

    def forget(self, channel: Channel) -> None:
        """A worker is gone: it watches nothing any more."""
        for endpoint_id in [e for e, channels in self._remote.items() if channel in channels]:
            self.unwatch(channel, endpoint_id)

    def wanted(self, endpoint_id: int) -> bool:
        return endpoint_id in self._subscribers or endpoint_id in self._remote

    def publish(self, endpoint_id: int, seq: int, data: str,
                origin: Channel | None = None) -> None:
        super().publish(endpoint_id, seq, data)
        for channel in self._remote.get(endpoint_id, ()):
            if channel is not origin:  # the worker that took it published to its own watchers
                channel.note("publish", endpoint_id, seq, data)

    def close_endpoint(self, endpoint_id: int) -> None:
        super().close_endpoint(endpoint_id)
        for channel in self.workers:
            channel.note("close_endpoint", endpoint_id)


async def broadcast(channels: list[Channel], name: str, *args: Any) -> None:
    """Call `name` in every live worker and wait for all (a dead one cannot be waiting)."""
    calls = [channel.call(name, *args) for channel in channels if not channel.closed]
    if not calls:
        return
    try:
        await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True),
                               BROADCAST_TIMEOUT_S)
    except TimeoutError:
        log.error("a worker did not answer %r within %s s", name, BROADCAST_TIMEOUT_S)


@dataclass
class _Worker:
    number: int
    process: subprocess.Popen[bytes]
    channel: Channel
    started: float  # time.monotonic()
    delay: float = 0.0  # the pause before it was started, if it replaced one that died young
    leaving: bool = False  # it said it is stopping


def listen(host: str, port: int, count: int, backlog: int) -> list[socket.socket]:
    """`count` listening sockets on one address, one for each process. On Linux each has
    SO_REUSEPORT, so the kernel spreads new connections over them by a hash of the connection's
    addresses. One socket shared by all goes to whichever process accepts first: keep-alive
    connections split unevenly, and the process with the most ran out of CPU while the other had
    some to spare (bench/ingest --workers 2; docs/performance.md). The price: connections the kernel
    queued for a worker that dies before accepting them are reset, and a worker that stalls keeps
    its share waiting. Only the first socket (the main process's) listens at once; a worker's
    listens when the worker starts serving (uvicorn's create_server), so none is queued for a worker
    still starting. Elsewhere SO_REUSEPORT does not spread connections, and every process shares the
    one socket."""
    if not SPREAD:
        return [_socket(host, port, backlog, reuse_port=False)] * count
    # A plain bind first, so that a port anything holds is refused, as it is to one process:
    # even one that another group shares (another Hookscope, on another database, say).
    with _socket(host, port, None, reuse_port=False) as probe:
        port = probe.getsockname()[1]  # port 0 chose one: the group takes it
    sockets: list[socket.socket] = []
    try:
        sockets.append(_socket(host, port, backlog, reuse_port=True))
        for _ in range(count - 1):
            sockets.append(join(host, port))
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def join(host: str, port: int) -> socket.socket:
    """A worker's socket in the group that `listen` made on (host, port): bound, and listening
    once the worker serves."""
    return _socket(host, port, None, reuse_port=True)


def _socket(host: str, port: int, backlog: int | None, *, reuse_port: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:  # only sockets of this user can join: the kernel checks the user id
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if backlog is not None:
            sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


class Cluster:
    """The main process's side: starts the workers once the database is open, answers them,
    starts a new one in place of one that died, and stops them before its store closes."""

    sweeps = True
    shared = False  # the first process: the lock file is its, and the sweep of body files
    admit = None  # its own limiter counts for all

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.hub = ClusterHub()
        self.workers: list[_Worker] = []
        self._listeners: list[socket.socket] = []  # the main process's first (see `listen`)
        self._backlog = 0
        self._calls: dict[str, Callable[..., Awaitable[Any]]] = {}
        self._failed_in_worker: Callable[[Channel, str], None] | None = None
        self._lock_fds: tuple[int, ...] = ()
        self._restarts: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()

    def bind(self, backlog: int) -> socket.socket:
        """Listen on the settings' address, a socket for each process (see `listen`); the main
        process's own. Before the app starts, so the address is known at once."""
        self._backlog = backlog
        self._listeners = listen(self.settings.host, self.settings.port, self.settings.workers,
                                 backlog)
        return self._listeners[0]

    async def start(self, app: Starlette) -> None:
        store: SQLiteStore = app.state.store
        hub = self.hub
        limiter: RateLimiter = app.state.limiter
        throttle: FailureThrottle = app.state.auth_throttle

        async def forget_everywhere() -> None:
            await broadcast(hub.workers, "forget")

        async def forget_all() -> None:  # a worker changed an endpoint
            store.forget_targets()
            await forget_everywhere()

        async def admit(endpoint_id: int, rate: float | None) -> int:
            return limiter.admit(endpoint_id, rate)

        def tell_workers(address: str, origin: Channel | None = None) -> None:
            for channel in hub.workers:
                if channel is not origin:  # the worker it came from counted it already
                    channel.note("failed_guess", address)

        def failed_in_worker(origin: Channel, address: str) -> None:
            throttle.failed_elsewhere(address)
            tell_workers(address, origin)

        store.targets_changed = forget_everywhere
        throttle.tell_others = tell_workers  # a wrong token counts in every process
        self._calls = {"forget_all": forget_all, "admit": admit}
        self._failed_in_worker = failed_in_worker
        self._lock_fds = store.lock_fds
        for number in range(1, self.settings.workers):
            await self._spawn(number, self._listeners[number])

    async def _spawn(self, number: int, listener: socket.socket, delay: float = 0.0) -> None:
        hub = self.hub
        ours, theirs = socket.socketpair()
        try:
            with theirs:
                send_blocking(ours, self.settings)
                fds = (listener.fileno(), theirs.fileno())
                # -P: the installed package, never a `hookscope` in the current directory. The lock
                # file's descriptor goes along, so the lock is held while any process writes.
                # A session of its own: Ctrl-C in a terminal reaches the main process alone,
                # which stops the workers itself.
                process = subprocess.Popen(
                    [sys.executable, "-P", "-c",
                     "from hookscope.cluster.worker import run_worker; run_worker()",
                     *map(str, fds)],
                    pass_fds=(*fds, *self._lock_fds), start_new_session=True)
        except BaseException:
            ours.close()
            raise
        finally:
            if listener is not self._listeners[0]:
                listener.close()  # the worker's alone: it leaves the group when the worker exits
        channel = Channel(self._calls)

        async def watch(endpoint_id: int) -> None:
            await hub.watch(channel, endpoint_id)

        async def joining() -> None:
            # The worker is about to serve: from now on it hears of every change and guess,
            # and first (a note, so in order with the notes that follow) what is watched.
            hub.workers.append(channel)
            channel.note("watched_all", hub.told())

        assert self._failed_in_worker is not None
        channel.calls.update(watch=watch, joining=joining)
        channel.notes = {"unwatch": lambda e: hub.unwatch(channel, e),
                         "publish": lambda e, seq, data: hub.publish(e, seq, data, channel),
                         "close_endpoint": hub.close_endpoint,
                         "failed_guess": partial(self._failed_in_worker, channel),
                         "leaving": lambda: setattr(worker, "leaving", True)}
        worker = _Worker(number, process, channel, time.monotonic(), delay)
        channel.on_lost = lambda: self._lost(worker)
        # Known before anything is awaited, so stop() waits for it whenever it comes.
        self.workers.append(worker)
        if self._stopping.is_set():
            process.send_signal(signal.SIGTERM)
        await asyncio.get_running_loop().create_unix_connection(lambda: channel, sock=ours)
        log.info("worker %d started (pid %d)", number, process.pid)

    def _lost(self, worker: _Worker) -> None:
        self.hub.forget(worker.channel)
        if worker.channel in self.hub.workers:
            self.hub.workers.remove(worker.channel)
        if self._stopping.is_set():
            return
        if worker.leaving:  # stopped on its own (SIGTERM to it alone): not started again
            log.warning("worker %d (pid %d) stopped on its own; it is not started again",
                        worker.number, worker.process.pid)
            return
        task = asyncio.ensure_future(self._restart(worker))
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    async def _restart(self, worker: _Worker) -> None:
        """Start a worker in place of `worker`, which died: at once if it had served
        RESTART_DELAY_MAX_S, else after a pause that doubles each time it dies that young;
        so too, each time, when starting one fails."""
        try:
            code = await asyncio.to_thread(worker.process.wait, STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:  # its channel closed, yet it runs: not for long
            worker.process.kill()
            code = await asyncio.to_thread(worker.process.wait)
        self.workers.remove(worker)
        young = time.monotonic() - worker.started < RESTART_DELAY_MAX_S
        delay = min(worker.delay * 2 or RESTART_DELAY_MIN_S, RESTART_DELAY_MAX_S) if young else 0
        log.error("worker %d (pid %d) died (exit code %s); a new one starts in %.0f s, the "
                  "other processes keep serving", worker.number, worker.process.pid, code, delay)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if self._stopping.is_set():
                return
            try:
                listener = (join(self.settings.host, self._listeners[0].getsockname()[1])
                            if SPREAD else self._listeners[0])
                await self._spawn(worker.number, listener, delay)
                return
            except Exception:
                delay = min(delay * 2 or RESTART_DELAY_MIN_S, RESTART_DELAY_MAX_S)
                log.exception("worker %d could not be started again; next try in %.0f s",
                              worker.number, delay)

    def stopping(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)

    async def stop(self) -> None:
        self.stopping()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        await asyncio.gather(*self._restarts, return_exceptions=True)
        for worker in self.workers:
            try:
                await asyncio.to_thread(worker.process.wait,
                                        max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker %d did not stop within %s s; killing it", worker.number,
                          STOP_TIMEOUT_S)
                worker.process.kill()
                await asyncio.to_thread(worker.process.wait)
            worker.channel.close()
