"""Running `hookscope` in tests: in this process (quick) or as a real subprocess, plus a local
HTTP receiver for `replay` to send to."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from unittest import mock

from hookscope.cli import main


@dataclass
class Result:
    code: int
    out: str
    err: str
    raw: bytes  # stdout as bytes (export writes bytes)


def hookscope(*args: str, stdin: bytes = b"") -> Result:
    """`hookscope ARGS` in this process, stdout and stderr captured; argparse exits included."""
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    given = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    with mock.patch.multiple(sys, stdout=out, stderr=err, stdin=given):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse: --help, --version, usage errors
            code = int(exc.code or 0)
        out.flush()
        err.flush()
    raw = out.buffer.getvalue()  # type: ignore[attr-defined]
    return Result(code, raw.decode("utf-8", "replace"),
                  err.buffer.getvalue().decode("utf-8", "replace"), raw)  # type: ignore[attr-defined]


def cli_env(server_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKSCOPE_")}
    env.pop("NO_COLOR", None)
    if server_url is not None:
        env["HOOKSCOPE_URL"] = server_url
    return env


def hookscope_process(*args: str, server_url: str | None, timeout: float = 60
                      ) -> subprocess.CompletedProcess[str]:
    """`python -m hookscope ARGS` as a real process, told the server by HOOKSCOPE_URL."""
    return subprocess.run([sys.executable, "-m", "hookscope", *args], capture_output=True,
                          text=True, timeout=timeout, env=cli_env(server_url))


def run_pytest(directory: Path, *args: str, env: dict[str, str] | None = None,
               ) -> subprocess.CompletedProcess[str]:
    """pytest in a subprocess, on the test files in `directory`, as a user's project runs it:
    the plugin comes from the installed entry point, HOOKSCOPE_* only as `env` gives them."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HOOKSCOPE_")}
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         *args],
        cwd=directory, env=clean, capture_output=True, text=True, timeout=120)


@dataclass
class Received:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes
    status: int  # what it was answered


class Receiver:
    """A local HTTP server that records every request (once its whole body is read) and answers
    `status` (which may be changed while it runs) with `body`, after `delay` seconds. `port`
    0 picks a free one; a given one lets a test bring up a target that was down."""

    def __init__(self, status: int = 201, body: bytes = b'{"received": true}', *,
                 port: int = 0, delay: float = 0.0) -> None:
        self.requests: list[Received] = []
        self.status = status
        self.body = body
        self.delay = delay
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                status = receiver.status
                receiver.requests.append(Received(self.command, self.path,
                                                  list(self.headers.items()),
                                                  self.rfile.read(length), status))
                time.sleep(receiver.delay)
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(receiver.body)))
                self.end_headers()
                self.wfile.write(receiver.body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def bodies(self, status: int | None = None) -> list[bytes]:
        """The bodies received, in order; with `status`, of those answered with it."""
        return [r.body for r in self.requests if status is None or r.status == status]


def unused_port_url() -> str:
    """A URL nobody listens on: the port of a socket bound and closed again."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
