"""Fidelity through a real `hookscope serve` process: bytes on a socket, not a test transport."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.serverproc import ServerProcess, local_tls, send_raw, wait_until


def _new_endpoint(url: str, **fields: object) -> str:
    response = httpx.post(url + "/api/endpoints", json=fields, verify=local_tls())
    assert response.status_code == 201
    return response.json()["token"]


def _captures(url: str, token: str) -> list[dict]:
    with httpx.Client(base_url=url, verify=local_tls()) as client:
        listing = client.get(f"/api/endpoints/{token}/captures?after=0").json()["captures"]
        return [client.get(f"/api/captures/{c['id']}").json() for c in listing]


def test_raw_socket_request_is_stored_byte_for_byte(shared_server):
    server = shared_server
    token = _new_endpoint(server.url)
    body = bytes(range(256))
    raw = (f"PROPFIND /h/{token}/a%20b/%2F?x=1&x=2&y HTTP/1.1\r\n"
           "Host: example.test\r\nX-Dup: first\r\nX-Other: o\r\nX-Dup: second\r\n"
           "X-Forwarded-For: 203.0.113.9\r\nContent-Type: application/octet-stream\r\n"
           f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
    reply = send_raw(server.url, raw)
    assert reply.startswith(b"HTTP/1.1 200")
    [capture] = _captures(server.url, token)
    assert capture["method"] == "PROPFIND"
    assert capture["path"] == f"/h/{token}/a%20b/%2F"
    assert capture["query"] == "x=1&x=2&y"
    assert [h for h in capture["headers"] if h[0].startswith("x-")] == [
        ["x-dup", "first"], ["x-other", "o"], ["x-dup", "second"],
        ["x-forwarded-for", "203.0.113.9"]]
    # X-Forwarded-For is recorded as a header but never trusted as the client address.
    assert capture["remote_addr"] == "127.0.0.1"
    assert httpx.get(f"{server.url}/api/captures/{capture['id']}/body").content == body
    assert capture["id"].encode() in reply


def test_methods_llhttp_knows_are_captured_with_httptools(shared_server):
    server = shared_server
    token = _new_endpoint(server.url)
    for method in ("PURGE", "QUERY", "MKCOL", "LINK"):
        assert httpx.request(method, f"{server.url}/h/{token}").status_code == 200
    assert [c["method"] for c in _captures(server.url, token)] == [
        "PURGE", "QUERY", "MKCOL", "LINK"]


@pytest.mark.sqlite_only("uvicorn's HTTP parsers: the store plays no part")
def test_h11_parser_captures_any_method_token(server_database, tmp_path: Path):
    proc = ServerProcess(server_database, tmp_path / "h11.log", args=("--http", "h11"))
    proc.start()
    try:
        token = _new_endpoint(proc.url)
        response = httpx.request("FROBNICATE", f"{proc.url}/h/{token}/x", content=b"odd")
        assert response.status_code == 200
        [capture] = _captures(proc.url, token)
        assert (capture["method"], capture["body_text"]) == ("FROBNICATE", "odd")
    finally:
        proc.stop()


@pytest.mark.sqlite_only("uvicorn's proxy headers: the store only keeps the address")
def test_forwarded_for_is_trusted_only_from_named_proxies(server_database, tmp_path: Path):
    proc = ServerProcess(server_database, tmp_path / "p.log",
                         env={"HOOKSCOPE_FORWARDED_ALLOW_IPS": "127.0.0.1"})
    proc.start()
    try:
        token = _new_endpoint(proc.url)
        httpx.post(f"{proc.url}/h/{token}", headers={"X-Forwarded-For": "203.0.113.9"})
        [capture] = _captures(proc.url, token)
        assert capture["remote_addr"] == "203.0.113.9"
    finally:
        proc.stop()


@pytest.mark.sqlite_only("the lock file: any number of processes share a PostgreSQL database")
def test_second_server_on_the_same_database_refuses_to_start(server, tmp_path: Path):
    second = ServerProcess(server.db, tmp_path / "second.log")
    with pytest.raises(RuntimeError, match="already in use by another Hookscope process"):
        second.start(timeout=15)
    assert second.proc is not None and second.proc.returncode == 1


def test_sigterm_shuts_down_cleanly_and_data_survives(server, tmp_path: Path):
    token = _new_endpoint(server.url)
    with httpx.Client(base_url=server.url, verify=local_tls()) as client:
        ids = [client.post(f"/h/{token}", content=str(i)).headers["x-hookscope-capture"]
               for i in range(5)]
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status tells why.
    assert server.stop() in (0, -15)
    assert "Application shutdown complete" in server.output()
    again = ServerProcess(server.db, tmp_path / "again.log")
    again.start()
    try:
        with httpx.Client(base_url=again.url, verify=local_tls()) as client:
            bodies = [client.get(f"/api/captures/{i}/body").text for i in ids]
        assert bodies == ["0", "1", "2", "3", "4"]
    finally:
        again.stop()


def test_sigterm_answers_in_flight_captures_ends_streams_and_closes_the_database(
        server, backend, tmp_path: Path):
    token = _new_endpoint(server.url)
    slow = _new_endpoint(server.url, response={"status": 202, "delay_ms": 1500})
    parts = urlsplit(server.url)
    # One request half-sent (its body still arriving), three waiting on their reply delay,
    # and a live stream open, when SIGTERM comes.
    half = socket.create_connection((parts.hostname, parts.port), timeout=10)
    half.sendall(f"POST /h/{token} HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
                 "Connection: close\r\n\r\nhello".encode())
    replies: list[int] = []
    delayed = [threading.Thread(target=lambda i=i: replies.append(httpx.post(
        f"{server.url}/h/{slow}", content=f"slow {i}", timeout=20,
        verify=local_tls()).status_code)) for i in range(3)]
    for thread in delayed:
        thread.start()
    stream_opened, stream_ended = threading.Event(), threading.Event()

    def watch() -> None:
        with httpx.stream("GET", f"{server.url}/api/endpoints/{token}/stream", timeout=20,
                          verify=local_tls()) as r:
            stream_opened.set()
            for _ in r.iter_bytes():
                pass
        stream_ended.set()

    threading.Thread(target=watch, daemon=True).start()
    assert stream_opened.wait(10)
    # Stored, so waiting on their reply delay (which SIGTERM must not cut short).
    assert wait_until(lambda: len(_captures(server.url, slow)) == 3)
    assert server.proc is not None
    server.proc.send_signal(15)
    assert wait_until(lambda: "Shutting down" in server.output()), server.output()
    half.sendall(b"world")  # the rest of the body, after shutdown began
    answer = b""
    while chunk := half.recv(65536):
        answer += chunk
    half.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    for thread in delayed:
        thread.join(20)
    assert replies == [202, 202, 202]
    assert stream_ended.wait(10), "the live stream held on through shutdown"
    assert server.proc.wait(20) in (0, -15)
    assert "Application shutdown complete" in server.output()
    if backend == "sqlite":
        wal = Path(str(server.db) + "-wal")
        assert not wal.exists() or wal.stat().st_size == 0, "the database was not closed cleanly"

    again = ServerProcess(server.db, tmp_path / "again.log")
    again.start()
    try:
        assert [c["body_text"] for c in _captures(again.url, token)] == ["helloworld"]
        assert sorted(c["body_text"] for c in _captures(again.url, slow)) == [
            "slow 0", "slow 1", "slow 2"]
    finally:
        again.stop()
