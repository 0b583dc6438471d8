"""The client commands of `hookscope` (cli/__init__.py maps the arguments onto them).

Exit codes are part of the interface, documented in docs/cli.md and stable:

    0  success
    1  something failed: an expectation or a validation (the output names the field and why),
       a replay target that answered non-2xx or could not be reached, a server error (5xx)
    2  usage: bad arguments, or Hookscope refused the request as given (4xx: unknown
       endpoint or capture, invalid field, alias taken, ...)
    3  timeout: nothing arrived in time
    4  Hookscope itself is unreachable (no HTTP answer)

Every failure is turned into its message and code here, in `remote`, so a command only raises.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable

from hookscope.cli.client import Client, Refused, Unreachable, server_url

OK = 0
FAILED = 1
USAGE = 2
TIMEOUT = 3
UNREACHABLE = 4
INTERRUPTED = 130  # Ctrl-C, as a shell reports a process that SIGINT ended


class Failed(Exception):
    """Ends a command with `code`; `message` goes to stderr."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def warn(message: str) -> None:
    print(f"hookscope: {message}", file=sys.stderr, flush=True)


def refused_code(exc: Refused) -> int:
    return USAGE if 400 <= exc.status < 500 else FAILED


def report_refusal(exc: Refused) -> None:
    warn(str(exc))
    for detail in exc.details:
        # Each problem on its own line, unless the message already says it all.
        if (isinstance(detail, dict) and detail.get("message")
                and (len(exc.details) > 1 or str(detail["message"]) not in exc.message)):
            where = detail.get("field") or detail.get("path")
            print(f"  {where}: {detail['message']}" if where else f"  {detail['message']}",
                  file=sys.stderr)
    if exc.status == 401:
        hint = "is wrong" if os.environ.get("HOOKSCOPE_TOKEN") else "is not set"
        print(f"  this server needs its token: HOOKSCOPE_TOKEN {hint}", file=sys.stderr)


def run(command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command, turning each way it can fail into its message and exit code."""
    try:
        return command(args)
    except Failed as exc:
        if exc.message:
            warn(exc.message)
        return exc.code
    except Unreachable as exc:
        warn(str(exc))
        return UNREACHABLE
    except Refused as exc:
        report_refusal(exc)
        return refused_code(exc)
    except KeyboardInterrupt:
        return INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`hookscope tail KEY | head -3`): not an error of ours. Point
        # stdout at /dev/null so the interpreter's final flush does not complain again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return OK


def local(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A command that needs no server."""

    @functools.wraps(command)
    def entry(args: argparse.Namespace) -> int:
        return run(command, args)

    return entry


def remote(command: Callable[[argparse.Namespace, Client], int]
           ) -> Callable[[argparse.Namespace], int]:
    """A command that talks to the server given by --server / HOOKSCOPE_URL."""

    def with_client(args: argparse.Namespace) -> int:
        client = Client(server_url(args.server))
        try:
            return command(args, client)
        finally:
            client.close()

    @functools.wraps(command)
    def entry(args: argparse.Namespace) -> int:
        return run(with_client, args)

    return entry
