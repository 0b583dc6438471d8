"""bench/steady: latency at a steady request rate (open loop), the full capture pipeline on.

wrk measures how fast a server can go with a fixed number of connections; this measures how
long each request takes when they arrive at a steady rate the server can sustain, which is
what a webhook receiver sees. Requests are scheduled at fixed times (2,000 per second by
default) over a pool of keep-alive connections, and each latency counts from the request's
scheduled time, not from when it was sent, so a stall that delays the next requests is
counted in full (no coordinated omission).

The endpoint verifies signatures with scheme `auto` and a secret and detects the format
(`auto`); each request is a 1 KiB JSON body signed as GitHub signs. Everything talks to
127.0.0.1; the load generator (uvloop, bare protocols) shares the 2 cores with the server.

    .venv/bin/python bench/steady.py [--rate 2000] [--seconds 10] [--connections 32] [--bare]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

import httpx
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import (
    FULL_PIPELINE,
    bare_command,
    free_port,
    github_signature,
    json_body,
    last_capture,
    serve_command,
    start,
    stop,
    wait_up,
)


class Connection(asyncio.Protocol):
    """One keep-alive connection: one request at a time, its latency from its scheduled time."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.buffer = b""
        self.scheduled = 0.0
        self.ready = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.ready.set_result(None)

    def send(self, request: bytes, scheduled: float) -> None:
        self.scheduled = scheduled
        self.transport.write(request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end].lower()
        length = int(head.split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
        if len(self.buffer) < end + 4 + length:
            return
        status = int(self.buffer[9:12])
        self.buffer = self.buffer[end + 4 + length:]
        self.pool.done(self, time.monotonic() - self.scheduled, status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.lost += 1


class Pool:
    def __init__(self) -> None:
        self.idle: deque[Connection] = deque()
        self.waiting: deque[float] = deque()  # scheduled times with no idle connection yet
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.lost = 0
        self.request = b""

    def fire(self, scheduled: float) -> None:
        if self.idle:
            self.idle.popleft().send(self.request, scheduled)
        else:
            self.waiting.append(scheduled)

    def done(self, connection: Connection, latency: float, status: int) -> None:
        self.latencies.append(latency)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if self.waiting:
            connection.send(self.request, self.waiting.popleft())
        else:
            self.idle.append(connection)


async def drive(port: int, path: str, headers: dict[str, str], body: bytes, rate: float,
                seconds: float, connections: int) -> Pool:
    pool = Pool()
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}",
             "Content-Type: application/json", *(f"{k}: {v}" for k, v in headers.items())]
    pool.request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    loop = asyncio.get_running_loop()
    for _ in range(connections):
        _, protocol = await loop.create_connection(lambda: Connection(pool), "127.0.0.1", port)
        await protocol.ready
        pool.idle.append(protocol)
    start_at = time.monotonic() + 0.05
    total = int(rate * seconds)
    for k in range(total):
        scheduled = start_at + k / rate
        delay = scheduled - time.monotonic()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        pool.fire(scheduled)
    deadline = time.monotonic() + 30
    while len(pool.latencies) < total and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return pool


def percentile(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(len(values) * p))] * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--bare", action="store_true",
                        help="drive bench/bare_app.py instead (uvicorn, same settings as "
                             "bench/ingest): the floor this machine allows at that rate")
    args = parser.parse_args()
    body = json_body()
    headers = {"X-GitHub-Event": "push", "X-Hub-Signature-256": github_signature(body)}
    last = None
    with tempfile.TemporaryDirectory(prefix="hookscope-steady-") as tmp:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        command = bare_command(port) if args.bare else serve_command(port, Path(tmp) / "db")
        proc = start(command, Path(tmp) / "log")
        try:
            wait_up(base + "/healthz", proc)  # any answer will do (the bare app's is a 404)
            if args.bare:
                path = "/h/bench"
            else:
                endpoint = httpx.post(base + "/api/endpoints",
                                      json={"max_captures": 1_000_000, **FULL_PIPELINE}).json()
                path = f"/h/{endpoint['token']}"
            uvloop.run(drive(port, path, headers, body, args.rate, args.warmup,
                             args.connections))
            pool = uvloop.run(drive(port, path, headers, body, args.rate, args.seconds,
                                    args.connections))
            if not args.bare:
                last = last_capture(base, endpoint["token"])
        finally:
            stop(proc)
    lat = sorted(pool.latencies)
    sent = int(args.rate * args.seconds)
    server = ("bench/bare_app.py (reads the body, answers JSON)" if args.bare
              else "verify auto + format auto")
    print(f"# python bench/steady.py {' '.join(sys.argv[1:])}  ({os.cpu_count()} cores, "
          f"{args.rate:.0f} req/s for {args.seconds:.0f}s after {args.warmup:.0f}s warm-up, "
          f"{args.connections} connections, 1 KiB signed JSON, {server})")
    print(f"requests {len(lat)}/{sent}  statuses {pool.statuses}  connections lost {pool.lost}")
    print(f"p50 {percentile(lat, 0.5):.2f} ms  p90 {percentile(lat, 0.9):.2f} ms  "
          f"p99 {percentile(lat, 0.99):.2f} ms  p99.9 {percentile(lat, 0.999):.2f} ms  "
          f"max {lat[-1] * 1000:.2f} ms")
    if last is not None:
        print(f"last capture: signature {last['signature']['status']} "
              f"({last['signature']['scheme']}), validation {last['validation']['status']}")
    print("target: p99 <= 5 ms at a steady 2,000 req/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
