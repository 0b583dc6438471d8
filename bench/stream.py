"""bench/stream: how long a capture takes to reach its live viewers, and what an idle viewer costs.

Starts `hookscope serve`, opens N Server-Sent Events viewers of one endpoint (raw asyncio
connections in this process), measures the server's memory per idle viewer, then sends captures
one by one, each carrying its send time (monotonic clock, same process) in a header, and records
for every viewer and capture how long the event took to arrive. Everything talks to 127.0.0.1.
The viewers run on the same 2 cores as the server, so the figures include their own reading.

    .venv/bin/python bench/stream.py [--viewers 100 1000] [--captures 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def viewer(host: str, port: int, token: str, ready: asyncio.Event, opened: list[int],
                 latencies: list[float], expected: int, done: asyncio.Event) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET /api/endpoints/{token}/stream HTTP/1.1\r\nHost: {host}\r\n"
                 "Accept: text/event-stream\r\n\r\n".encode())
    await writer.drain()
    await reader.readuntil(b"\r\n\r\n")  # response headers: the stream is open
    opened.append(1)
    if len(opened) == ready.total:  # type: ignore[attr-defined]
        ready.set()
    seen = 0
    try:
        while seen < expected:
            line = await reader.readline()
            if not line:
                return
            if line.startswith(b"data: "):
                arrived = time.monotonic()
                # A byte search, not a JSON decode: the viewers share the server's two cores.
                start = line.index(b'"x-sent-at", "') + 14
                latencies.append(arrived - float(line[start:line.index(b'"', start)]))
                seen += 1
    finally:
        done.set() if seen >= expected else None
        writer.close()


async def run(url: str, pid: int, viewers: int, captures: int) -> dict:
    host, port = url.removeprefix("http://").split(":")
    async with httpx.AsyncClient(base_url=url) as client:
        token = (await client.post("/api/endpoints", json={})).json()["token"]
        before = rss_kib(pid)
        ready = asyncio.Event()
        ready.total = viewers  # type: ignore[attr-defined]
        opened: list[int] = []
        latencies: list[float] = []
        finished = [asyncio.Event() for _ in range(viewers)]
        tasks = [asyncio.create_task(viewer(host, int(port), token, ready, opened, latencies,
                                            captures, finished[i])) for i in range(viewers)]
        await asyncio.wait_for(ready.wait(), 60)
        await asyncio.sleep(1.0)
        idle_kib = (rss_kib(pid) - before) / viewers
        for i in range(captures):
            await client.post(f"/h/{token}", content=f"capture {i}",
                              headers={"X-Sent-At": repr(time.monotonic())})
            await asyncio.sleep(0.05)
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 120)
    latencies.sort()
    count = len(latencies)
    return {"viewers": viewers, "events": count, "expected": viewers * captures,
            "p50_ms": latencies[count // 2] * 1000, "p99_ms": latencies[int(count * 0.99)] * 1000,
            "max_ms": latencies[-1] * 1000, "mean_ms": statistics.fmean(latencies) * 1000,
            "idle_kib_per_viewer": idle_kib}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--viewers", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--captures", type=int, default=30)
    args = parser.parse_args()
    rows = []
    for count in args.viewers:
        with tempfile.TemporaryDirectory(prefix="hookscope-stream-") as tmp:
            env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKSCOPE_")}
            log = open(Path(tmp) / "server.log", "wb")  # noqa: SIM115 -- closed below
            proc = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", "0",
                                     "--db", str(Path(tmp) / "stream.db")],
                                    cwd=ROOT, stdout=log, stderr=subprocess.PIPE, env=env)
            try:
                url = ""
                while not url:
                    line = proc.stderr.readline().decode()  # type: ignore[union-attr]
                    if not line:
                        sys.exit("server exited early")
                    if "listening on" in line:
                        url = line.split("listening on ", 1)[1].split()[0]
                rows.append(asyncio.run(run(url, proc.pid, count, args.captures)))
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
                log.close()
    print(f"# python bench/stream.py {' '.join(sys.argv[1:])}  ({os.cpu_count()} cores, "
          f"{args.captures} captures 50 ms apart, viewers in this process)")
    print(f"{'viewers':>8} {'events':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
          f"{'KiB/idle viewer':>16}")
    for r in rows:
        print(f"{r['viewers']:>8} {r['events']:>9} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
              f"{r['max_ms']:>8.2f} {r['idle_kib_per_viewer']:>16.1f}")
    print("targets: p99 <= 10 ms at 100 viewers, <= 50 ms at 1,000; <= 50 KB per idle viewer")
    return 0


if __name__ == "__main__":
    sys.exit(main())
