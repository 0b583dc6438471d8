"""`hookscope replay`: send a capture again, to any URL.

A capture id asks the server to send it (POST /api/captures/{id}/replay). A file exported with
`hookscope export ID --as json` is sent from here instead, the same way the server would (the
recorded headers in order, minus those that belong to one connection; the raw body), so a
fixture kept in a repository can be replayed without the server that captured it. Both print
the same reply shape.
"""

from __future__ import annotations

import argparse
import base64
import time
from pathlib import Path
from typing import Any

import httpx

from app.client import Client, segment
from app.commands import FAILED, OK, USAGE, Failed, remote, warn
from app.commands.endpoints import header_pair
from app.commands.fixture import read_payload
from app.commands.output import Printer, safe

DEFAULT_TIMEOUT_S = 10.0
MAX_TIMEOUT_S = 60.0
KEPT_BODY = 256 * 1024
# Per connection, or recomputed for the new request (RFC 9110 7.6.1).
NOT_REPLAYED = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer",
                          "transfer-encoding", "upgrade", "host", "content-length"})


def overrides(args: argparse.Namespace) -> dict[str, str | None]:
    """--header sets (or replaces) a header, --remove-header drops one (null in the API)."""
    changes: dict[str, str | None] = dict(header_pair(h) for h in args.header)
    changes.update((name, None) for name in args.remove_header)
    return changes


@remote
def replay(args: argparse.Namespace, client: Client) -> int:
    if not args.to.startswith(("http://", "https://")):
        raise Failed(USAGE, f"--to must be an http:// or https:// URL, got {args.to!r}")
    if args.id == "-" or Path(args.id).is_file():
        reply = replay_file(args.id, args.to, overrides(args), args.timeout or DEFAULT_TIMEOUT_S)
    else:
        body: dict[str, Any] = {"url": args.to}
        if args.header or args.remove_header:
            body["headers"] = overrides(args)
        if args.timeout is not None:
            body["timeout"] = args.timeout
        reply = client.json("POST", f"/api/captures/{segment(args.id)}/replay", json=body,
                            read_timeout=(args.timeout or DEFAULT_TIMEOUT_S) + 30)
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
            out.line(out.paint(f"  (body cut at {KEPT_BODY // 1024} KiB)", "yellow"))
    if not 200 <= response["status"] < 300:
        warn(f"the target answered {response['status']}, not 2xx")
        return FAILED
    return OK


def replay_file(name: str, url: str, changes: dict[str, str | None],
                timeout: float) -> dict[str, Any]:
    """Send an exported capture to `url` from this process; the server's reply shape."""
    payload = read_payload(name)
    if payload.fixture is None:
        raise Failed(USAGE, f"{name} is not a Hookscope export (`hookscope export ID --as json` "
                            "makes one); to replay a capture on the server, give its id")
    lowered = {k.lower(): v for k, v in changes.items()}
    headers = [(k, v) for k, v in payload.headers
               if k.lower() not in NOT_REPLAYED and k.lower() not in lowered]
    headers += [(k, v) for k, v in changes.items() if v is not None]
    with httpx.Client(timeout=timeout, follow_redirects=False) as http:
        request = http.build_request(payload.fixture.get("method") or "POST", url,
                                     headers=headers, content=payload.body)
        # httpx adds headers of its own (User-Agent, Accept, Connection...): only the recorded
        # ones go, plus Host and Content-Length as httpx computed them for this URL and body.
        sent = {k.lower() for k, _ in headers} | {"host", "content-length"}
        for header in list(request.headers):
            if header.lower() not in sent:
                del request.headers[header]
        started = time.perf_counter()
        try:
            response = http.send(request, stream=True)
            try:
                received = bytearray()
                for chunk in response.iter_bytes():
                    received += chunk
                    if len(received) > KEPT_BODY:
                        break
                body = bytes(received)
            finally:
                response.close()
        except httpx.TimeoutException:
            raise Failed(FAILED, f"{url} did not answer within {timeout:g} s") from None
        except httpx.TransportError as exc:
            raise Failed(FAILED, f"could not reach {url}: {exc}") from None
        elapsed = (time.perf_counter() - started) * 1000
    return {
        "capture": payload.fixture.get("id"),
        "request": {"method": request.method, "url": str(request.url),
                    "headers": [[k, v] for k, v in request.headers.multi_items()]},
        "response": {"status": response.status_code,
                     "headers": [[k, v] for k, v in response.headers.multi_items()],
                     **_body_json(body[:KEPT_BODY]), "truncated": len(body) > KEPT_BODY},
        "elapsed_ms": round(elapsed, 1),
    }


def _body_json(body: bytes) -> dict[str, Any]:
    try:
        return {"body_text": body.decode("utf-8"), "body_base64": None, "body_size": len(body)}
    except UnicodeDecodeError:
        return {"body_text": None, "body_base64": base64.b64encode(body).decode("ascii"),
                "body_size": len(body)}
