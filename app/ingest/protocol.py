"""The HTTP/1.1 protocol Hookscope serves with: uvicorn's httptools protocol, with the limits that a
server anyone can reach needs and that uvicorn does not set (it reads a request head of any size,
for as long as the client takes, and a body too):

- a request head (request line and headers) that passes HOOKSCOPE_MAX_HEADER_BYTES without
  ending is answered 431 and the connection closed, as soon as that much has arrived (so it is
  never held in memory); a complete head over the limit is refused by the capture path, which
  knows its exact size (hookscope.routes.capture);
- a head not complete HOOKSCOPE_HEADER_TIMEOUT seconds after the connection was made, or after
  its first byte on a connection kept alive, is answered 408 and the connection closed;
- a body not complete HOOKSCOPE_BODY_TIMEOUT seconds after its head is answered 408 (unless an
  answer has started) and the connection closed: the app finds the client gone, and the capture
  path stores nothing.

The deadlines are kept to within SWEEP_S.

With HOOKSCOPE_HTTP=h11, h11's own limit on an incomplete head is set to the same size (it answers
400), and the deadlines do not apply.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from hookscope.settings import Settings

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}
# A scope key, set true when the request's head is known to be within the limit.
HEAD_WITHIN = "hookscope.head_within"


def guarded_protocol(settings: Settings) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol held to `settings`' head size and deadlines."""

    class Guarded(_Guarded):
        max_head = settings.max_header_bytes
        head_timeout = float(settings.header_timeout)
        body_timeout = float(settings.body_timeout)
        sweeper = None  # the server's, made with its first connection

    return Guarded


# The deadlines are looked at this often, by one timer for all connections: a timer of their
# own per request would cost every request its setting and cancelling.
SWEEP_S = 0.25
_HEAD, _BODY = "its head", "its body"


class _Guarded(HttpToolsProtocol):
    max_head: int
    head_timeout: float
    body_timeout: float
    sweeper: _Sweeper | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._waiting_for: str | None = _HEAD  # what the deadline is for, if any
        self._since = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._since = self.loop.time()
        cls = type(self)
        if cls.sweeper is None:
            cls.sweeper = _Sweeper(self.loop, self.connections)
        cls.sweeper.wake()

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > self.max_head and not self.transport.is_closing():
            self._refuse(431, f"the request head is larger than {self.max_head} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_head:  # the next request on a connection kept alive
            self._in_head = True
            self._head_bytes = 0
            self._waiting_for = _HEAD
            self._since = self.loop.time()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._waiting_for = _BODY
        self._since = self.loop.time()
        if self._head_bytes <= self.max_head:
            # All that came since the head began (the head and perhaps some body) is within the
            # limit: the capture path need not measure the head again.
            self.scope[HEAD_WITHIN] = True  # type: ignore[literal-required]
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._waiting_for = None
        super().on_message_complete()

    def overdue(self, now: float) -> None:
        """Answer 408 and close if what the connection waits for is late."""
        waiting_for = self._waiting_for
        if waiting_for is None or self.transport is None or self.transport.is_closing():
            return
        seconds = self.head_timeout if waiting_for is _HEAD else self.body_timeout
        if now - self._since < seconds:
            return
        self._waiting_for = None
        if self.cycle is None or self.cycle.response_complete or not self.cycle.response_started:
            self._refuse(408, f"the request did not send {waiting_for} within {seconds:g} s")
        else:
            self.transport.close()

    def _refuse(self, status: int, message: str) -> None:
        """Answer `status` with `message` and close, whatever the parser was in the middle of."""
        self._waiting_for = None
        body = message.encode()
        self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
                             b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                             % (status, _REASONS[status], len(body), body))
        self.transport.close()


class _Sweeper:
    """One timer per server that looks at every open connection's deadline each SWEEP_S, while
    there are connections (`connections` is uvicorn's set of the server's open ones)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, connections: set[Any]) -> None:
        self.loop = loop
        self.connections = connections
        self._timer: asyncio.TimerHandle | None = None

    def wake(self) -> None:
        if self._timer is None:
            self._timer = self.loop.call_later(SWEEP_S, self._sweep)

    def _sweep(self) -> None:
        self._timer = None
        now = self.loop.time()
        for connection in list(self.connections):
            if isinstance(connection, _Guarded):
                connection.overdue(now)
        if self.connections:
            self._timer = self.loop.call_later(SWEEP_S, self._sweep)
