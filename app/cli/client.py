"""The CLI's side of the JSON API: a small synchronous httpx client and the ways a call can fail.

Failures are exceptions the commands do not catch: `Unreachable` (no HTTP answer at all) and
`Refused` (the API's error shape, or anything else that is not a 2xx); hookscope.cli.base turns each
into a message on stderr and an exit code, in one place.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from hookscope import __version__

DEFAULT_SERVER = "http://127.0.0.1:8000"
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 30.0


class Unreachable(Exception):
    """Hookscope itself gave no HTTP answer: refused, unresolvable, timed out, cut off."""

    def __init__(self, url: str, exc: httpx.TransportError) -> None:
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, httpx.TimeoutException):
            reason = f"no answer in time ({type(exc).__name__})"
        super().__init__(f"cannot reach {url}: {reason}")


@dataclass
class Refused(Exception):
    """A non-2xx answer from Hookscope, with the error shape's parts when it has them."""

    status: int
    code: str
    message: str
    details: list[dict[str, Any]] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.message} (HTTP {self.status} {self.code})"


def server_url(flag: str | None, environ: Mapping[str, str] | None = None) -> str:
    """--server, else HOOKSCOPE_URL, else the default; a trailing slash is dropped."""
    environ = os.environ if environ is None else environ
    url = flag or environ.get("HOOKSCOPE_URL") or DEFAULT_SERVER
    return url.rstrip("/")


def segment(text: str) -> str:
    """A user-given key or id as one URL path segment."""
    return quote(text, safe="")


class Client:
    """Sends HOOKSCOPE_TOKEN, when set, as a Bearer token (a server started with one needs it;
    it is read from the environment only, so it never shows in a process list)."""

    def __init__(self, base_url: str, token: str | None = None) -> None:
        self.base_url = base_url
        token = os.environ.get("HOOKSCOPE_TOKEN") if token is None else token
        headers = {"user-agent": f"hookscope-cli/{__version__}"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self.http = httpx.Client(base_url=base_url, headers=headers,
                                 timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S))

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, *, read_timeout: float = READ_TIMEOUT_S,
                **kwargs: Any) -> httpx.Response:
        """The response when it is a 2xx; Refused or Unreachable otherwise."""
        timeout = httpx.Timeout(read_timeout, connect=CONNECT_TIMEOUT_S)
        try:
            response = self.http.request(method, path, timeout=timeout, **kwargs)
        except httpx.TransportError as exc:
            raise Unreachable(self.base_url, exc) from None
        if not response.is_success:
            raise refusal(response)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    def events(self, path: str, last_event_id: int | None) -> Iterator[tuple[str, str, str]]:
        """The Server-Sent Events of one connection, as (event, id, data); ends when the server
        ends the stream. A drop mid-stream raises Unreachable: the caller resumes."""
        headers = {"accept": "text/event-stream"}
        if last_event_id is not None:
            headers["last-event-id"] = str(last_event_id)
        # The server sends a comment at least every 15 s; three missed in a row is a dead line.
        timeout = httpx.Timeout(45.0, connect=CONNECT_TIMEOUT_S)
        try:
            with self.http.stream("GET", path, headers=headers, timeout=timeout) as response:
                if not response.is_success:
                    response.read()
                    raise refusal(response)
                yield from sse_events(response.iter_lines())
        except httpx.TransportError as exc:
            raise Unreachable(self.base_url, exc) from None


def refusal(response: httpx.Response) -> Refused:
    try:
        error = response.json()["error"]
        return Refused(response.status_code, str(error.get("code", "error")),
                       str(error.get("message", "")), list(error.get("details") or []))
    except (ValueError, KeyError, TypeError, AttributeError):
        text = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
        return Refused(response.status_code, "http_error",
                       f"{response.request.url} answered HTTP {response.status_code}"
                       + (f": {text}" if text else ""))


def sse_events(lines: Iterable[str]) -> Iterator[tuple[str, str, str]]:
    """Parse Server-Sent Events (the subset the spec defines: event, id, data, comments)."""
    event, event_id = "message", ""
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield event, event_id, "\n".join(data)
            event, data = "message", []
            continue
        if line.startswith(":"):
            continue  # a keep-alive comment
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            event_id = value
