"""Captured requests as test fixtures for a receiver: the files `hookscope snapshot` writes,
read by `fixtures(DIR)` (at collection time, for `pytest.mark.parametrize`), and `deliver(fixture,
to=app_or_url, sign=(scheme, secret))`, which sends one byte for byte, re-signed for a test
secret. The pytest plugin offers both (hookscope.pytest_plugin), so this module imports nothing
heavy until it is used: pytest loads the plugin for every run.
"""

from __future__ import annotations

import inspect
import io
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

import httpx

# sign=: (scheme, secret), (scheme, secret, options), or a verify config as endpoints take it
# ({"scheme": ..., "secrets": [secret, ...], ...options}; the first secret signs).
Signing = Sequence[Any] | Mapping[str, Any]
APP_BASE_URL = "http://testserver"  # the Host an app sees, as with Starlette's TestClient


class Fixture:
    """One captured request: a file written by `hookscope snapshot` (or `hookscope export --as
    json`), or a capture as the API returns it. `name` (the file's stem) is also its `__name__`,
    which pytest takes for the test id."""

    def __init__(self, data: Mapping[str, Any], name: str = "",
                 file: Path | None = None) -> None:
        self.data = dict(data)
        self.name = name or str(data.get("id") or "capture")
        self.file = file
        self.method = str(data.get("method") or "POST")
        self.path = str(data.get("path") or "/")
        self.query = str(data.get("query") or "")
        self.headers: list[tuple[str, str]] = [(str(k), str(v))
                                               for k, v in data.get("headers") or []]
        self.content_type: str | None = data.get("content_type")
        self.truncated = bool(data.get("truncated"))
        self.body = _fixture_body(self.data, str(file or self.name))

    @property
    def __name__(self) -> str:  # pytest takes it for the test id
        return self.name

    @property
    def sub_path(self) -> str:
        """What followed /h/KEY in the captured path, `/` when nothing did."""
        from hookscope.ops.forward import sub_path

        return sub_path(self.path) or "/"

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        """The first captured value of a header (any case), or None."""
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def __repr__(self) -> str:
        return f"<hookscope fixture {self.name}: {self.method} {self.sub_path}>"


def _fixture_body(data: dict[str, Any], where: str) -> bytes:
    from hookscope.cli.base import Failed
    from hookscope.cli.fixture import fixture_body

    try:
        return fixture_body(data, where)
    except Failed as exc:  # the command line's error, here a test's
        raise ValueError(exc.message) from None


def load(file: str | os.PathLike[str]) -> Fixture:
    """One fixture file."""
    path = Path(file)
    try:
        data = json.loads(path.read_bytes())
    except ValueError as exc:
        raise ValueError(f"{path} is not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("hookscope_fixture") is None:
        raise ValueError(f"{path} is not a Hookscope fixture (`hookscope snapshot` and "
                         "`hookscope export ID --as json` write them)")
    return Fixture(data, path.stem, path)


def fixtures(directory: str | os.PathLike[str]) -> list[Fixture]:
    """Every fixture file (`*.json`) in `directory`, by file name: for
    `@pytest.mark.parametrize("fixture", fixtures(HERE / "webhooks"))`, where each test's id is
    the file's stem. A relative `directory` is taken from the current directory, as open()
    does. Raises when the folder is missing or holds a JSON file that is no fixture."""
    folder = Path(directory)
    if not folder.is_dir():
        raise FileNotFoundError(f"no fixture folder {folder.resolve()} (`hookscope snapshot KEY "
                                f"--out {directory}` writes one)")
    return [load(file) for file in sorted(folder.glob("*.json"))]


def deliver(fixture: Fixture | Mapping[str, Any] | str | os.PathLike[str], to: Any, *,
            sign: Signing | None = None, path: str | None = None,
            headers: Mapping[str, str | None] | None = None,
            timeout: float = 10.0) -> httpx.Response:
    """Send the captured request to a receiver and return its response (read in full).

    `to` is an ASGI app (Starlette, FastAPI...; called without its lifespan, as
    httpx.ASGITransport calls it), a WSGI app (Flask, Django, a plain function) or an http(s)
    URL. The request is the capture's method, headers in order with duplicates (less those of
    the sender's connection and Host) and exact body, sent to the capture's sub-path after
    /h/KEY (`/` when it had none) with its query; `path` replaces that path (and, with a `?`,
    the query). With a URL, the path is appended to the URL's own, as an endpoint's
    `forward` does.

    `sign=(scheme, secret)` signs the request afresh for `secret`, at the present time, as
    that scheme signs (hookscope.verify: the code that checks signatures); the new signature
    headers take the place of the captured ones. `(scheme, secret, options)` passes a scheme's
    options (`hmac`, `token`), or give a verify config as endpoints take one. `headers` then
    sets headers (a string) or removes them (None), as `hookscope replay --header` does.
    """
    from hookscope.cli.fixture import Payload
    from hookscope.ops.forward import join_url
    from hookscope.ops.replay import replay_headers
    from hookscope.verify import SignedRequest
    from hookscope.verify import sign as sign_request

    if not isinstance(fixture, Fixture):
        fixture = Fixture(fixture) if isinstance(fixture, Mapping) else load(fixture)
    if fixture.truncated:
        raise ValueError(f"{fixture.name}: the body was cut at the size limit when it was "
                         "captured, so this is not the request that was sent")
    tail, query = fixture.sub_path, fixture.query
    if path is not None:
        tail, mark, given_query = path.partition("?")
        query = given_query if mark else query
    capture = Payload(fixture.body, fixture.content_type, fixture.data).as_capture()
    overrides: dict[str, str | None] = {}
    if sign is not None:
        scheme, secret, options = _signing(sign)
        request = SignedRequest([[name.lower(), value] for name, value in fixture.headers],
                                query, fixture.body, fixture.content_type)
        signature = sign_request(scheme, secret, request, time.time(), options)
        _set(overrides, signature.headers)
        query = query if signature.query is None else signature.query
    _set(overrides, (headers or {}).items())
    raw_headers = [(name.encode("latin-1"), value.encode("latin-1"))
                   for name, value in replay_headers(capture, overrides)]

    def build(base: str) -> httpx.Request:
        return httpx.Request(fixture.method, join_url(base, tail, query), headers=raw_headers,
                             content=fixture.body)

    if isinstance(to, str | httpx.URL):
        with httpx.Client(trust_env=False, follow_redirects=False, timeout=timeout) as client:
            return client.send(build(str(to)))
    if not callable(to):
        raise TypeError(f"to= must be an ASGI or WSGI app or a URL, not "
                        f"{type(to).__name__}")
    if _is_asgi(to):
        return _run(_send_asgi(to, build(APP_BASE_URL), timeout))
    with httpx.Client(transport=WSGITransport(to), timeout=timeout) as client:
        return client.send(build(APP_BASE_URL))


def _signing(sign: Signing) -> tuple[str, str, dict[str, Any]]:
    """(scheme, secret, options) from what `sign=` takes."""
    if isinstance(sign, Mapping):
        options = dict(sign)
        scheme = options.pop("scheme", "auto")
        secrets = options.pop("secrets", None) or [options.pop("secret", None)]
        options.pop("tolerance_seconds", None)
        return str(scheme), secrets[0], options
    if isinstance(sign, Sequence) and not isinstance(sign, str) and len(sign) in (2, 3):
        return str(sign[0]), sign[1], dict(sign[2]) if len(sign) == 3 else {}
    raise TypeError("sign= takes (scheme, secret), (scheme, secret, options) or a verify "
                    'config such as {"scheme": "hmac", "secrets": ["..."], "header": "x-sig"}')


def _set(overrides: dict[str, str | None], items: Iterable[tuple[str, str | None]]) -> None:
    """Set each header, whatever case an earlier setting of it had."""
    for name, value in items:
        for known in [k for k in overrides if k.lower() == name.lower()]:
            del overrides[known]
        overrides[name] = value


def _is_asgi(app: Any) -> bool:
    """ASGI apps are coroutine functions (or objects whose __call__ is one); WSGI apps are
    plain callables."""
    return inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(
        getattr(app, "__call__", None))  # noqa: B004 (an object's __call__ is what is asked)


async def _send_asgi(app: Any, request: httpx.Request, timeout: float) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 timeout=timeout) as client:
        return await client.send(request)


def _run(coroutine: Any) -> httpx.Response:
    """Run a coroutine to its end from synchronous code: on a new event loop, in this thread,
    or in another one when this thread's loop is running (a test that is async itself)."""
    import asyncio  # here: pytest loads this module in every run, and few deliver to ASGI
    import concurrent.futures

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)  # type: ignore[no-any-return]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()  # type: ignore[no-any-return]


class WSGITransport(httpx.BaseTransport):
    """A WSGI app called as a WSGI server calls it (PEP 3333). httpx.WSGITransport would refuse
    header values that are not ASCII and keep only the last of a repeated header; here values
    are Latin-1 and a repeated header reaches the app once, its values joined by commas, as
    servers pass them on."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        environ: dict[str, Any] = {
            "wsgi.version": (1, 0), "wsgi.url_scheme": url.scheme,
            "wsgi.input": io.BytesIO(request.read()), "wsgi.errors": sys.stderr,
            "wsgi.multithread": False, "wsgi.multiprocess": False, "wsgi.run_once": False,
            "REQUEST_METHOD": request.method, "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(url.raw_path.split(b"?", 1)[0]).decode("latin-1"),
            "QUERY_STRING": url.query.decode("latin-1"), "SERVER_NAME": url.host,
            "SERVER_PORT": str(url.port or (443 if url.scheme == "https" else 80)),
            "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
        }
        for raw_name, raw_value in request.headers.raw:
            key = raw_name.decode("latin-1").upper().replace("-", "_")
            if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                key = "HTTP_" + key
            value = raw_value.decode("latin-1")
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        started: list[Any] = []
        chunks: list[bytes] = []

        def start_response(status: str, response_headers: list[tuple[str, str]],
                           exc_info: Any = None) -> Callable[[bytes], None]:
            if exc_info is not None and started:
                raise exc_info[1].with_traceback(exc_info[2])
            started[:] = [status, response_headers]
            return chunks.append

        result = self.app(environ, start_response)
        try:
            chunks.extend(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if not started:
            raise RuntimeError("the WSGI app returned without calling start_response")
        status, response_headers = started
        return httpx.Response(int(status.split(" ", 1)[0]), content=b"".join(chunks), headers=[
            (name.encode("latin-1"), value.encode("latin-1")) for name, value in response_headers])
