"""`hookscope show`, `tail`, `wait`, `export` and `diff`: captures."""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hookscope.cli.base import FAILED, OK, TIMEOUT, USAGE, Failed, remote, warn
from hookscope.cli.client import Client, Unreachable, segment
from hookscope.cli.output import (
    Printer,
    hexdump,
    local_time,
    safe,
    signature_text,
    size,
    summary_line,
    validation_text,
)

MAX_WAIT_S = 60  # the longest long-poll the API holds; `wait` asks again until its timeout
RECONNECT_S = (0.5, 10.0)  # first and longest pause before `tail` reconnects


@remote
def show(args: argparse.Namespace, client: Client) -> int:
    capture = client.json("GET", f"/api/captures/{segment(args.id)}")
    out = Printer(as_json=args.json)
    if out.as_json:
        out.json(capture)
    else:
        print_capture(out, capture)
    return OK


def print_capture(out: Printer, capture: dict[str, Any]) -> None:
    query = f"?{capture['query']}" if capture["query"] else ""
    out.heading(safe(f"{capture['method']} {capture['path']}{query}"))
    body = f"{capture['content_type'] or 'no content type'}, {size(capture['body_size'])}"
    if capture["truncated"]:
        body += out.paint(" (truncated at the size limit)", "yellow")
    signature = capture["signature"]
    validation = capture["validation"]
    out.pairs([
        ("id", capture["id"]),
        ("endpoint", f"{capture['endpoint']}  #{capture['seq']}"),
        ("received", f"{local_time(capture['received_at'], with_date=True)}  "
                     f"({capture['received_at']})"),
        ("from", capture["remote_addr"] or "-"),
        ("body", safe(body)),
        ("answered", str(capture["response"]["status"])),
        ("signature", signature_text(out, signature) + _because(signature)),
        ("validation", validation_text(out, validation)),
    ])
    for error in validation.get("errors") or []:
        out.line(f"    {error_line(error)}")
    out.line()
    out.heading("Headers")
    for name, value in capture["headers"]:
        out.line(f"  {out.paint(safe(name), 'dim')}: {safe(value)}")
    out.line()
    parsed = capture.get("parsed") or {}
    out.heading(f"Body ({parsed.get('kind', 'empty')})")
    if parsed.get("error"):
        out.line(out.paint(f"  {safe(parsed['error'])}", "yellow"))
    if parsed.get("kind") == "json" and not parsed.get("error"):
        out.line(safe(json.dumps(parsed.get("value"), indent=2, ensure_ascii=False)))
    elif capture.get("body_text"):
        out.line(safe(capture["body_text"]))
    elif capture.get("body_base64"):
        for line in hexdump(base64.b64decode(capture["body_base64"])):
            out.line(f"  {line}")
    else:
        out.line("  (empty)")


def _because(signature: dict[str, Any]) -> str:
    scheme = f" ({signature['scheme']})" if signature.get("scheme") else ""
    reason = f": {safe(signature['reason'])}" if signature.get("reason") else ""
    return scheme + reason


def error_line(error: dict[str, Any]) -> str:
    """A validation error as `pointer: message` (the root is shown as `(root)`), or the message
    alone when it ends with the pointer already ("unexpected property /data/foo")."""
    path, message = error.get("path") or "", str(error.get("message", ""))
    if path and message.endswith(f" {path}"):
        return safe(message)
    return f"{safe(path or '(root)')}: {safe(message)}"


def endpoint_key(text: str) -> str:
    """KEY as a URL path segment: a token or alias, or the capture URL `new` printed
    (http://.../h/KEY, or any URL under it)."""
    if "://" in text:
        parts = urlsplit(text).path.split("/")
        if "h" in parts[:-1]:
            text = parts[parts.index("h") + 1]
    return segment(text)


@remote
def tail(args: argparse.Namespace, client: Client) -> int:
    """Follow the live stream; resume where it broke off (Last-Event-ID) after a drop."""
    key = endpoint_key(args.key)
    # Starting from the endpoint's last sequence number (not "whatever comes next") means a
    # reconnect also knows where it was before the first event: no capture falls in the gap.
    last = args.after
    if last is None:
        last = client.json("GET", f"/api/endpoints/{key}")["last_seq"]
    out = Printer(as_json=args.json)
    if sys.stderr.isatty():
        warn(f"following {client.base_url}/api/endpoints/{key}/stream (Ctrl-C to stop)")
    pause = RECONNECT_S[0]
    try:
        while True:
            try:
                for event, _, data in client.events(f"/api/endpoints/{key}/stream", last):
                    if event != "capture":
                        continue
                    summary = json.loads(data)
                    last = summary["seq"]
                    if out.as_json:
                        out.json(summary, compact=True)
                    else:
                        out.line(summary_line(out, summary))
                    pause = RECONNECT_S[0]
                warn(f"the stream ended; reconnecting after #{last}")
            except Unreachable as exc:
                warn(f"{exc}; reconnecting in {pause:g} s")
            time.sleep(pause)
            pause = min(pause * 2, RECONNECT_S[1])
    except KeyboardInterrupt:
        return OK


@remote
def wait(args: argparse.Namespace, client: Client) -> int:
    """Long-poll for the first capture after --after; check it against the expectations."""
    path = f"/api/endpoints/{endpoint_key(args.key)}/captures"
    deadline = time.monotonic() + args.timeout
    after = args.after
    while True:
        window = round(min(max(deadline - time.monotonic(), 0.0), MAX_WAIT_S), 3)
        reply = client.json("GET", path, params={"after": after, "wait": window, "limit": 1},
                            read_timeout=window + 30)
        if reply["captures"]:
            break
        after = reply["next_after"]
        if time.monotonic() >= deadline:
            raise Failed(TIMEOUT, f"nothing arrived at {args.key} within {args.timeout:g} s")
    summary = reply["captures"][0]
    out = Printer(as_json=args.json)
    if out.as_json:
        out.json(client.json("GET", f"/api/captures/{segment(summary['id'])}"))
    else:
        out.line(summary_line(out, summary))
    problems = unmet_expectations(args, summary)
    for problem in problems:
        print(f"expectation failed: {problem}", file=sys.stderr)
    return FAILED if problems else OK


def unmet_expectations(args: argparse.Namespace, capture: dict[str, Any]) -> list[str]:
    """Each expectation the capture does not meet, naming the field, its value and why."""
    problems = []
    signature, validation = capture["signature"], capture["validation"]
    if args.expect_verified and signature["status"] != "verified":
        why = f" ({signature['reason']})" if signature.get("reason") else ""
        problems.append(f"signature.status is {signature['status']!r}, expected 'verified'"
                        f"{why}; scheme {signature.get('scheme')!r}")
    if args.expect_valid and validation["status"] != "valid":
        if validation["status"] == "unknown":
            problems.append("validation.status is 'unknown', expected 'valid': no format "
                            "was recognised (or the endpoint's format is 'none')")
        else:
            errors = "".join(f"\n  {error_line(e)}" for e in validation["errors"])
            problems.append(f"validation.status is {validation['status']!r}, expected 'valid' "
                            f"(format {validation['format']!r}):{errors}")
    if args.expect_format is not None and validation.get("format") != args.expect_format:
        problems.append(f"validation.format is {validation.get('format')!r}, expected "
                        f"{args.expect_format!r}")
    return problems


@remote
def export(args: argparse.Namespace, client: Client) -> int:
    response = client.request("GET", f"/api/captures/{segment(args.id)}/export",
                              params={"as": args.as_})
    if args.output and args.output != "-":
        try:
            Path(args.output).write_bytes(response.content)
        except OSError as exc:
            raise Failed(USAGE, f"cannot write {args.output}: {exc.strerror or exc}") from None
        warn(f"wrote {size(len(response.content))} to {args.output}")
    else:
        sys.stdout.flush()
        sys.stdout.buffer.write(response.content)
        sys.stdout.buffer.flush()
    return OK


@remote
def diff(args: argparse.Namespace, client: Client) -> int:
    """Exit 0 when the two captures are the same request, 1 when they differ (as diff(1))."""
    result = client.json("GET", f"/api/captures/{segment(args.a)}/diff/{segment(args.b)}")
    out = Printer(as_json=args.json)
    if out.as_json:
        out.json(result)
    elif result["identical"]:
        out.line("identical")
    else:
        _print_diff(out, result)
    return OK if result["identical"] else FAILED


def _print_diff(out: Printer, result: dict[str, Any]) -> None:
    for part in ("method", "path"):
        if result[part] is not None:
            out.line(safe(f"{part}: {result[part]['a']} -> {result[part]['b']}"))
    for part in ("query", "headers"):
        changes = result[part]
        for item in changes["removed"]:
            out.line(out.paint(safe(f"- {part} {item['name']}: {item['value']}"), "red"))
        for item in changes["added"]:
            out.line(out.paint(safe(f"+ {part} {item['name']}: {item['value']}"), "green"))
        for item in changes["changed"]:
            out.line(safe(f"~ {part} {item['name']}: {item['a']} -> {item['b']}"))
    body = result["body"]
    if body["kind"] is not None:
        out.line(f"body kind: {body['kind']['a']} -> {body['kind']['b']}")
    for item in body["removed"]:
        out.line(out.paint(safe(f"- body {item['path'] or '/'}: {_short(item['value'])}"), "red"))
    for item in body["added"]:
        out.line(out.paint(safe(f"+ body {item['path'] or '/'}: {_short(item['value'])}"),
                           "green"))
    for item in body["changed"]:
        out.line(safe(f"~ body {item['path'] or '/'}: {_short(item['a'])} -> "
                      f"{_short(item['b'])}"))


def _short(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit - 1] + "…"
