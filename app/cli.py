"""The `hookscope` command. Exit codes: 0 success, 1 failure, 2 usage error."""

from __future__ import annotations

import argparse
import gc
import ipaddress
import logging
import sys
from collections.abc import Sequence

from app import __version__
from app.settings import SETTINGS, Settings, SettingsError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hookscope", description="Self-hosted webhook inspector.")
    parser.add_argument("--version", action="version", version=f"hookscope {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser(
        "serve", help="run the server",
        description="Run the Hookscope server. Flags override the HOOKSCOPE_* environment "
                    "variables; see the README for every setting.")
    for f in SETTINGS:
        flag = f.metadata["cli"]
        if flag:
            kind = int if isinstance(f.default, int) else str
            serve.add_argument(flag, dest=f.name, type=kind, default=None,
                               help=f"{f.metadata['help']} [env {f.metadata['env']}, "
                                    f"default {f.default!r}]")
    serve.set_defaults(run=_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help(sys.stderr)
        return 2
    return int(args.run(args))


def _serve(args: argparse.Namespace) -> int:
    from app.migrations import SchemaTooNew
    from app.server import build_server
    from app.store import StoreLocked, check_writable

    overrides = {f.name: getattr(args, f.name) for f in SETTINGS if f.metadata["cli"]}
    try:
        settings = Settings.from_env(**overrides)
        check_writable(settings.db)
    except (SettingsError, StoreLocked, SchemaTooNew, OSError) as exc:
        print(f"hookscope: {exc}", file=sys.stderr)
        return 1
    warning = startup_warning(settings)
    if warning:
        print(f"hookscope: warning: {warning}", file=sys.stderr, flush=True)
    server = build_server(settings)
    config = server.config
    logging.getLogger("uvicorn.error").setLevel(settings.log_level.upper())
    sock = config.bind_socket()
    # Listening now makes the line below true at once: the kernel queues connections until the
    # event loop accepts them, so a client that reads the address can connect straight away.
    sock.listen(config.backlog)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"hookscope {__version__} listening on http://{shown}:{port} (database {settings.db})",
          file=sys.stderr, flush=True)
    # The writer thread shares the GIL with the event loop; a shorter switch interval than
    # Python's 5 ms keeps the loop from waiting that long for it (measured in bench/stream).
    sys.setswitchinterval(0.0005)
    # The ~40,000 objects of the loaded app (modules, compiled format schemas) live as long as
    # the process: out of the collector's sight, each full collection has that much less to
    # scan while captures wait (bench/stream).
    gc.collect()
    gc.freeze()
    server.run(sockets=[sock])
    return 0


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
