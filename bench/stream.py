"""bench/stream: how long a capture takes to reach its live viewers, and what an idle viewer costs.

Starts `hookscope serve`, opens N Server-Sent Events viewers of one endpoint (bare asyncio
protocols on uvloop in this process, so that reading 1,000 streams costs the bench little),
measures the server's memory per idle viewer (the growth from the 10th viewer to the Nth), sends
20 warm-up captures (1 s), then captures one by one, each stamped with its send time (monotonic
clock, same process) in a header, and records for every viewer and capture how long the event
took to arrive, and the server's CPU time per delivered event (steadier than latency on a
machine whose speed drifts). Everything talks to 127.0.0.1. The viewers run on the same 2 cores
as the server, so the figures include their own reading; the bench's own garbage collector is
held off while it measures.

Each count of viewers runs twice: "plain" is an endpoint with the defaults (every capture parsed,
format detection on); "full" also verifies signatures (scheme `auto` with a secret; every
capture is a JSON body signed as GitHub signs).

    .venv/bin/python bench/stream.py [--viewers 100 1000] [--captures 200] [--pipeline plain full]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import FULL_PIPELINE, free_port, github_signature, serve_command, start, stop, wait_up


def cpu_s(pid: int) -> float:
    """The process's CPU time so far (user + system), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Viewer(asyncio.Protocol):
    """One SSE viewer as a bare protocol: it only looks for each event's send time, so that the
    figures are the server's and not the cost of reading 1,000 streams in Python."""

    def __init__(self, token: str, expected: int, latencies: list[float]) -> None:
        self.token, self.expected, self.latencies = token, WARMUP + expected, latencies
        self.buffer = b""
        self.seen = 0
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.write(f"GET /api/endpoints/{self.token}/stream HTTP/1.1\r\n"  # type: ignore[attr-defined]
                        "Host: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode())

    def data_received(self, data: bytes) -> None:
        arrived = time.monotonic()
        self.buffer += data
        if not self.opened.done():
            if b"\r\n\r\n" not in self.buffer:
                return
            self.opened.set_result(None)  # response headers: the stream is open
        while (start := self.buffer.find(SENT_AT)) >= 0:
            start += len(SENT_AT)
            stop = self.buffer.find(b'"', start)
            if stop < 0:
                return
            if self.seen >= WARMUP:
                self.latencies.append(arrived - float(self.buffer[start:stop]))
            self.buffer = self.buffer[stop:]
            self.seen += 1
        if self.seen >= self.expected and not self.finished.done():
            self.finished.set_result(None)
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        for future in (self.opened, self.finished):
            if not future.done():
                future.set_result(None)


SENT_AT = b'"x-sent-at", "'
FIRST_VIEWERS = 10  # opened before the memory baseline: the first stream's one-off costs
WARMUP = 20  # captures sent and not measured (1 s), after the viewers are in


async def open_viewers(host: str, port: int, count: int, token: str, captures: int,
                       latencies: list[float]) -> list[Viewer]:
    loop = asyncio.get_running_loop()
    streams = []
    for _ in range(count):
        _, protocol = await loop.create_connection(
            lambda: Viewer(token, captures, latencies), host, port)
        streams.append(protocol)
    await asyncio.wait_for(asyncio.gather(*(s.opened for s in streams)), 60)
    return streams


async def send(host: str, port: int, token: str, count: int) -> None:
    """POST `count` captures 50 ms apart on one keep-alive connection, stamping each with its
    send time as the bytes go out (an HTTP client library adds milliseconds before that). Each
    is a JSON body signed as GitHub signs, which the "full" endpoint verifies."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for i in range(count):
            body = b'{"action": "opened", "number": %d}' % i
            signature = github_signature(body).encode()
            writer.write(b"POST /h/%s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n"
                         b"Content-Type: application/json\r\nX-Hub-Signature-256: %s\r\n"
                         b"X-Sent-At: %r\r\n\r\n%s"
                         % (token.encode(), host.encode(), len(body), signature,
                            time.monotonic(), body))
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"capture refused: {head!r}")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            await asyncio.sleep(0.05)
    finally:
        writer.close()


PIPELINES = {"plain": {},  # the defaults: every capture parsed, format detection on
             "full": FULL_PIPELINE}


async def run(url: str, pid: int, viewers: int, captures: int, pipeline: str) -> dict:
    host, port = url.removeprefix("http://").split(":")
    async with httpx.AsyncClient(base_url=url) as client:
        token = (await client.post("/api/endpoints", json=PIPELINES[pipeline])).json()["token"]
        latencies: list[float] = []
        streams = await open_viewers(host, int(port), FIRST_VIEWERS, token, captures, latencies)
        await asyncio.sleep(0.5)
        before = rss_kib(pid)
        streams += await open_viewers(host, int(port), viewers - FIRST_VIEWERS, token, captures,
                                      latencies)
        await asyncio.sleep(1.0)
        idle_kib = (rss_kib(pid) - before) / (viewers - FIRST_VIEWERS)
        await send(host, int(port), token, WARMUP)
        # The bench's own collections would show up as the server's latency: this process
        # keeps what it has, and allocates little while it measures.
        gc.collect()
        gc.freeze()
        gc.disable()
        cpu_before = cpu_s(pid)
        await send(host, int(port), token, captures)
        await asyncio.wait_for(asyncio.gather(*(s.finished for s in streams)), 120)
        cpu_us = (cpu_s(pid) - cpu_before) * 1e6
        gc.enable()
        gc.unfreeze()
        last = (await client.get(f"/api/endpoints/{token}/captures",
                                 params={"limit": 1})).json()["captures"][0]
        if pipeline == "full" and last["signature"]["status"] != "verified":
            raise RuntimeError(f"the full pipeline did not verify: {last['signature']}")
    latencies.sort()
    count = len(latencies)
    return {"pipeline": pipeline, "viewers": viewers, "events": count,
            "expected": viewers * captures,
            "p50_ms": latencies[count // 2] * 1000, "p99_ms": latencies[int(count * 0.99)] * 1000,
            "max_ms": latencies[-1] * 1000, "mean_ms": statistics.fmean(latencies) * 1000,
            "idle_kib_per_viewer": idle_kib, "cpu_us_per_event": cpu_us / (viewers * captures)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--viewers", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--captures", type=int, default=200)
    parser.add_argument("--pipeline", nargs="+", choices=list(PIPELINES), default=list(PIPELINES),
                        help="plain: default endpoint; full: also verify auto with a secret")
    args = parser.parse_args()
    rows = []
    for pipeline, count in itertools.product(args.pipeline, args.viewers):
        with tempfile.TemporaryDirectory(prefix="hookscope-stream-") as tmp:
            port = free_port()
            proc = start(serve_command(port, Path(tmp) / "stream.db"), Path(tmp) / "server.log")
            try:
                url = f"http://127.0.0.1:{port}"
                wait_up(url + "/healthz", proc)
                rows.append(uvloop.run(run(url, proc.pid, count, args.captures, pipeline)))
            finally:
                stop(proc)
    print(f"# python bench/stream.py {' '.join(sys.argv[1:])}  ({os.cpu_count()} cores, "
          f"{args.captures} captures 50 ms apart after {WARMUP} unmeasured; viewers are raw "
          "protocols on uvloop in this process)")
    print(f"{'pipeline':<9} {'viewers':>8} {'events':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
          f"{'KiB/idle viewer':>16} {'server CPU us/event':>20}")
    for r in rows:
        print(f"{r['pipeline']:<9} {r['viewers']:>8} {r['events']:>9} {r['p50_ms']:>8.2f} "
              f"{r['p99_ms']:>8.2f} {r['max_ms']:>8.2f} {r['idle_kib_per_viewer']:>16.1f} "
              f"{r['cpu_us_per_event']:>20.1f}")
    print("targets: p99 <= 10 ms at 100 viewers, <= 50 ms at 1,000; <= 50 KB per idle viewer")
    return 0


if __name__ == "__main__":
    sys.exit(main())
