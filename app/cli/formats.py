"""`hookscope formats` (from the server) and `hookscope validate` (offline: the same registry
and parser as the server, loaded in this process, so it needs no server at all)."""

from __future__ import annotations

import argparse

from hookscope.cli.base import FAILED, OK, USAGE, Failed, local, remote
from hookscope.cli.captures import error_line
from hookscope.cli.client import Client
from hookscope.cli.fixture import read_payload
from hookscope.cli.output import Printer


@remote
def formats(args: argparse.Namespace, client: Client) -> int:
    reply = client.json("GET", "/api/formats")
    out = Printer(as_json=args.json)
    if out.as_json:
        out.json(reply)
    else:
        out.table(["ID", "VENDOR", "TITLE"],
                  [[f["id"], f["vendor"], f["title"]] for f in reply["formats"]])
    return OK


@local
def validate(args: argparse.Namespace) -> int:
    # Imported here: compiling the schemas is the slow part, and only this command needs them.
    from hookscope.formats import Validation, load_formats, verdict
    from hookscope.ingest.parse import parse_body

    registry = load_formats()
    if args.format is not None and registry.get(args.format) is None:
        raise Failed(USAGE, f"unknown format {args.format!r}; known: {', '.join(registry.ids)}")
    payload = read_payload(args.file, args.content_type)
    parsed = parse_body(payload.body, payload.content_type)
    result = (Validation(registry).check(parsed, args.format or "auto", None)
              or verdict(None, False, None, "unknown"))
    out = Printer(as_json=args.json)
    if out.as_json:
        out.json({**result, "parsed": {"kind": parsed.kind, "error": parsed.error}})
    elif result["status"] == "valid":
        out.line(f"{out.paint('valid', 'green')}  {result['format']}")
    elif result["status"] == "invalid":
        count = len(result["errors"])
        out.line(f"{out.paint('invalid', 'red')}  {result['format']}  "
                 f"({count} error{'s' if count != 1 else ''})")
        for error in result["errors"]:
            out.line(f"  {error_line(error)}")
    else:
        why = f"it does not parse: {parsed.error}" if parsed.error else f"it is {parsed.kind}"
        out.line(f"{out.paint('unknown', 'yellow')}  no known format recognises this body "
                 f"({why}); `--format ID` checks it against one, `hookscope formats` lists them")
    return OK if result["status"] == "valid" else FAILED
