"""bench/ingest: 1 KiB JSON POSTs at 64 connections, Hookscope against a bare Starlette app.

Both run on the same uvicorn settings (uvloop, httptools, no access log, one process) in the same
run, so the ratio says what Hookscope's capture path costs over merely reading a request. Another
run sends GitHub-signed requests to an endpoint that verifies them (HMAC-SHA256 with a secret),
with the full pipeline on (signature scheme `auto` with a secret, format `auto`), to show what
verification and detection add. wrk (Debian package `wrk`) generates the load from one
thread. Everything talks to 127.0.0.1 only.

Each round measures the full pipeline, the bare app and plain Hookscope one after another, and
each ratio is taken within its round; the summary gives the median over the rounds (every round
is printed too).

`--peer URL` adds another capture server to the end of every round: one already running on a
loopback address (a peer such as Request Baskets; docs/performance.md says how it was built and
started). It keeps its own state across rounds. The same wrk load goes to URL, and the summary
sets Hookscope against it. `--synchronous full` runs Hookscope with a disk sync per commit, for
comparing with a peer that syncs each request.

    .venv/bin/python bench/ingest.py [--seconds 10] [--connections 64] [--rounds 3]
        [--synchronous normal|full] [--postgres URL [--processes N]] [--peer URL]

`--postgres URL` adds Hookscope on PostgreSQL (plain and full pipeline, each in a fresh database
on that server) to every round, beside SQLite; `--processes N` adds N `hookscope serve
--reuse-port` processes on one port and one database, as docs/running.md runs several.
"""

from __future__ import annotations

import argparse
import hmac
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent


SECRET = "bench-secret"
# Every check on: signatures verified (scheme auto, a secret), the format detected.
FULL_PIPELINE = {"verify": {"scheme": "auto", "secrets": [SECRET]}, "format": "auto"}


def github_signature(body: bytes) -> str:
    """X-Hub-Signature-256 for `body` under SECRET, as GitHub signs."""
    return "sha256=" + hmac.new(SECRET.encode(), body, "sha256").hexdigest()


def _administer(server: str, statement: str) -> None:
    """Run one statement on the PostgreSQL server `server` names (imported only for --postgres)."""
    import asyncio

    import asyncpg

    async def run() -> None:
        admin = await asyncpg.connect(server)
        try:
            await admin.execute(statement)
        finally:
            await admin.close()

    asyncio.run(run())


def fresh_database(server: str) -> str:
    """A new database on the PostgreSQL server `server` names; its URL."""
    name = f"hookscope_bench_{os.getpid()}_{time.monotonic_ns()}"
    _administer(server, f'CREATE DATABASE "{name}"')
    parts = urlsplit(server)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


def drop_database(server: str, url: str) -> None:
    _administer(server, f'DROP DATABASE IF EXISTS "{urlsplit(url).path[1:]}" WITH (FORCE)')


def serve_command(port: int, db: Path | str, synchronous: str = "normal") -> list[str]:
    return [sys.executable, "-m", "hookscope", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--db", str(db), "--synchronous", synchronous]


def add_synchronous_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--synchronous", choices=("normal", "full"), default="normal",
                        help="Hookscope's HOOKSCOPE_SYNCHRONOUS (full: a disk sync per commit)")


def bare_command(port: int) -> list[str]:
    """bench/bare_app.py on the uvicorn settings `hookscope serve` uses."""
    return [sys.executable, "-m", "uvicorn", "bench.bare_app:app", "--host", "127.0.0.1",
            "--port", str(port), "--loop", "uvloop", "--http", "httptools", "--no-access-log",
            "--no-proxy-headers", "--no-server-header", "--log-level", "warning"]


def last_capture(base: str, token: str) -> dict:
    return httpx.get(f"{base}/api/endpoints/{token}/captures",
                     params={"limit": 1}).json()["captures"][0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited early with {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    sys.exit(f"server at {url} did not come up")


def json_body(size: int = 1024) -> bytes:
    """A realistic webhook-like JSON document of exactly `size` bytes."""
    doc = {"type": "order.created", "id": "evt_0123456789", "created": 1763800000,
           "data": {"object": {"id": "ord_42", "amount": 4200, "currency": "eur",
                               "customer": {"email": "someone@example.com", "name": "Some One"},
                               "items": [{"sku": f"sku-{i}", "qty": i} for i in range(8)]}},
           "padding": ""}
    base = len(json.dumps(doc, separators=(",", ":")))
    doc["padding"] = "x" * (size - base)
    body = json.dumps(doc, separators=(",", ":")).encode()
    assert len(body) == size
    return body


def run_wrk(url: str, body: bytes, seconds: int, connections: int, workdir: Path,
            headers: dict[str, str] | None = None) -> dict:
    script = workdir / "post.lua"
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(body.decode())}",
             'wrk.headers["Content-Type"] = "application/json"']
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in (headers or {}).items()]
    script.write_text("\n".join(lines) + "\n")
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
              "requests": int(re.search(r"(\d+) requests in", out).group(1))}
    for pct in ("50", "90", "99"):
        value, unit = re.search(rf"\s{pct}%\s+([\d.]+)(\w+)", out).groups()
        result[f"p{pct}_ms"] = float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non_2xx"] = int(errors.group(1)) if errors else 0
    socket_errors = re.search(r"Socket errors: (.*)", out)
    result["socket_errors"] = socket_errors.group(1) if socket_errors else "none"
    return result


def start(cmd: list[str], log: Path, settings: dict[str, str] | None = None
          ) -> subprocess.Popen[bytes]:
    """Run `cmd` with no HOOKSCOPE_ settings but `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKSCOPE_")}
    env.update(settings or {})
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=out, env=env)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


def _started(log: Path, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while b"Application startup complete" not in log.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"server did not start: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.05)


def _measure(name: str, cmds: list[list[str]], base: str, fields: dict | None, body: bytes,
             signed: dict[str, str], args: argparse.Namespace, workdir: Path) -> dict:
    procs = []
    try:
        for number, cmd in enumerate(cmds):
            log = workdir / f"{name.replace(' ', '_')}-{number}.log"
            procs.append(start(cmd, log))
            if len(cmds) > 1:  # each serves its share of the port from when it is up
                _started(log, procs[-1])
        wait_up(base + "/healthz", procs[0])
        url = base + "/h/bench"
        token = None
        headers = signed if fields and "verify" in fields else None
        if fields is not None:
            created = httpx.post(base + "/api/endpoints",
                                 json={"max_captures": 1_000_000, **fields}).json()
            token = created["token"]
            url = created["url"]
        run_wrk(url, body, args.warmup, args.connections, workdir, headers)
        result = run_wrk(url, body, args.seconds, args.connections, workdir, headers)
        if token:
            result["stored"] = httpx.get(f"{base}/api/endpoints/{token}").json()["capture_count"]
            if headers:
                result["verdict"] = last_capture(base, token)["signature"]["status"]
        return result
    finally:
        for proc in procs:
            stop(proc)


def _is_loopback(url: str) -> bool:
    try:
        return ipaddress.ip_address(urlsplit(url).hostname or "").is_loopback
    except ValueError:  # a name, not an address: it could resolve anywhere
        return False


def _check_peer(url: str, body: bytes) -> str | None:
    """Why the peer cannot be measured, or None: one capture must be answered 2xx first, so a
    wrong URL or a stopped server is not measured as a fast one."""
    try:
        answer = httpx.post(url, content=body, headers={"Content-Type": "application/json"})
    except httpx.HTTPError as error:
        return f"--peer {url}: {error!r}; is it running?"
    if not answer.is_success:
        return f"--peer {url} answered {answer.status_code} to a capture, not 2xx"
    return None


def _measure_peer(url: str, body: bytes, args: argparse.Namespace, workdir: Path) -> dict:
    """The same load against a capture server that somebody else started and keeps."""
    run_wrk(url, body, args.warmup, args.connections, workdir)
    return run_wrk(url, body, args.seconds, args.connections, workdir)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3,
                        help="measure every server this many times, one after another; each "
                             "figure is the median of its rounds")
    add_synchronous_argument(parser)
    parser.add_argument("--postgres", metavar="URL",
                        help="also measure Hookscope on PostgreSQL (plain and full pipeline), "
                             "each in a fresh database made on the server this URL names; "
                             "loopback only")
    parser.add_argument("--processes", type=int, default=1,
                        help="with --postgres, also measure this many Hookscope processes "
                             "(--reuse-port) on one port and one database")
    parser.add_argument("--peer", metavar="URL",
                        help="a capture URL of another server already running, on a loopback "
                             "IP address such as 127.0.0.1; measured in every round too")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if not 1 <= args.processes <= 64:
        parser.error("--processes must be 1..64")
    if args.peer and not _is_loopback(args.peer):
        parser.error("--peer must be a loopback address such as 127.0.0.1: benchmarks talk to "
                     "loopback only")
    if args.postgres and not _is_loopback(args.postgres):
        parser.error("--postgres must name a server on a loopback address such as 127.0.0.1")
    if args.processes > 1 and not args.postgres:
        parser.error("--processes needs --postgres: an SQLite database is served by one process")
    if shutil.which("wrk") is None:
        print("bench/ingest needs wrk: apt-get install wrk", file=sys.stderr)
        return 2
    body = json_body()
    if args.peer and (problem := _check_peer(args.peer, body)):
        print(problem, file=sys.stderr)
        return 2
    signed = {"X-Hub-Signature-256": github_signature(body)}
    rounds: list[dict[str, dict]] = []
    with tempfile.TemporaryDirectory(prefix="hookscope-bench-") as tmp:
        workdir = Path(tmp)
        bare_port, hs_port = free_port(), free_port()
        # The bare app runs between the two Hookscope runs: on a shared 2-core machine the
        # pace moves 2x within minutes (measured), so a ratio is only fair between runs that
        # are close in time. Each ratio is taken within a round, then the median of the rounds.
        servers = {
            "hookscope full": (None, f"http://127.0.0.1:{hs_port}", FULL_PIPELINE),
            "bare starlette": (bare_command(bare_port), f"http://127.0.0.1:{bare_port}", None),
            "hookscope": (None, f"http://127.0.0.1:{hs_port}", {}),
        }
        if args.postgres:
            servers["pg full"] = (None, f"http://127.0.0.1:{hs_port}", FULL_PIPELINE)
            servers["pg"] = (None, f"http://127.0.0.1:{hs_port}", {})
            if args.processes > 1:
                servers[f"pg full x{args.processes}"] = (None, f"http://127.0.0.1:{hs_port}",
                                                         FULL_PIPELINE)
                servers[f"pg x{args.processes}"] = (None, f"http://127.0.0.1:{hs_port}", {})
        for round_number in range(args.rounds):
            results = {}
            for name, (cmd, base, fields) in servers.items():
                db: Path | str = workdir / f"round{round_number}-{name.replace(' ', '_')}.db"
                if name.startswith("pg"):
                    db = fresh_database(args.postgres)
                commands = [cmd] if cmd else [serve_command(hs_port, db, args.synchronous)]
                if name.endswith(f" x{args.processes}"):
                    commands = [[*commands[0], "--reuse-port"]] * args.processes
                try:
                    results[name] = _measure(name, commands, base, fields, body, signed, args,
                                             workdir)
                finally:
                    if name.startswith("pg"):
                        drop_database(args.postgres, str(db))
            if args.peer:
                # Last: run right after the peer, plain Hookscope was slower than the full
                # pipeline in each of 3 rounds (and faster in each of 3 with the peer last).
                results["peer"] = _measure_peer(args.peer, body, args, workdir)
            rounds.append(results)
    command = "python bench/ingest.py " + " ".join(sys.argv[1:])
    print(f"# {command.strip()}  ({os.cpu_count()} cores, "
          f"{args.connections} connections, {args.seconds}s each, {args.rounds} rounds, "
          f"1 KiB JSON POST)")
    print(f"{'round':<6} {'server':<16} {'req/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
          f"{'non-2xx':>8} {'/ bare':>7}")
    for number, results in enumerate(rounds, 1):
        bare_rps = results["bare starlette"]["rps"]
        for name, r in results.items():
            print(f"{number:<6} {name:<16} {r['rps']:>9.0f} {r['p50_ms']:>8.2f} "
                  f"{r['p90_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['non_2xx']:>8} "
                  f"{r['rps'] / bare_rps:>7.0%}")

    def median(name: str, figure: str) -> float:
        return statistics.median(r[name][figure] for r in rounds)

    def median_ratio(name: str, to: str = "bare starlette") -> float:
        return statistics.median(r[name]["rps"] / r[to]["rps"] for r in rounds)

    last_hs, last_full = rounds[-1]["hookscope"], rounds[-1]["hookscope full"]
    print(f"medians of {args.rounds} rounds:")
    print(f"hookscope / bare = {median_ratio('hookscope'):.0%} (target >= 50%); hookscope "
          f"p99 = {median('hookscope', 'p99_ms'):.1f} ms (target <= 20 ms); captures stored in "
          f"the last round = {last_hs.get('stored')}")
    cost = 1 - median_ratio("hookscope full", to="hookscope")
    print(f"full pipeline (verify auto + format auto) / bare = "
          f"{median_ratio('hookscope full'):.0%} (target >= 50%), p99 = "
          f"{median('hookscope full', 'p99_ms'):.1f} ms (target <= 20 ms); signature "
          f"verification and format detection cost {cost:.1%} of plain throughput; last "
          f"verdict = "
          f"{last_full.get('verdict')}; captures stored in the last round = "
          f"{last_full.get('stored')}")
    if args.postgres:
        print(f"on PostgreSQL: plain = {median_ratio('pg', to='hookscope'):.0%} of SQLite's "
              f"(target >= 60%), p99 = {median('pg', 'p99_ms'):.1f} ms against "
              f"{median('hookscope', 'p99_ms'):.1f} ms (target within 2x); full pipeline = "
              f"{median_ratio('pg full', to='hookscope full'):.0%} of SQLite's, p99 = "
              f"{median('pg full', 'p99_ms'):.1f} ms; captures stored in the last round = "
              f"{rounds[-1]['pg'].get('stored')}")
        if args.processes > 1:
            several, full = f"pg x{args.processes}", f"pg full x{args.processes}"
            print(f"on PostgreSQL, {args.processes} processes: plain = "
                  f"{median(several, 'rps'):.0f} req/s, {median_ratio(several, to='pg'):.2f}x "
                  f"one process, {median_ratio(several, to='hookscope'):.0%} of SQLite's, p99 = "
                  f"{median(several, 'p99_ms'):.1f} ms; full pipeline = "
                  f"{median_ratio(full, to='pg full'):.2f}x one process, p99 = "
                  f"{median(full, 'p99_ms'):.1f} ms")
    if args.peer:
        failed = sum(r["peer"]["non_2xx"] for r in rounds)
        socket_errors = {r["peer"]["socket_errors"] for r in rounds} - {"none"}
        print(f"peer ({args.peer}) / bare = {median_ratio('peer'):.0%}, p99 = "
              f"{median('peer', 'p99_ms'):.1f} ms, non-2xx = {failed}, socket errors = "
              f"{'; '.join(sorted(socket_errors)) or 'none'}; hookscope / peer = "
              f"{median_ratio('hookscope', to='peer'):.2f}x, full pipeline / peer = "
              f"{median_ratio('hookscope full', to='peer'):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
