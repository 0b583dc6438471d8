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

With HOOKSCOPE_HTTP=h11, h11's own limit on an incomplete head is set to the same size (it answers
400), and the deadlines do not apply.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from hookscope.settings import Settings

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


def guarded_protocol(settings: Settings) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol held to `settings`' head size and deadlines."""

    class Guarded(_Guarded):
        max_head = settings.max_header_bytes
        head_timeout = float(settings.header_timeout)
        body_timeout = float(settings.body_timeout)

    return Guarded


class _Guarded(HttpToolsProtocol):
    max_head: int
    head_timeout: float
    body_timeout: float

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.head_timeout, "its head")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

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
            self._arm(self.head_timeout, "its head")

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._arm(self.body_timeout, "its body")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._too_slow, seconds, what)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self, seconds: float, what: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete or not self.cycle.response_started:
            self._refuse(408, f"the request did not send {what} within {seconds:g} s")
        else:
            self.transport.close()

    def _refuse(self, status: int, message: str) -> None:
        """Answer `status` with `message` and close, whatever the parser was in the middle of."""
        self._disarm()
        body = message.encode()
        self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
                             b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                             % (status, _REASONS[status], len(body), body))
        self.transport.close()
