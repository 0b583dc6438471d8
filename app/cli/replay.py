"""`hookscope replay`: send a capture again, to any URL.

A capture id asks the server to send it (POST /api/captures/{id}/replay). A file exported with
`hookscope export ID --as json` is sent from here instead, the same way the server would (the
recorded headers in order, minus those that belong to one connection; the raw body), so a
fixture kept in a repository can be replayed without the server that captured it. Both print
the same reply shape.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from hookscope.cli.base import FAILED, OK, USAGE, Failed, remote, warn
from hookscope.cli.client import Client, segment
from hookscope.cli.endpoints import header_pair
from hookscope.cli.fixture import read_payload
from hookscope.cli.output import Printer, safe

if TYPE_CHECKING:
    from hookscope.ops.replay import ReplayOptions


def overrides(args: argparse.Namespace) -> dict[str, str | None]:
    """--header sets (or replaces) a header, --remove-header drops one (null in the API)."""
    changes: dict[str, str | None] = dict(header_pair(h) for h in args.header)
    changes.update((name, None) for name in args.remove_header)
    return changes


@remote
def resend(args: argparse.Namespace, client: Client) -> int:
    # The server's own checks and replay code, imported here: they bring jsonschema along,
    # which every other command would otherwise pay for at start.
    from hookscope.errors import ApiError
    from hookscope.ops.replay import MAX_RESPONSE_BODY, check_replay_fields

    body: dict[str, Any] = {"url": args.to}
    if args.header or args.remove_header:
        body["headers"] = overrides(args)
    if args.timeout is not None:
        body["timeout"] = args.timeout
    try:  # checked here as the server checks it, so a mistake is named even without a server
        options = check_replay_fields(body)
    except ApiError as exc:
        raise Failed(USAGE, "; ".join(d["message"] for d in exc.details) or exc.message
                     ) from None
    if args.id == "-" or Path(args.id).is_file():
        reply = replay_file(args.id, options)
    else:
        reply = client.json("POST", f"/api/captures/{segment(args.id)}/replay", json=body,
                            read_timeout=options.timeout + 30)
    out = Printer(as_json=args.json)
    response = reply["response"]
    if out.as_json:
        out.json(reply)
    else:
        ok = 200 <= response["status"] < 300
        out.line(f"{reply['request']['method']} {reply['request']['url']} -> "
                 f"{out.paint(str(response['status']), 'green' if ok else 'red')} "
                 f"in {reply['elapsed_ms']:.1f} ms")
        for name, value in response["headers"]:
            out.line(f"  {out.paint(safe(name), 'dim')}: {safe(value)}")
        if response.get("body_text"):
            out.line()
            out.line(safe(response["body_text"]))
        elif response.get("body_size"):
            out.line(f"\n  ({response['body_size']} bytes, not text)")
        if response.get("truncated"):
            out.line(out.paint(f"  (body cut at {MAX_RESPONSE_BODY // 1024} KiB)", "yellow"))
    if not 200 <= response["status"] < 300:
        warn(f"the target answered {response['status']}, not 2xx")
        return FAILED
    return OK


def replay_file(name: str, options: ReplayOptions) -> dict[str, Any]:
    """Send an exported capture from this process, with the server's own replay code (same
    headers, same limits, same reply shape)."""
    from hookscope.errors import ApiError
    from hookscope.ops.replay import TargetPolicy, replay

    # Sent from the user's own machine, where anything it can reach is theirs to send to: the
    # server's policy guards the server's network from its API's users.
    anywhere = TargetPolicy(server_on_loopback=True, allow=("0.0.0.0/0", "::/0"))

    payload = read_payload(name)
    if payload.fixture is None:
        raise Failed(USAGE, f"{name} is not a Hookscope export (`hookscope export ID --as json` "
                            "makes one); to replay a capture on the server, give its id")
    try:
        return anyio.run(replay, payload.as_capture(), options, anywhere)
    except ApiError as exc:  # 502 unreachable, 504 too slow: what the target did
        raise Failed(FAILED, exc.message) from None
