"""The `hookscope` command: the argument map. `serve` runs the server; the other commands are
clients of its JSON API (one module per command group beside this one), except `validate`, which
works offline, and `copy-data`, which works on the databases themselves.

Exit codes (stable, documented in docs/cli.md; cli/base.py says which failure gets which):
0 success, 1 an expectation or validation failed, 2 usage error, 3 timeout with nothing
received, 4 server unreachable. `serve` exits 1 when it cannot start.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from collections.abc import Sequence
from typing import Any

from hookscope import __version__
from hookscope.cli import (
    captures,
    copydata,
    endpoints,
    formats,
    listen,
    replay,
    schema,
    snapshot,
)
from hookscope.cli.client import DEFAULT_SERVER
from hookscope.settings import SETTINGS, Settings, SettingsError


class _Parser(argparse.ArgumentParser):
    """argparse, except that an argument starting with "-" that is none of the command's options
    is a value, not an unknown option: endpoint tokens are URL-safe base64, and one in 64 starts
    with "-" (`hookscope wait -x3...` must work). A mistyped option still fails, as an
    unexpected argument."""

    def _parse_optional(self, arg_string: str) -> Any:
        found: Any = super()._parse_optional(arg_string)
        # Python 3.11 returns (action, option, value), 3.12+ a list of such tuples; an unknown
        # option comes back with no action.
        unknown = (found[0] is None if isinstance(found, tuple)
                   else isinstance(found, list) and len(found) == 1 and found[0][0] is None)
        return None if unknown and arg_string not in ("-", "--") else found


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="hookscope", description="Self-hosted webhook inspector.",
        epilog="Exit codes: 0 success, 1 an expectation or validation failed, 2 usage error, "
               "3 timeout with nothing received, 4 server unreachable.")
    parser.add_argument("--version", action="version", version=f"hookscope {__version__}")
    parser.add_argument("--server", metavar="URL", default=None, help=SERVER_HELP)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser(
        "serve", help="run the server",
        description="Run the Hookscope server. Flags override the HOOKSCOPE_* environment "
                    "variables; docs/running.md lists every setting.")
    for f in SETTINGS:
        flag = f.metadata["cli"]
        if flag:
            described = f"{f.metadata['help']} [env {f.metadata['env']}, default {f.default!r}]"
            if isinstance(f.default, bool):
                serve.add_argument(flag, dest=f.name, action="store_true", default=None,
                                   help=described)
                continue
            kind = int if isinstance(f.default, int) else str
            serve.add_argument(flag, dest=f.name, type=kind, default=None, help=described)
    serve.set_defaults(run=_serve)
    _client_commands(commands)
    return parser


KEY_HELP = "endpoint token or alias, or its capture URL"
SERVER_HELP = f"the Hookscope server [env HOOKSCOPE_URL, default {DEFAULT_SERVER}]"


def _client_commands(commands: argparse._SubParsersAction[_Parser]) -> None:
    # Also accepted after the command; SUPPRESS keeps an absent one from hiding the global one.
    remote = _Parser(add_help=False)
    remote.add_argument("--server", metavar="URL", default=argparse.SUPPRESS, help=SERVER_HELP)
    as_json = _Parser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON (never coloured)")

    def command(name: str, run: Any, summary: str, description: str, *,
                offline: bool = False) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=summary, description=description,
                                  parents=[as_json] if offline else [remote, as_json])
        sub.set_defaults(run=run)
        return sub

    new = command("new", endpoints.new, "create an endpoint",
                  "Create an endpoint and print its capture URL (--json: the endpoint). Every "
                  "option is optional; the server's defaults apply to what is left out.")
    for option in endpoints.OPTIONS:
        new.add_argument(option.flag, **option.argparse)

    listing = command("list", endpoints.list_endpoints, "list endpoints",
                      "List endpoints, newest first: token, alias, name, capture count, last "
                      "capture and checks.")
    listing.add_argument("--limit", type=int, default=100, help="at most this many (1..1000)")

    show = command("show", captures.show, "show a capture in full",
                   "Show one capture: overview, signature and validation verdicts, headers in "
                   "order, and the body (JSON pretty-printed, binary as a hex dump).")
    show.add_argument("id", metavar="ID", help="capture id (c_...)")

    tail = command("tail", captures.tail, "follow an endpoint's captures live",
                   "Print one line per new capture (time, sequence number, method, path, size, "
                   "signature, validation) as they arrive; reconnects and resumes without gaps "
                   "when the stream drops. --json prints each capture summary as one line of "
                   "JSON. Ctrl-C stops (exit 0).")
    tail.add_argument("key", metavar="KEY", help=KEY_HELP)
    tail.add_argument("--after", type=int, metavar="SEQ",
                      help="first print the captures after this sequence number (0: all)")

    wait = command("wait", captures.wait, "wait for a capture and check it",
                   "Wait for the first capture after --after (default 0: a capture that arrived "
                   "before the wait began counts), print it, and check the expectations. Exit 0 "
                   "when met, 1 when one fails (saying which field and why), 3 when nothing "
                   "arrives within --timeout.")
    wait.add_argument("key", metavar="KEY", help=KEY_HELP)
    wait.add_argument("--after", type=int, default=0, metavar="SEQ",
                      help="only a capture with a higher sequence number counts (default 0)")
    wait.add_argument("--timeout", type=_seconds, default=30.0, metavar="S",
                      help="give up after this many seconds (default 30)")
    wait.add_argument("--expect-verified", action="store_true",
                      help="the signature must be verified")
    wait.add_argument("--expect-valid", action="store_true",
                      help="the payload must be valid")
    wait.add_argument("--expect-format", metavar="ID",
                      help="the payload must be validated as this format")

    validate = command("validate", formats.validate, "validate a payload file (offline)",
                       "Validate a payload against the documented formats, offline: no server "
                       "needed. FILE is a raw body (JSON, NDJSON, XML, form...) or a capture "
                       "exported with `export --as json`; `-` reads stdin. Exit 0 valid, 1 "
                       "invalid or not recognised (each error as `pointer: message`), 2 unknown "
                       "--format.", offline=True)
    validate.add_argument("file", metavar="FILE", help="payload file, export fixture, or -")
    validate.add_argument("--format", metavar="ID",
                          help="check against this format instead of detecting it")
    validate.add_argument("--content-type", metavar="TYPE",
                          help="how to parse FILE (default: from the fixture or the file name, "
                               "else sniffed)")

    resend = command("replay", replay.resend, "send a capture again to a URL",
                     "Send a capture again to --to: same method, headers (in order, minus "
                     "hop-by-hop ones) and raw body. ID is a capture id (the server sends it) or "
                     "a file made by `export --as json` (sent from here). Exit 0 when the target "
                     "answers 2xx, 1 when it answers anything else or cannot be reached.")
    resend.add_argument("id", metavar="ID", help="capture id, or an exported .json file")
    resend.add_argument("--to", required=True, metavar="URL", help="where to send it")
    resend.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'",
                        help="set or replace a header (repeatable)")
    resend.add_argument("--remove-header", action="append", default=[], metavar="NAME",
                        help="leave this header out (repeatable)")
    resend.add_argument("--timeout", type=_seconds, metavar="S",
                        help="seconds to wait for the target (at most 60, default 10)")

    follow = command("listen", listen.listen, "forward an endpoint's captures to a URL, live",
                     "Follow an endpoint's live stream and send each capture on to every "
                     "--forward-to URL as it arrives: the captured method, the path after "
                     "/h/KEY appended to the URL's path, the query, the headers in order with "
                     "duplicates (minus hop-by-hop ones and Host) and the exact body, so "
                     "signatures still verify. Every attempt is recorded on the capture as a "
                     "delivery. Each target gets its captures in order, with its own retries; "
                     "where it stopped is kept under --state, so a restarted listener carries "
                     "on (--from overrides). --json prints each delivery as one line of JSON. "
                     "Ctrl-C or SIGTERM stops (exit 0).")
    follow.add_argument("key", metavar="KEY", help=KEY_HELP)
    follow.add_argument("--forward-to", action="append", required=True, metavar="URL",
                        help="where to send each capture, e.g. http://localhost:3000/hooks "
                             "(repeatable: each target gets every capture)")
    follow.add_argument("--from", dest="start", type=listen.start_point, metavar="now|first|SEQ",
                        help="where to start: now (new captures only: the default without a "
                             "saved cursor), first (every capture), or after sequence number "
                             "SEQ; overrides the saved cursor")
    follow.add_argument("--method", action="append", default=[], metavar="METHOD",
                        help="forward only captures with this method (repeatable)")
    follow.add_argument("--path", action="append", default=[], metavar="GLOB",
                        help="forward only captures whose path after /h/KEY matches this glob, "
                             "e.g. '/github/*' (* matches / too; repeatable)")
    follow.add_argument("--retry-on", choices=("5xx",),
                        help="also retry when the target answers 5xx (no answer at all, "
                             "refused or timed out, is always retried)")
    follow.add_argument("--max-tries", type=listen.tries, default=listen.DEFAULT_MAX_TRIES,
                        metavar="N",
                        help=f"tries per capture and target, waiting 1, 2, 4... s between "
                             f"them, before it is marked failed and the next one goes "
                             f"(1..{listen.MAX_TRIES}, default {listen.DEFAULT_MAX_TRIES})")
    follow.add_argument("--timeout", type=listen.timeout, default=listen.DEFAULT_TIMEOUT_S,
                        metavar="S",
                        help=f"seconds to wait for the target's answer (at most "
                             f"{listen.MAX_TIMEOUT_S:g}, default {listen.DEFAULT_TIMEOUT_S:g})")
    follow.add_argument("--name", metavar="NAME",
                        help="who forwards, as each delivery shows it (default user@hostname)")
    follow.add_argument("--state", metavar="DIR",
                        help="where the cursors are kept (default "
                             "$XDG_STATE_HOME/hookscope/listen, else "
                             "~/.local/state/hookscope/listen)")

    compare = command("diff", captures.diff, "show what differs between two captures",
                      "Compare two captures: method, path, query, headers, and the parsed body "
                      "as JSON pointers (- removed, + added, ~ changed). Exit 0 when they are "
                      "the same request, 1 when they differ.")
    compare.add_argument("a", metavar="A", help="capture id (c_...)")
    compare.add_argument("b", metavar="B", help="capture id (c_...)")

    export = command("export", captures.export, "export a capture as curl, HAR or JSON",
                     "Write a capture as a curl command that sends it again, a HAR 1.2 file, or "
                     "JSON (a fixture that `validate` and `replay` accept).")
    export.add_argument("id", metavar="ID", help="capture id (c_...)")
    export.add_argument("--as", dest="as_", required=True, choices=("curl", "har", "json"),
                        help="what to write")
    export.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")

    snap = command("snapshot", snapshot.snapshot, "write an endpoint's captures as fixture files",
                   "Write fixture files for a receiver's tests: the endpoint's captures, put in "
                   "groups by event type (--group-by), one per distinct shape of body in each "
                   "group (its key paths and value types; a body without structure, one per "
                   "media type), each as `export --as json` writes it, named "
                   "<group>-<seq>.json. Taken again, a snapshot of the same captures writes the "
                   "same files. Captures cut at the size limit are left out. Exit 1 when there "
                   "is nothing to write.")
    snap.add_argument("key", metavar="KEY", help=KEY_HELP)
    snap.add_argument("--out", required=True, metavar="DIR",
                      help="the folder to write into (made when missing)")
    snap.add_argument("--group-by", type=snapshot.group_by, default="auto", metavar="G",
                      help="auto (default: a known event-type header or body field every "
                           "capture has, else none), none, path, header:<Name> or "
                           "pointer:</json/pointer>")
    snap.add_argument("--per-group", type=snapshot.count, metavar="N",
                      help="up to N fixtures per group: one of each shape first, then more "
                           "captures in the order they arrived")
    snap.add_argument("--limit", type=snapshot.count, default=snapshot.DEFAULT_LIMIT,
                      metavar="N", help=f"read the newest N captures (default "
                                        f"{snapshot.DEFAULT_LIMIT})")

    command("formats", formats.formats, "list the payload formats",
            "List the payload formats the server validates: id, vendor and title.")

    _schema_commands(commands, remote, as_json)

    copy = command("copy-data", copydata.copy_data, "copy a database into another (offline)",
                   "Copy every endpoint (with its secrets, settings and counters) and every "
                   "capture (its bytes, seq and verdicts) from one database into another, an "
                   "SQLite file or a postgresql:// URL, either way; then compare the two, "
                   "endpoint by endpoint (counts, bytes and a sha256 over every capture). Run "
                   "again after an interruption, it continues where it stopped. Stop the "
                   "Hookscope that writes the source first. Exit 0 when the copy matches, 1 "
                   "when it differs (naming the endpoint) or stopped part way, 2 when it "
                   "cannot begin (nothing is written then).", offline=True)
    copy.add_argument("--from", dest="source", required=True, metavar="DB",
                      help="the database to copy: an SQLite file or a postgresql:// URL")
    copy.add_argument("--to", dest="destination", required=True, metavar="DB",
                      help="where to copy it: an SQLite file (made when missing) or a "
                           "postgresql:// URL of a database that exists")
    copy.add_argument("--batch", type=copydata.batch_size, default=500, metavar="N",
                      help="captures per transaction (default 500)")
    copy.add_argument("--verify-only", action="store_true",
                      help="copy nothing: only compare the destination with the source")


def _schema_commands(commands: argparse._SubParsersAction[_Parser], remote: _Parser,
                     as_json: _Parser) -> None:
    group = commands.add_parser(
        "schema", help="contracts from real traffic: infer, pin, drift, diff",
        description="Contracts from real traffic: a JSON Schema inferred from an endpoint's "
                    "captures, one sub-schema per event type; pinned as the endpoint's schema, "
                    "every later capture is validated against it. docs/contracts.md walks "
                    "through it.")
    group.set_defaults(run=lambda args: _usage(group))
    sub = group.add_subparsers(dest="schema_command", metavar="COMMAND")

    def from_traffic(name: str, run: Any, summary: str, description: str
                     ) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, parents=[remote, as_json], help=summary,
                                description=description)
        parser.add_argument("key", metavar="KEY", help=KEY_HELP)
        schema.add_inference_options(parser)
        parser.set_defaults(run=run)
        return parser

    infer = from_traffic(
        "infer", schema.infer, "print the contract inferred from traffic",
        "Infer a JSON Schema (2020-12) from the endpoint's newest captures and print it "
        "(--json: with the samples and groups it came from). What it was inferred from goes "
        "to stderr.")
    infer.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    pin = from_traffic(
        "pin", schema.pin, "make the inferred contract the endpoint's schema",
        "Infer the contract as `schema infer` does (or read --from FILE) and set it as the "
        "endpoint's schema: every capture from then on is validated against it, a deviation "
        "`invalid` with errors at the fields that changed. Exit 1 when no capture has a JSON "
        "document to infer from.")
    pin.add_argument("--from", dest="schema_file", metavar="FILE",
                     help="pin this JSON Schema file (- for stdin) instead of inferring")
    from_traffic(
        "drift", schema.drift, "compare the pinned contract with what traffic shows now",
        "Infer the contract from the endpoint's captures now (grouped as the pinned one is, "
        "unless --group-by says otherwise) and list what changed from the pinned contract, as "
        "`schema diff` does. Exit 0 when nothing breaks, 1 when something does, 2 when the "
        "endpoint has no pinned schema.")

    compare = sub.add_parser(
        "diff", parents=[as_json], help="list the changes between two schemas (offline)",
        description="Compare two JSON Schema files, offline, and list each change as breaking "
                    "(a payload OLD accepts may be refused by NEW: a required property removed, "
                    "a type changed or narrowed, an enum value removed, a property made "
                    "required) or additive (a new optional property, a type widened), at the "
                    "JSON pointer into the payload. Exit 0 when nothing breaks, 1 when "
                    "something does, 2 when a file cannot be read or is not a JSON Schema.")
    compare.add_argument("old", metavar="OLD", help="the schema before: a file, or - for stdin")
    compare.add_argument("new", metavar="NEW", help="the schema after: a file, or - for stdin")
    compare.set_defaults(run=schema.diff)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"a number of seconds, 0 or more, got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help(sys.stderr)
        return 2
    return int(args.run(args))


def _serve(args: argparse.Namespace) -> int:
    from hookscope.main import create_app
    from hookscope.server import build_server, listen, tune_process
    from hookscope.storage import (
        SchemaTooNew,
        StorageSettings,
        StoreLocked,
        check_usable,
        describe,
    )

    overrides = {f.name: getattr(args, f.name) for f in SETTINGS if f.metadata["cli"]}
    try:
        settings = Settings.from_env(**overrides)
        check_usable(StorageSettings.of(settings))
    except (SettingsError, StoreLocked, SchemaTooNew, OSError) as exc:
        print(f"hookscope: {exc}", file=sys.stderr)
        return 1
    warning = startup_warning(settings)
    if warning:
        print(f"hookscope: warning: {warning}", file=sys.stderr, flush=True)
    server = build_server(settings, create_app(settings))
    # Listening now makes the line below true at once: the kernel queues connections until the
    # event loop accepts them, so a client that reads the address can connect straight away.
    try:
        sock = listen(server.config, reuse_port=settings.reuse_port)
    except OSError as exc:
        print(f"hookscope: cannot listen on {_bracketed(settings.host)}:{settings.port}: {exc}",
              file=sys.stderr)
        return 1
    host, port = sock.getsockname()[:2]
    print(f"hookscope {__version__} listening on http://{_bracketed(host)}:{port} (database "
          f"{describe(settings.db)})", file=sys.stderr, flush=True)
    tune_process()
    server.run(sockets=[sock])
    return 0


def _bracketed(host: str) -> str:
    """A host as it goes before `:port`: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


def startup_warning(settings: Settings) -> str | None:
    """What an operator must hear before anything else: an open door."""
    if settings.token or _loopback(settings.host):
        return None
    return (f"listening on {settings.host} without HOOKSCOPE_TOKEN: anyone who can reach this "
            "address can read every capture and change every endpoint. Set HOOKSCOPE_TOKEN, or "
            "bind to 127.0.0.1.")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
