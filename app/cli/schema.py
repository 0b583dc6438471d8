"""`hookscope schema`: contracts from real traffic. `infer` prints the JSON Schema the server
infers from an endpoint's captures, `pin` makes it (or a schema file) the endpoint's contract,
`drift` compares the pinned contract with what traffic shows now, and `diff` compares two schema
files offline. docs/contracts.md walks through them."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hookscope.cli.base import FAILED, OK, USAGE, Failed, local, remote, warn
from hookscope.cli.captures import endpoint_key
from hookscope.cli.client import Client
from hookscope.cli.output import Printer, safe


def add_inference_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--group-by", metavar="HOW",
                        help="one schema per event type told apart by: header:NAME (as "
                             "header:X-GitHub-Event), pointer:/JSON/POINTER (as pointer:/type), "
                             "path, none, or auto (the default: the first of the common senders' "
                             "fields every capture has)")
    parser.add_argument("--limit", type=int, metavar="N",
                        help="read the newest N captures (default 1000, at most 10000)")
    parser.add_argument("--path", metavar="SUBPATH",
                        help="only captures sent to this sub-path (after /h/KEY) or below it")
    parser.add_argument("--since", metavar="ISO8601",
                        help="only captures received at or after this moment")
    parser.add_argument("--enum", action="store_true",
                        help="list a string's values as an enum when they repeat (at most 20)")
    parser.add_argument("--additional-properties", action="store_true",
                        help="let objects have properties the samples never had (by default "
                             "they are refused, so a new property shows as drift)")


def _params(args: argparse.Namespace) -> dict[str, str]:
    params = {"group_by": args.group_by, "limit": args.limit, "path": args.path,
              "since": args.since}
    found = {name: str(value) for name, value in params.items() if value is not None}
    if args.enum:
        found["enum"] = "true"
    if args.additional_properties:
        found["additional_properties"] = "true"
    return found


def _summary(reply: dict[str, Any]) -> str:
    groups = ", ".join(f"{safe(g['key'])} {g['samples']}" for g in reply["groups"][:10])
    more = f", and {len(reply['groups']) - 10} more" if len(reply["groups"]) > 10 else ""
    grouped = "" if reply["group_by"] == "none" else f", grouped by {safe(reply['group_by'])}"
    return (f"{reply['samples']} samples ({reply['captures']} captures){grouped}"
            + (f": {groups}{more}" if grouped else ""))


@remote
def infer(args: argparse.Namespace, client: Client) -> int:
    reply = client.json("GET", f"/api/endpoints/{endpoint_key(args.key)}/schema",
                        params=_params(args))
    for note in reply.get("notes", []):
        warn(note)
    document = reply if args.json else reply["schema"]
    text = json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise Failed(USAGE, f"cannot write {args.output}: {exc.strerror or exc}") from None
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    warn(f"inferred from {_summary(reply)}")
    return OK


@remote
def pin(args: argparse.Namespace, client: Client) -> int:
    key = endpoint_key(args.key)
    if args.schema_file is not None:
        schema = read_schema(args.schema_file)
        reply: dict[str, Any] = {"schema": schema}
        said = f"the schema in {args.schema_file}"
    else:
        reply = client.json("GET", f"/api/endpoints/{key}/schema", params=_params(args))
        for note in reply.get("notes", []):
            warn(note)
        if reply["samples"] == 0:
            raise Failed(FAILED, "no capture read has a JSON document: nothing to infer a "
                                 "contract from (send some first, or widen --limit or --since)")
        schema = reply["schema"]
        said = f"the contract inferred from {_summary(reply)}"
    endpoint = client.json("PATCH", f"/api/endpoints/{key}", json={"schema": schema})
    out = Printer(as_json=args.json)
    if out.as_json:
        out.json({**reply, "endpoint": endpoint["token"], "pinned": True})
    else:
        out.line(f"pinned on {endpoint['alias'] or endpoint['token']}: {said}; every capture "
                 "from now on is validated against it")
    return OK


@remote
def drift(args: argparse.Namespace, client: Client) -> int:
    reply = client.json("GET", f"/api/endpoints/{endpoint_key(args.key)}/schema",
                        params={**_params(args), "against": "pinned"})
    for note in reply.get("notes", []):
        warn(note)
    print_changes(Printer(as_json=args.json), reply)
    return FAILED if reply["breaking"] else OK


@local
def diff(args: argparse.Namespace) -> int:
    from hookscope.ops.schemadiff import diff_schemas

    if args.old == "-" and args.new == "-":
        raise Failed(USAGE, "only one of OLD and NEW can be read from stdin")
    result = diff_schemas(read_schema(args.old), read_schema(args.new))
    print_changes(Printer(as_json=args.json), result)
    return FAILED if result["breaking"] else OK


def print_changes(out: Printer, result: dict[str, Any]) -> None:
    if out.as_json:
        out.json(result)
        return
    colours = {"breaking": "red", "additive": "green"}
    for change in result["changes"]:
        group = f"  [{safe(change['group'])}]" if change["group"] else ""
        out.line(f"{out.paint(change['kind'].ljust(8), colours[change['kind']])}  "
                 f"{safe(change['path'] or '(root)')}: {safe(change['message'])}{group}")
    counts = result["counts"]
    if not result["changes"]:
        out.line("no changes")
    else:
        out.line(f"{counts['breaking']} breaking, {counts['additive']} additive")


def read_schema(source: str) -> Any:
    """A JSON Schema from a file or stdin (`-`), checked against its draft's meta-schema."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import validator_for

    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise Failed(USAGE, f"cannot read {source}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise Failed(USAGE, f"{source} is not UTF-8 text") from None
    name = "stdin" if source == "-" else source
    try:
        schema = json.loads(text)
    except ValueError as exc:
        raise Failed(USAGE, f"{name} is not JSON: {exc}") from None
    if not isinstance(schema, dict | bool):
        raise Failed(USAGE, f"{name} is not a JSON Schema: a schema is an object (or a boolean)")
    if isinstance(schema, dict) and not isinstance(schema.get("$schema", ""), str):
        raise Failed(USAGE, f"{name}: $schema must be a string")
    try:
        validator_for(schema, default=Draft202012Validator).check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path)
        raise Failed(USAGE, f"{name} is not a valid JSON Schema"
                            f"{' at ' + where if where else ''}: {exc.message}") from None
    except RecursionError:
        raise Failed(USAGE, f"{name} is nested too deeply to check") from None
    return schema
