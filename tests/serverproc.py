"""Run `python -m hookscope serve` (or another command) as a real process on 127.0.0.1 with a
free port."""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import httpx

_LISTENING = re.compile(r"listening on (http://\S+)")


@cache
def local_tls() -> ssl.SSLContext:
    """One TLS context for the httpx clients the tests make many of (`verify=local_tls()`).
    Every URL they open is plain HTTP on 127.0.0.0/8, yet a client made without one loads the
    system's CA certificates for the TLS it never uses, which costs more than a request to a
    local server."""
    return ssl.create_default_context()


def wait_until(condition: Callable[[], bool], timeout: float = 10) -> bool:
    """Whether `condition` came true within `timeout` seconds (it is looked at every 20 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def send_raw(url: str, raw: bytes) -> bytes:
    """Send bytes exactly as given and return the whole reply. The request should say
    `Connection: close`, so the server ends the stream."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(raw)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def split_reply(reply: bytes) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-cased names, body) of a raw HTTP/1.1 reply."""
    head, _, body = reply.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(":", 1) for line in lines)
    return int(status_line.split()[1]), {k.lower(): v.strip() for k, v in headers.items()}, body


class ServerProcess:
    def __init__(self, db: Path | str, log: Path, *, env: dict[str, str] | None = None,
                 args: tuple[str, ...] = (), command: tuple[str, ...] = (),
                 cwd: Path | None = None) -> None:
        self.db = db
        self.log = log
        self.env = env or {}
        self.args = args
        self.command = command or (sys.executable, "-m", "hookscope")
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 20) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKSCOPE_")}
        env.update(self.env)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [*self.command, "serve", "--host", "127.0.0.1", "--port", "0",
                 "--db", str(self.db), *self.args],
                stdout=log, stderr=log, env=env, cwd=self.cwd)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = _LISTENING.search(self.log.read_text(errors="replace"))
            if match and self._healthy(match.group(1)):
                self.url = match.group(1)
                return self.url
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.output()}")
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"server did not start in {timeout}s:\n{self.output()}")

    def _healthy(self, url: str) -> bool:
        try:
            return httpx.get(url + "/healthz", timeout=1, verify=local_tls()).status_code == 200
        except httpx.HTTPError:
            return False

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs at all."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode
