"""`hookscope copy-data`: one database copied into another, SQLite or PostgreSQL, and the two
compared (hookscope.storage.copy does both; storage is loaded when the command runs, as `serve`
loads the server)."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from hookscope.cli.base import FAILED, INTERRUPTED, OK, USAGE, Failed, local, warn
from hookscope.cli.output import Printer, size

# A copy that takes longer says how far it got, once per this many seconds, on stderr.
PROGRESS_EVERY_S = 5.0
AGAIN = "what was copied stays; the same command continues from there"


@local
def copy_data(args: argparse.Namespace) -> int:
    from hookscope.storage import copy, describe

    said = time.monotonic()

    def progress(row: copy.EndpointRow, copied: int) -> None:
        nonlocal said
        if time.monotonic() - said >= PROGRESS_EVERY_S:
            said = time.monotonic()
            warn(f"endpoint {row.alias or row.token}: {copied} captures copied")

    try:
        report = asyncio.run(copy.copy_data(args.source, args.destination,
                                            verify_only=args.verify_only, batch=args.batch,
                                            progress=progress))
    except copy.CopyRefused as exc:
        raise Failed(USAGE, str(exc)) from None
    except copy.CopyFailed as exc:
        raise Failed(FAILED, f"{exc}\n  {AGAIN}") from None
    except KeyboardInterrupt:
        raise Failed(INTERRUPTED, f"interrupted; {AGAIN}") from None
    out = Printer(as_json=args.json)
    totals = {name: report.total(name) for name in ("copied", "count", "bytes")}
    if out.as_json:
        shown: dict[str, Any] = {
            "from": describe(args.source), "to": describe(args.destination),
            "verified": report.verified, "endpoints": len(report.endpoints),
            "captures": totals["count"], "bytes": totals["bytes"]}
        if not args.verify_only:
            shown["copied"] = {"endpoints": sum(e.created for e in report.endpoints),
                               "captures": totals["copied"], "revoked_sessions": report.sessions}
        out.json({**shown, "per_endpoint": [e.as_json() for e in report.endpoints]})
    else:
        lines = [("from", describe(args.source)), ("to", describe(args.destination))]
        if not args.verify_only:
            created = sum(e.created for e in report.endpoints)
            lines.append(("copied", f"{_many(created, 'new endpoint')}, "
                                    f"{_many(totals['copied'], 'capture')}, "
                                    f"{_many(report.sessions, 'revoked session')}"))
        lines.append(("in all", f"{_many(len(report.endpoints), 'endpoint')}, "
                                f"{_many(totals['count'], 'capture')}, "
                                f"{size(totals['bytes'])} of bodies"))
        differ = sum(bool(e.problems) for e in report.endpoints)
        lines.append(("verified", out.paint(
            "yes: each endpoint and its captures match (counts, bytes, sha256)", "green")
            if report.verified else out.paint(f"NO: {differ} of {len(report.endpoints)} endpoints "
                                              "differ", "red")))
        out.pairs(lines, indent="")
    for endpoint in report.endpoints:
        for problem in endpoint.problems:
            warn(f"endpoint {endpoint.label}: {problem}")
    return OK if report.verified else FAILED


def _many(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def batch_size(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a whole number of captures, 1 or more, got {text!r}")
    return int(text)
