"""Small hostile requests against a real server: each is answered, and the server keeps answering
everyone else (/healthz within 0.5 s throughout) in bounded memory."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.serverproc import ServerProcess

pytestmark = pytest.mark.slow

HEALTHZ_WITHIN_S = 0.5
PEAK_MEMORY_BYTES = 1 << 30


@contextmanager
def still_answering(server: ServerProcess) -> Iterator[None]:
    """Poll /healthz every 50 ms on a connection of its own while the block runs; fail if an
    answer took longer than HEALTHZ_WITHIN_S, or if the server's peak memory passed the bound."""
    slowest = 0.0
    stop = threading.Event()

    def poll() -> None:
        nonlocal slowest
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while not stop.is_set():
                started = time.monotonic()
                assert client.get("/healthz").status_code == 200
                slowest = max(slowest, time.monotonic() - started)
                stop.wait(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        yield
    finally:
        stop.set()
        poller.join(30)
    assert slowest < HEALTHZ_WITHIN_S, f"/healthz took {slowest:.2f} s during the attack"
    assert _peak_memory(server) < PEAK_MEMORY_BYTES


def _peak_memory(server: ServerProcess) -> int:
    assert server.proc is not None
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc")


def _endpoint(server: ServerProcess, **fields: object) -> dict:
    response = httpx.post(server.url + "/api/endpoints", json=fields)
    assert response.status_code == 201
    return response.json()


def _multipart(disposition: bytes) -> bytes:
    return (b"--XX\r\nContent-Disposition: form-data; " + disposition + b"\r\n\r\nvalue\r\n"
            b"--XX\r\nContent-Disposition: form-data; name=\"after\"\r\n\r\nv\r\n--XX--\r\n")


@pytest.mark.parametrize("disposition", [
    # 16,000 and 200,000 RFC 2047 encoded words in a part's name (224 KB, 2.8 MB): the email
    # package decoded them for seconds, and the second took the server to the OOM killer.
    b'name="' + b" ".join([b"=?utf-8?q?a?="] * 16_000) + b'"',
    b'name="' + b" ".join([b"=?utf-8?q?a?="] * 200_000) + b'"',
    # 16,000 RFC 2231 continuations of a file name.
    b'name="f"; ' + b"; ".join(b"filename*%d*=utf-8''abc" % i for i in range(16_000)),
], ids=["encoded-words", "encoded-words-2.8MB", "continuations"])
def test_crafted_multipart_headers_are_stored_and_explained_at_once(shared_server, disposition):
    server = shared_server
    endpoint = _endpoint(server)
    body = _multipart(disposition)
    with still_answering(server), httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.post(endpoint["url"], content=body,
                               headers={"content-type": "multipart/form-data; boundary=XX"})
        assert response.status_code == 200
        capture_id = response.json()["id"]
        # Viewing it, and opening the inspector, which shows the newest, parse it again.
        for _ in range(3):
            capture = client.get(f"/api/captures/{capture_id}").json()
            assert client.get(f"/e/{endpoint['token']}").status_code == 200
    assert capture["parsed"]["kind"] == "multipart"
    assert capture["parsed"]["error"] == ("malformed multipart (part 1: Maximum header size "
                                          "exceeded)")
    assert httpx.get(f"{server.url}/api/captures/{capture_id}/body").content == body
