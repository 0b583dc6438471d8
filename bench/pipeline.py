"""bench/pipeline: the capture path in process, without HTTP: CPU per capture, steadier than wrk.

64 concurrent clients call the ASGI app directly (no sockets, no uvicorn, no load generator on
the same two cores), through the real middleware, store, writer thread and SQLite file, with
`hookscope serve`'s interpreter settings. It reports the event loop's own CPU time per capture
(time.thread_time of the loop's thread) and that of all threads: on this VM, whose speed
drifts within minutes, those figures compare two versions of the code far more reliably than
requests/s under wrk. Rounds alternate the two endpoints; each figure is the median of its rounds.

    .venv/bin/python bench/pipeline.py [--captures 8000] [--rounds 5] [--clients 64]

"plain" is an endpoint with the defaults (format auto); "full" also verifies signatures with
scheme `auto` and a secret, and every request is GitHub-signed, as in bench/ingest.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import FULL_PIPELINE, github_signature, json_body

from hookscope.main import create_app
from hookscope.server import YOUNG_GC_THRESHOLD
from hookscope.settings import Settings


async def call(app: Any, method: str, path: str, body: bytes = b"",
               headers: list[tuple[bytes, bytes]] | None = None) -> list[dict[str, Any]]:
    """One request through the ASGI app; the messages it sent back."""
    messages = iter([{"type": "http.request", "body": body, "more_body": False}])

    async def receive() -> dict[str, Any]:
        return next(messages, {"type": "http.disconnect"})

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "http_version": "1.1", "method": method, "path": path,
             "raw_path": path.encode(), "query_string": b"", "root_path": "", "scheme": "http",
             "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 40000),
             "headers": [(b"host", b"127.0.0.1:8000"), *(headers or [])]}
    await app(scope, receive, send)
    return sent


async def endpoint(app: Any, fields: dict[str, Any]) -> str:
    sent = await call(app, "POST", "/api/endpoints", json.dumps(fields).encode(),
                      [(b"content-type", b"application/json")])
    return str(json.loads(sent[1]["body"])["token"])


async def run(args: argparse.Namespace) -> dict[str, list[tuple[float, float, float]]]:
    body = json_body()
    plain_headers = [(b"content-type", b"application/json"), (b"content-length", b"1024")]
    signed = [*plain_headers, (b"x-hub-signature-256", github_signature(body).encode())]
    with tempfile.TemporaryDirectory(prefix="hookscope-pipeline-") as tmp:
        app = create_app(Settings(db=str(Path(tmp) / "pipeline.db")))
        async with app.router.lifespan_context(app):
            cases = {
                "plain": (await endpoint(app, {"max_captures": 1_000_000}), plain_headers),
                "full": (await endpoint(app, {"max_captures": 1_000_000, **FULL_PIPELINE}),
                         signed),
            }
            per_client = args.captures // args.clients

            async def client(path: str, headers: list[tuple[bytes, bytes]], n: int) -> None:
                for _ in range(n):
                    sent = await call(app, "POST", path, body, headers)
                    if sent[0]["status"] != 200:
                        sys.exit(f"capture answered {sent[0]['status']}: {sent[1]['body']!r}")

            results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in cases}
            for token, headers in cases.values():  # warm-up, unmeasured
                await asyncio.gather(*(client(f"/h/{token}", headers, 20)
                                       for _ in range(args.clients)))
            gc.collect()
            gc.freeze()
            for _ in range(args.rounds):
                for name, (token, headers) in cases.items():
                    start = (time.perf_counter(), time.thread_time(), time.process_time())
                    await asyncio.gather(*(client(f"/h/{token}", headers, per_client)
                                           for _ in range(args.clients)))
                    wall, loop_cpu, all_cpu = (end - begin for end, begin in zip(
                        (time.perf_counter(), time.thread_time(), time.process_time()), start,
                        strict=True))
                    n = per_client * args.clients
                    results[name].append((n / wall, loop_cpu / n * 1e6, all_cpu / n * 1e6))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--captures", type=int, default=8000, help="per round and endpoint")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=64)
    args = parser.parse_args()
    # As `hookscope serve` runs (app/cli/__init__.py).
    gc.set_threshold(YOUNG_GC_THRESHOLD, 10, 10)
    sys.setswitchinterval(0.0005)
    results = uvloop.run(run(args))
    print(f"# python bench/pipeline.py {' '.join(sys.argv[1:])}  ({os.cpu_count()} cores, "
          f"{args.clients} clients, {args.captures} captures x {args.rounds} alternating rounds, "
          "1 KiB JSON, medians)")
    print(f"{'endpoint':<10} {'captures/s':>11} {'loop CPU us':>12} {'all threads us':>15}")
    for name, rows in results.items():
        rate, loop_cpu, all_cpu = (statistics.median(column) for column in zip(*rows,
                                                                               strict=True))
        print(f"{name:<10} {rate:>11.0f} {loop_cpu:>12.1f} {all_cpu:>15.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
