"""The `hookscope` pytest fixture: capture URLs for testing a webhook sender.

Installed with Hookscope (entry point `pytest11`), so any test can ask for it:

    def test_sender_signs_its_webhooks(hookscope):
        endpoint = hookscope.endpoint(verify={"scheme": "github", "secrets": ["s3cret"]})
        my_sender.deliver(to=endpoint.url)
        capture = endpoint.wait(timeout=10)
        assert capture["signature"]["status"] == "verified"

The fixture starts one Hookscope server per test session, in this process, on a free
127.0.0.1 port with a temporary database; with `HOOKSCOPE_URL` set it uses that server instead
(sending `HOOKSCOPE_TOKEN` as a Bearer token when that is set too).

The other way round, a receiver's tests replay captured deliveries into the receiver:
`fixtures(DIR)` reads the files `hookscope snapshot` wrote (at collection time, for
`pytest.mark.parametrize`), and `deliver(fixture, to=app_or_url, sign=(scheme, secret))` sends
one byte for byte, re-signed for the test secret. Both live in hookscope.fixtures, and are
functions of this module and methods of the fixture too.

This module imports nothing heavy until the fixture is first used: pytest loads it for every
test run in an environment where Hookscope is installed.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from hookscope.fixtures import Fixture, Signing, deliver, fixtures, load

__all__ = ["Endpoint", "Fixture", "Hookscope", "WaitTimeout", "deliver", "fixtures", "load"]

MAX_WAIT_PER_REQUEST = 60  # the API's cap on wait=N; longer waits are several requests


class WaitTimeout(AssertionError):
    """Nothing matching arrived in time. An AssertionError, so pytest reports it as a failed
    expectation about the sender, with the message below, rather than as a crash."""


class Endpoint:
    """One capture URL. `wait()` continues after the capture the previous `wait()` returned."""

    def __init__(self, client: httpx.Client, data: dict[str, Any]) -> None:
        self._client = client
        self.data = data
        self.token: str = data["token"]
        self.url: str = data["url"]
        self.inspect_url: str = data["inspect_url"]
        self.after = 0

    def __repr__(self) -> str:
        return f"<hookscope endpoint {self.url}>"

    def captures(self, **filters: Any) -> list[dict[str, Any]]:
        """Summaries of what arrived so far, oldest first (filters as in the API: method,
        signature, validation, format, q)."""
        found: list[dict[str, Any]] = []
        after = 0
        while True:
            page = self._list(after=after, limit=1000, **filters)
            if not page["captures"]:
                return found
            found += page["captures"]
            after = page["next_after"]

    def wait(self, timeout: float = 10, **filters: Any) -> dict[str, Any]:
        """The next capture (in full) after the one the last `wait()` returned, waiting up to
        `timeout` seconds for it to arrive. Raises WaitTimeout when nothing matching came."""
        __tracebackhide__ = True  # a failure shows the test's line, not this one
        deadline = time.monotonic() + timeout
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            page = self._list(after=self.after, limit=1,
                              wait=round(min(remaining, MAX_WAIT_PER_REQUEST), 3), **filters)
            if page["captures"]:
                summary = page["captures"][0]
                self.after = summary["seq"]
                return self._get(f"/api/captures/{summary['id']}")
            if time.monotonic() >= deadline:
                raise WaitTimeout(self._timeout_message(timeout, filters))

    def body(self, capture: dict[str, Any]) -> bytes:
        """A capture's raw body bytes, exactly as they arrived."""
        response = self._client.get(f"/api/captures/{capture['id']}/body")
        response.raise_for_status()
        return response.content

    def delete(self) -> None:
        self._client.delete(f"/api/endpoints/{self.token}").raise_for_status()

    def _timeout_message(self, timeout: float, filters: dict[str, Any]) -> str:
        wanted = ", ".join(f"{k}={v}" for k, v in filters.items())
        newer = self._list(after=self.after, limit=1000)["captures"]
        message = (f"no capture{' matching ' + wanted if wanted else ''} arrived at {self.url} "
                   f"within {timeout:g} s")
        if newer:
            seen = "; ".join(f"#{c['seq']} {c['method']} {c['path']} signature "
                             f"{c['signature']['status']}, validation "
                             f"{c['validation']['status']}" for c in newer[:5])
            message += f" ({len(newer)} other{'s' if len(newer) > 1 else ''} did: {seen})"
        return message + f"; inspect them at {self.inspect_url}"

    def _list(self, **params: Any) -> dict[str, Any]:
        return self._get(f"/api/endpoints/{self.token}/captures", params=params,
                         timeout=float(params.get("wait") or 0) + 30)

    def _get(self, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self._client.get(path, **kwargs)
        _raise_for_error(response)
        return response.json()  # type: ignore[no-any-return]


class Hookscope:
    """A Hookscope server for the test session: `endpoint(**fields)` makes capture URLs."""

    def __init__(self, url: str, token: str = "") -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(base_url=self.url, timeout=30, trust_env=False,
                                   headers=headers)

    def endpoint(self, **fields: Any) -> Endpoint:
        """A new endpoint. Fields as in POST /api/endpoints: name, alias, verify, format,
        schema, response, reject, max_captures, expires_at."""
        response = self.client.post("/api/endpoints", json=fields)
        _raise_for_error(response)
        return Endpoint(self.client, response.json())

    def close(self) -> None:
        self.client.close()

    @staticmethod
    def fixtures(directory: str | os.PathLike[str]) -> list[Fixture]:
        """Every fixture file in `directory`: see the module-level `fixtures`."""
        return fixtures(directory)

    @staticmethod
    def deliver(fixture: Fixture | Mapping[str, Any] | str | os.PathLike[str], to: Any, *,
                sign: Signing | None = None, path: str | None = None,
                headers: Mapping[str, str | None] | None = None,
                timeout: float = 10.0) -> httpx.Response:
        """Send a fixture to a receiver: see the module-level `deliver`."""
        return deliver(fixture, to, sign=sign, path=path, headers=headers, timeout=timeout)


def _raise_for_error(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        error = response.json()["error"]
        detail = "; ".join(f"{d.get('field')}: {d.get('message')}"
                           for d in error.get("details") or [])
        message = f"{error['message']}" + (f" ({detail})" if detail else "")
    except (ValueError, KeyError, TypeError):
        message = response.text[:500]
    raise RuntimeError(f"Hookscope refused {response.request.method} {response.request.url}: "
                       f"{response.status_code} {message}")


STOP_TIMEOUT_S = 30


class _InProcessServer:
    """Hookscope on a thread of this process: real HTTP on 127.0.0.1, a throwaway database."""

    def __init__(self) -> None:
        from hookscope.server import build_server
        from hookscope.settings import Settings

        self._tmp = tempfile.mkdtemp(prefix="hookscope-pytest-")
        settings = Settings(host="127.0.0.1", port=0, db=str(Path(self._tmp) / "hs.db"),
                            log_level="warning")
        self.server = build_server(settings)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(self.server.config.backlog)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="hookscope-server", daemon=True)

    def start(self, timeout: float = 30) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop()  # and its database goes, unless it is still running
                raise RuntimeError("the in-process Hookscope server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(STOP_TIMEOUT_S)
        self.sock.close()
        if self.thread.is_alive():
            # Its database is still open: deleting it now could only add errors to a slow exit.
            warnings.warn(f"the in-process Hookscope server did not stop within "
                          f"{STOP_TIMEOUT_S} s; its database is left in {self._tmp}", stacklevel=2)
            return
        shutil.rmtree(self._tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def hookscope() -> Iterator[Hookscope]:
    """A Hookscope server for this test session (or the one at HOOKSCOPE_URL, with
    HOOKSCOPE_TOKEN if that server needs it)."""
    url = os.environ.get("HOOKSCOPE_URL")
    server = None
    if not url:
        server = _InProcessServer()
        server.start()
        url = server.url
    session = Hookscope(url, os.environ.get("HOOKSCOPE_TOKEN", "") if server is None else "")
    try:
        yield session
    finally:
        session.close()
        if server is not None:
            server.stop()


# -- replaying captured deliveries into a receiver ------------------------------------------------
