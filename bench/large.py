"""bench/large: 1 MiB POSTs, stored durably, in MB/s.

Starts `hookscope serve` and drives it with wrk (one thread) sending the same 1 MiB body over a
few connections: once as application/octet-stream (the storage path alone: read, store,
commit) and once as JSON (the full pipeline: parse, detect a format, validate). Each 2xx is a
committed capture. Everything talks to 127.0.0.1.

`--body-file-bytes N` measures each body twice, one run after the other: stored in the database
(the default), then with HOOKSCOPE_BODY_FILE_BYTES=N (bodies of N bytes or more in files beside
it); `--synchronous full` runs both with a disk sync per commit.

    .venv/bin/python bench/large.py [--seconds 10] [--connections 4] [--body-file-bytes N]
        [--synchronous normal|full]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import (
    add_synchronous_argument,
    free_port,
    last_capture,
    serve_command,
    start,
    stop,
    wait_up,
)

MIB = 1024 * 1024


def bodies() -> dict[str, tuple[str, bytes]]:
    binary = bytes((i * 7919) & 0xFF for i in range(MIB))
    rows = [{"id": i, "event": "page_viewed", "properties": {"path": f"/p/{i}", "ms": i % 997}}
            for i in range(MIB // 120)]
    document = json.dumps({"type": "batch", "rows": rows}).encode()
    document = document[:-1] + b', "pad": "' + b"x" * (MIB - len(document) - 11) + b'"}'
    assert len(binary) == len(document) == MIB, len(document)
    json.loads(document)
    return {"octet-stream": ("application/octet-stream", binary),
            "json": ("application/json", document)}


def run_wrk(url: str, body_file: Path, content_type: str, seconds: int, connections: int,
            workdir: Path) -> dict:
    script = workdir / "large.lua"
    script.write_text(f'local f = io.open("{body_file}", "rb")\nwrk.body = f:read("*all")\n'
                      'f:close()\nwrk.method = "POST"\n'
                      f'wrk.headers["Content-Type"] = "{content_type}"\n')
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
                          "-s", str(script), url], capture_output=True, text=True,
                         check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    value, unit = re.search(r"\s99%\s+([\d.]+)(\w+)", out).groups()
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "mb_s": rps * MIB / 1e6, "mib_s": rps,
            "p99_ms": float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit],
            "non_2xx": int(errors.group(1)) if errors else 0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--body-file-bytes", type=int, default=0, metavar="N",
                        help="also measure with HOOKSCOPE_BODY_FILE_BYTES=N (bodies in files)")
    add_synchronous_argument(parser)
    args = parser.parse_args()
    if args.body_file_bytes < 0 or args.body_file_bytes > MIB:
        parser.error("--body-file-bytes must be 1..1048576 (0: only bodies in the database), "
                     "or the 1 MiB bodies would not go to files")
    storages = {"database": {}}
    if args.body_file_bytes:
        storages["files"] = {"HOOKSCOPE_BODY_FILE_BYTES": str(args.body_file_bytes)}
    if shutil.which("wrk") is None:
        print("bench/large needs wrk: apt-get install wrk", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory(prefix="hookscope-large-") as tmp:
        workdir = Path(tmp)
        for (name, (content_type, body)), (storage, settings) in itertools.product(
                bodies().items(), storages.items()):
            body_file = workdir / f"{name}.body"
            body_file.write_bytes(body)
            port = free_port()
            db = workdir / f"{name}-{storage}.db"
            proc = start(serve_command(port, db, args.synchronous),
                         workdir / f"{name}-{storage}.log", settings)
            try:
                base = f"http://127.0.0.1:{port}"
                wait_up(base + "/healthz", proc)
                endpoint = httpx.post(base + "/api/endpoints",
                                      json={"max_captures": 1_000_000}).json()
                run_wrk(endpoint["url"], body_file, content_type, 2, args.connections, workdir)
                result = run_wrk(endpoint["url"], body_file, content_type, args.seconds,
                                 args.connections, workdir)
                stored = httpx.get(f"{base}/api/endpoints/{endpoint['token']}").json()
                last = last_capture(base, endpoint["token"])
                result.update(name=name, storage=storage, stored=stored["capture_count"],
                              validation=f"{last['validation']['status']}",
                              parsed=last["parsed"]["kind"])
                rows.append(result)
            finally:
                stop(proc)
    print(f"# python bench/large.py {' '.join(sys.argv[1:])}  ({os.cpu_count()} cores, "
          f"{args.connections} connections, {args.seconds}s, 1 MiB bodies)")
    print(f"{'body':<14} {'stored in':<9} {'req/s':>7} {'MB/s':>7} {'p99 ms':>8} {'non-2xx':>8} "
          f"{'stored':>7} parsed/validation")
    for r in rows:
        print(f"{r['name']:<14} {r['storage']:<9} {r['rps']:>7.1f} {r['mb_s']:>7.1f} "
              f"{r['p99_ms']:>8.1f} "
              f"{r['non_2xx']:>8} {r['stored']:>7} {r['parsed']}/{r['validation']}")
    print("target: >= 200 MB/s durable")
    return 0


if __name__ == "__main__":
    sys.exit(main())
