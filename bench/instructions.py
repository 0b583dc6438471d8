"""bench/instructions: machine instructions per capture, counted by valgrind (deterministic).

On this 2-core VM, wall time moves 2-3x within minutes, so a 5% change in the capture path is
lost in the noise of req/s and even of CPU time. Instructions executed are not: the same code
gives the same count to within 0.2% run after run. This runs the capture path in process, as
bench/pipeline does (64 clients calling the ASGI app: the real middleware, store, writer and
SQLite file), under valgrind's callgrind, and counts only the measured captures (instrumentation
is switched on once the app is up and warm, and off after the last capture). Instructions are
not time (cache misses and syscalls are not in them), so confirm a change with bench/ingest.

    .venv/bin/python bench/instructions.py [--captures 640]   # apt-get install valgrind

"plain" is an endpoint with the defaults (format auto); "full" also verifies a GitHub signature
with scheme `auto` and a secret, as in bench/ingest.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import FULL_PIPELINE, github_signature, json_body
from pipeline import call, endpoint

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = 64


async def _captures(mode: str, count: int) -> None:
    """The child: warm up, say READY, wait to be counted, capture, say DONE."""
    from hookscope.main import create_app
    from hookscope.server import YOUNG_GC_THRESHOLD
    from hookscope.settings import Settings

    gc.set_threshold(YOUNG_GC_THRESHOLD, *gc.get_threshold()[1:])
    body = json_body()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"1024")]
    if mode == "full":
        headers.append((b"x-hub-signature-256", github_signature(body).encode()))
    with tempfile.TemporaryDirectory(prefix="hookscope-instructions-") as tmp:
        app = create_app(Settings(db=str(Path(tmp) / "instructions.db")))
        async with app.router.lifespan_context(app):
            fields = {"max_captures": 1_000_000, **(FULL_PIPELINE if mode == "full" else {})}
            token = await endpoint(app, fields)

            async def client(n: int) -> None:
                for _ in range(n):
                    sent = await call(app, "POST", f"/h/{token}", body, headers)
                    if sent[0]["status"] != 200:
                        sys.exit(f"capture answered {sent[0]['status']}")

            await asyncio.gather(*(client(10) for _ in range(CLIENTS)))
            gc.collect()
            gc.freeze()
            print("READY", flush=True)
            sys.stdin.readline()  # the parent switched counting on
            await asyncio.gather(*(client(count // CLIENTS) for _ in range(CLIENTS)))
            print("DONE", flush=True)
            sys.stdin.readline()  # the parent switched counting off


def _count(mode: str, count: int, workdir: Path) -> int:
    """Instructions per capture of `mode`, measured in a child under callgrind."""
    out = workdir / f"{mode}.callgrind"
    child = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
         sys.executable, __file__, "--child", mode, "--captures", str(count)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": "0"})
    assert child.stdin is not None and child.stdout is not None
    for word, switch in (("READY", "on"), ("DONE", "off")):
        line = child.stdout.readline().strip()
        if line != word:
            child.kill()
            sys.exit(f"the {mode} child said {line!r}, not {word}")
        subprocess.run(["callgrind_control", "-i", switch, str(child.pid)], check=True,
                       capture_output=True)
        child.stdin.write("\n")
        child.stdin.flush()
    if child.wait(300) != 0:
        sys.exit(f"the {mode} child exited with {child.returncode}")
    totals = re.search(r"^totals:\s+(\d+)", out.read_text(), re.M)
    if totals is None:
        sys.exit(f"callgrind wrote no totals to {out}")
    return int(totals.group(1)) // (count // CLIENTS * CLIENTS)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--captures", type=int, default=640, help="measured, per endpoint")
    parser.add_argument("--child", choices=("plain", "full"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import uvloop  # as `hookscope serve` runs

        uvloop.run(_captures(args.child, args.captures))
        return 0
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("bench/instructions needs valgrind: apt-get install valgrind", file=sys.stderr)
        return 2
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hookscope-instructions-") as tmp:
        counts = {mode: _count(mode, args.captures, Path(tmp)) for mode in ("plain", "full")}
    command = "python bench/instructions.py " + " ".join(sys.argv[1:])
    print(f"# {command.strip()}  ({args.captures} captures per endpoint, {CLIENTS} clients, "
          f"in process under callgrind, {time.monotonic() - started:.0f} s)")
    print(f"{'endpoint':<10} {'instructions per capture':>25}")
    for mode, count in counts.items():
        print(f"{mode:<10} {count:>25,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
