"""A channel between Hookscope's own processes (hookscope.cluster): calls answered in turn and
one-way notes, both ways over one stream socket, as length-prefixed pickles. Only ever over a socket
pair made before the other process started, so nothing else can reach it and pickle's trust is
theirs.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import pickle
import socket
import struct
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

log = logging.getLogger("hookscope.cluster")

_FRAME = struct.Struct("!Q")  # each message: its length, then its pickle
_CALL, _REPLY, _NOTE = 0, 1, 2


class Channel(asyncio.Protocol):
    """Calls and notes both ways over one stream socket. `calls` are coroutine functions whose
    result (or exception) goes back to the caller; `notes` are plain functions, run in the order
    the notes came, before anything that came after them."""

    def __init__(self, calls: Mapping[str, Callable[..., Awaitable[Any]]] | None = None,
                 notes: Mapping[str, Callable[..., None]] | None = None,
                 on_lost: Callable[[], None] | None = None) -> None:
        self.calls = dict(calls or {})
        self.notes = dict(notes or {})
        self.on_lost = on_lost
        self.closed = False
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._answering: set[asyncio.Task[None]] = set()
        self._out: list[bytes] = []  # sent at the end of this turn of the event loop

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        if not buffer and len(data) > _FRAME.size and _FRAME.unpack_from(data)[0] == \
                len(data) - _FRAME.size:
            self._dispatch(pickle.loads(memoryview(data)[_FRAME.size:]))  # one whole message
            return
        buffer += data
        while len(buffer) >= _FRAME.size:
            end = _FRAME.size + _FRAME.unpack_from(buffer)[0]
            if len(buffer) < end:
                return
            message = pickle.loads(buffer[_FRAME.size:end])
            del buffer[:end]
            self._dispatch(message)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(ConnectionError("the other Hookscope process is gone"))
        if self.on_lost is not None:
            self.on_lost()

    # -- sending -------------------------------------------------------------------------------

    async def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if self.closed:
            raise ConnectionError("the other Hookscope process is gone")
        call_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._waiting[call_id] = future
        try:
            self._send((_CALL, call_id, name, args, kwargs))
            return await future
        finally:
            self._waiting.pop(call_id, None)

    def note(self, name: str, *args: Any) -> None:
        """Send a note; on a closed channel, nothing (its other end is gone)."""
        if not self.closed:
            self._send((_NOTE, name, args))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _send(self, message: tuple[Any, ...]) -> None:
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out += (_FRAME.pack(len(payload)), payload)

    def _flush(self) -> None:
        """One write for all a turn sent: the replies of one commit's captures, say."""
        out, self._out = self._out, []
        if self._transport is not None and not self.closed:
            self._transport.writelines(out)

    # -- receiving -----------------------------------------------------------------------------

    def _dispatch(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == _REPLY:
            _, call_id, ok, value = message
            future = self._waiting.pop(call_id, None)
            if future is not None and not future.done():
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
        elif kind == _CALL:
            task = asyncio.ensure_future(self._answer(*message[1:]))
            self._answering.add(task)
            task.add_done_callback(self._answering.discard)
        else:
            _, name, args = message
            try:
                self.notes[name](*args)
            except Exception:
                log.exception("note %r failed", name)

    async def _answer(self, call_id: int, name: str, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> None:
        try:
            reply = (_REPLY, call_id, True, await self.calls[name](*args, **kwargs))
        except Exception as exc:
            reply = (_REPLY, call_id, False, _portable(exc))
        if not self.closed:
            self._send(reply)


def _portable(exc: Exception) -> Exception:
    """`exc` if it survives a trip through pickle (the store's own errors do), else a stand-in
    naming it."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


def send_blocking(sock: socket.socket, value: Any) -> None:
    payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_FRAME.pack(len(payload)) + payload)


def receive_blocking(sock: socket.socket) -> Any:
    """One message, and not a byte more: what follows is the channel's."""
    header = sock.recv(_FRAME.size, socket.MSG_WAITALL)
    (size,) = _FRAME.unpack(header)
    return pickle.loads(sock.recv(size, socket.MSG_WAITALL))
