"""`hookscope listen KEY --forward-to URL`: follow an endpoint's live stream and send each capture
on to a URL of the user's (a server on their own machine, usually), byte for byte, recording
every attempt on the capture as a delivery (POST /api/captures/{id}/deliveries).

How it holds together (docs/cli.md, "Forwarding to your machine", says it for users):

- One worker thread per target, each following the stream on a connection of its own from a
  cursor of its own: a target that is down retries without holding up another, and each target
  gets its captures in order. A dropped stream is resumed with Last-Event-ID.
- A cursor is the last sequence number handled (forwarded and recorded, given up, or filtered
  out), kept per server, endpoint and target in a small JSON file that is replaced whole after
  each capture, so a restarted listener carries on after it.
- A capture's tries are recorded before its cursor moves past it. A listener resuming from its
  cursor looks up the server's records of the first capture it forwards: one already
  `delivered` or `failed` by its own name to the same target (by a listener killed between
  recording and moving the cursor) is not sent again, and the tries already made count. What
  remains is a delivery in flight when the listener dies, received by the target but not yet
  recorded: that capture is sent again. At least once, then; exactly once outside that window.

Each attempt is the server's own forwarding code (hookscope.ops.forward.attempt), run here
without a target policy: a command on the user's machine sends wherever its user says.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import functools
import getpass
import json
import signal
import socket
import sys
import threading
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any

import httpx

from hookscope.cli.base import OK, USAGE, Failed, remote, warn
from hookscope.cli.captures import endpoint_key
from hookscope.cli.client import Client, Refused, Unreachable, segment
from hookscope.cli.cursor import Cursor, state_folder
from hookscope.cli.fixture import Payload, fixture_body
from hookscope.cli.output import Console, Printer, capture_path, local_time, safe

if TYPE_CHECKING:
    from hookscope.models import Capture

RECONNECT_S = (0.25, 5.0)  # first and longest pause before following the stream again
DEFAULT_MAX_TRIES = 5
MAX_TRIES = 100
DEFAULT_TIMEOUT_S = 10.0
MAX_TIMEOUT_S = 60.0


class _Stopping(Exception):
    """Ctrl-C or SIGTERM reached a worker between steps: it leaves its cursor where it is."""


@dataclass(frozen=True)
class Options:
    name: str  # who forwards: each delivery's `by`
    methods: frozenset[str]  # upper case; empty: any
    paths: tuple[str, ...]  # globs over the sub-path; empty: any
    max_tries: int
    retry_on_5xx: bool
    timeout: float

    def wants(self, summary: dict[str, Any]) -> bool:
        """Whether a capture passes --method and --path."""
        from hookscope.ops.forward import sub_path

        if self.methods and summary["method"].upper() not in self.methods:
            return False
        path = sub_path(summary["path"]) or "/"
        return not self.paths or any(fnmatch.fnmatchcase(path, glob) for glob in self.paths)


def default_name() -> str:
    """user@hostname: who forwarded, as the team sees it on each delivery."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name: a container's numeric user, say
        user = "listener"
    return f"{user}@{socket.gethostname()}"


def target_label(target: str) -> str:
    """A target as a delivery line shows it: host, port and path, without the scheme."""
    url = httpx.URL(target)
    return safe(url.netloc.decode("ascii", "replace") + url.raw_path.decode("ascii", "replace"))


def as_capture(full: dict[str, Any]) -> Capture:
    """GET /api/captures/{id}'s object as the Capture the forwarding code sends: the export's
    shape, its exact bytes from body_text or body_base64."""
    return Payload(fixture_body(full, full["id"]), full.get("content_type"), full).as_capture()


@dataclass
class Shared:
    """What the workers of one `listen` share."""

    server: str
    endpoint: str  # its token
    options: Options
    console: Console
    stop: threading.Event = field(default_factory=threading.Event)  # Ctrl-C, SIGTERM
    ended: threading.Event = field(default_factory=threading.Event)  # a worker failed


class Forwarder(threading.Thread):
    """Follows the stream from its cursor and forwards every capture that passes the filters to
    one target, in order; each try recorded, the cursor saved once a capture is done."""

    def __init__(self, shared: Shared, target: str, cursor: Cursor, after: int, *,
                 resumed: bool) -> None:
        super().__init__(name=f"forward to {target}", daemon=True)
        self.client = Client(shared.server)
        self.endpoint, self.options, self.console = shared.endpoint, shared.options, shared.console
        self.stop, self.ended = shared.stop, shared.ended
        self.target, self.label = target, target_label(target)
        self.cursor, self.after, self.resumed = cursor, after, resumed
        # Started from a saved cursor, the first capture forwarded may have been delivered (or
        # tried) by a listener killed before it moved the cursor: the server's records of it say.
        self.in_doubt = resumed
        # Held while a capture is being forwarded: Ctrl-C lets that one finish and be recorded.
        self.busy = threading.Lock()
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            self._follow()
        except _Stopping:
            pass
        except BaseException as exc:  # handed to the main thread, which says it and exits
            self.failure = exc
            self.ended.set()
        finally:
            self.client.close()

    def _follow(self) -> None:
        pause = RECONNECT_S[0]
        while not self.stop.is_set():
            self._waiting()
            try:
                for event, _, data in self.client.events(
                        f"/api/endpoints/{segment(self.endpoint)}/stream", self.after):
                    if event != "capture":
                        continue  # a delivery: ours or someone else's, already on the capture
                    pause = RECONNECT_S[0]
                    self._handle(json.loads(data))
                    self._waiting()
                why = "the stream ended (the server stopping?)"
            except Unreachable as exc:
                why = str(exc)
            except Refused as exc:
                if not transient(exc):
                    raise
                why = str(exc)
            if self.stop.is_set():
                return
            self.console.note(f"{self.label}: {why}; following again after #{self.after} in "
                              f"{pause:g} s")
            self.console.status(self.label, f"reconnecting in {pause:g} s after: {why}")
            if self.stop.wait(pause):
                return
            pause = min(pause * 2, RECONNECT_S[1])

    def _waiting(self) -> None:
        self.console.status(self.label, f"waiting for captures after #{self.after}")

    def _handle(self, summary: dict[str, Any]) -> None:
        seq = int(summary["seq"])
        if seq <= self.after:
            return
        with self.busy:
            if self.stop.is_set():
                raise _Stopping
            if self.options.wants(summary):
                try:
                    full = self.client.json("GET", f"/api/captures/{segment(summary['id'])}")
                except Refused as exc:
                    if exc.status != 404:
                        raise
                    self.console.note(f"#{seq} was deleted before it could be forwarded")
                else:
                    self._forward(full)
            self.cursor.save(seq)
            self.after = seq

    def _forward(self, full: dict[str, Any]) -> None:
        from hookscope.ops.forward import MAX_TARGET, attempt, backoff, forward_url

        capture = as_capture(full)
        sent_to = forward_url(self.target, capture.path, capture.query)[:MAX_TARGET]
        ours = [d for d in full.get("deliveries") or []
                if self.in_doubt and d.get("by") == self.options.name
                and d.get("target") == sent_to]
        self.in_doubt = False
        done = next((d for d in ours if d.get("outcome") in ("delivered", "failed")), None)
        if done is not None:
            self.console.note(f"#{capture.seq} was {done['outcome']} to {self.label} before "
                              f"(by {safe(self.options.name)}): not sent again")
            return
        if capture.truncated:
            self.console.note(f"#{capture.seq}'s body was cut at the endpoint's size limit: "
                              f"{self.label} gets the part that was stored")
        tries = len(ours)
        while True:
            tries += 1
            self.console.status(self.label, f"forwarding #{capture.seq}")
            record = _run(attempt, capture, self.target, by=self.options.name, number=tries,
                          timeout=self.options.timeout, policy=None,
                          retry_on_5xx=self.options.retry_on_5xx,
                          last=tries >= self.options.max_tries)
            stored = self._record(capture, record)
            delay = backoff(tries)
            self.console.delivery(self._line(full, record, delay), stored or record)
            if stored is None:
                self.console.note(f"#{capture.seq} was deleted meanwhile: not tried again")
                return
            if record["outcome"] != "retrying":
                return
            self.console.status(self.label, f"#{capture.seq}: try {tries + 1} of "
                                            f"{self.options.max_tries} in {delay:g} s")
            if self.stop.wait(delay):
                raise _Stopping

    def _record(self, capture: Capture, record: dict[str, Any]) -> dict[str, Any] | None:
        """Report one try; the delivery as stored, or None when the capture has gone. While
        Hookscope cannot be reached it is asked again: the cursor waits for the record."""
        from hookscope.ops.forward import DELIVERY_FIELDS

        body = {name: record[name] for name in DELIVERY_FIELDS}
        pause = RECONNECT_S[0]
        while True:
            try:
                stored: dict[str, Any] = self.client.json(
                    "POST", f"/api/captures/{segment(capture.id)}/deliveries", json=body)
                return stored
            except Refused as exc:
                if exc.status == 404:
                    return None
                if not transient(exc):
                    raise
                why = str(exc)
            except Unreachable as exc:
                why = str(exc)
            self.console.note(f"{why}; recording #{capture.seq}'s delivery again in "
                              f"{pause:g} s")
            self.console.status(self.label, f"recording #{capture.seq}'s delivery again in "
                                            f"{pause:g} s: {why}")
            if self.stop.wait(pause):
                raise _Stopping
            pause = min(pause * 2, RECONNECT_S[1])

    def _line(self, capture: dict[str, Any], record: dict[str, Any], delay: float) -> str:
        out = self.console.out
        path = capture_path(capture)
        if len(path) > 40:
            path = path[:39] + "…"
        if record["status"] is not None:
            status = record["status"]
            colour = "green" if status < 300 else "yellow" if status < 500 else "red"
            answer = (out.paint(str(status), colour)
                      + f"  {record['elapsed_ms']:.1f} ms".rjust(11))
        else:
            answer = out.paint(safe(_why(record)), "red")
        outcome = record["outcome"]
        if outcome == "retrying":
            answer += "  " + out.paint(f"try {record['attempt'] + 1} of "
                                       f"{self.options.max_tries} in {delay:g} s", "yellow")
        elif outcome == "failed":
            tries = record["attempt"]
            answer += "  " + out.paint(f"failed after {tries} {'try' if tries == 1 else 'tries'}",
                                       "red")
        return "  ".join([
            out.paint(local_time(record["at"]), "dim"),
            f"#{capture['seq']}".rjust(6),
            out.paint(capture["method"].ljust(7), "cyan"),
            path.ljust(40),
            f"-> {self.label}",
            answer,
        ])


def _why(record: dict[str, Any]) -> str:
    """Why a try got no answer, without the URL the line already shows."""
    error = str(record["error"] or "no answer")
    target = record["target"]
    return error.removeprefix(f"could not reach {target}: ").removeprefix(f"{target} ")


def _run(function: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    import anyio

    result: dict[str, Any] = anyio.run(functools.partial(function, *args, **kwargs))
    return result


def transient(exc: Refused) -> bool:
    """A refusal worth asking again: the server is busy or failing, not saying no."""
    return exc.status >= 500 or exc.status == 429


def start_point(text: str) -> str | int:
    """--from: `now`, `first` (0: every capture) or a sequence number to start after."""
    if text in ("now", "first"):
        return 0 if text == "first" else "now"
    if text.isdigit():
        return int(text)
    raise argparse.ArgumentTypeError(f"now, first or a sequence number, got {text!r}")


def tries(text: str) -> int:
    """--max-tries: a whole number from 1 to MAX_TRIES."""
    if not text.isdigit() or not 1 <= int(text) <= MAX_TRIES:
        raise argparse.ArgumentTypeError(f"a whole number from 1 to {MAX_TRIES}, got {text!r}")
    return int(text)


def timeout(text: str) -> float:
    """--timeout: seconds, more than 0 and at most MAX_TIMEOUT_S."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= MAX_TIMEOUT_S:
        raise argparse.ArgumentTypeError(f"seconds, more than 0 and at most "
                                         f"{MAX_TIMEOUT_S:g}, got {text!r}")
    return value


def _targets(given: list[str]) -> list[str]:
    from hookscope.ops.replay import url_problem

    targets: list[str] = []
    for target in given:
        # A password in it stays on this machine: deliveries show the URL without one.
        problem = url_problem(target, example="such as http://localhost:3000/webhooks")
        if problem is not None:
            raise Failed(USAGE, f"--forward-to {target!r}: {problem.removeprefix('url ')}")
        if target not in targets:
            targets.append(target)
    return targets


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@remote
def listen(args: argparse.Namespace, client: Client) -> int:
    targets = _targets(args.forward_to)
    options = Options(name=args.name or default_name(),
                      methods=frozenset(m.upper() for m in args.method),
                      paths=tuple(args.path), max_tries=args.max_tries,
                      retry_on_5xx=args.retry_on == "5xx", timeout=args.timeout)
    key = endpoint_key(args.key)
    endpoint = client.json("GET", f"/api/endpoints/{key}")
    token, last_seq = endpoint["token"], int(endpoint["last_seq"])
    folder = state_folder(args.state)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Failed(USAGE, f"cannot make {folder}: {exc.strerror or exc}") from None
    console = Console(Printer(as_json=args.json))
    shared = Shared(client.base_url, token, options, console)
    workers: list[Forwarder] = []
    lines = []
    for target in targets:
        cursor = Cursor(folder, client.base_url, token, target)
        saved = cursor.load()
        if args.start == "now" or (args.start is None and saved is None):
            after, why = last_seq, f"after #{last_seq}: new captures only"
        elif args.start is not None:
            after = int(args.start)
            why = "from the first capture" if after == 0 else f"after #{after}"
        else:
            after, why = int(saved or 0), f"after #{saved}, where it stopped"
        workers.append(Forwarder(shared, target, cursor, after,
                                 resumed=args.start is None and saved is not None))
        lines.append(f"  -> {safe(target)}  {why}")
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        for worker in workers:
            worker.cursor.claim()
            if not worker.resumed:  # so one stopped before its first capture resumes here too
                worker.cursor.save(worker.after)
        warn(f"forwarding {safe(args.key)} on {client.base_url} as {safe(options.name)} "
             "(Ctrl-C to stop)")
        print("\n".join(lines), file=sys.stderr, flush=True)
        for worker in workers:
            worker.start()
        try:
            while not shared.ended.wait(1.0):
                pass
            shared.stop.set()
            _let_finish(workers)
            failure = next(w.failure for w in workers if w.failure is not None)
            raise failure
        except KeyboardInterrupt:
            shared.stop.set()
            console.close()
            with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C: leave at once
                _let_finish(workers)
            for worker in workers:
                warn(f"stopped: {worker.label} after #{worker.after} (kept in "
                     f"{worker.cursor.path})")
            return OK
    finally:
        console.close()
        signal.signal(signal.SIGTERM, previous)
        for worker in workers:
            worker.cursor.release()


def _let_finish(workers: list[Forwarder]) -> None:
    """Wait for the capture each worker is forwarding, so it is recorded and its cursor saved;
    a worker waiting on the stream holds nothing and is left to end with the process."""
    for worker in workers:
        worker.busy.acquire()
