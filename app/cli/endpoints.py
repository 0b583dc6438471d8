"""`hookscope new` and `hookscope list`: endpoints."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hookscope.cli.base import OK, USAGE, Failed, remote
from hookscope.cli.client import Client
from hookscope.cli.output import Printer, local_time


def header_pair(text: str) -> tuple[str, str]:
    """'Name: value' -> (name, value), for the --header options."""
    name, colon, value = text.partition(":")
    if not colon or not name.strip():
        raise Failed(USAGE, f"a header is 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def _name_value(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name.strip():
        raise Failed(USAGE, f"a verify option is NAME=VALUE (e.g. header=x-signature), "
                            f"got {text!r}")
    return name.strip(), value


def _read_json_file(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise Failed(USAGE, f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise Failed(USAGE, f"{path} is not JSON: {exc}") from None


@dataclass(frozen=True)
class Option:
    """A `new` option: its flag, the endpoint field it sets (dotted: response.status), how the
    parsed argument becomes the value, and argparse's keywords (help, type, action...)."""

    flag: str
    field: str
    convert: Callable[[Any], Any] | None = None
    argparse: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")


def _option(flag: str, field: str, help: str, convert: Callable[[Any], Any] | None = None,
            **argparse: Any) -> Option:
    return Option(flag, field, convert, {"help": help, **argparse})


_REPEATED: dict[str, Any] = {"action": "append", "default": []}
# Every endpoint field the API takes (POST /api/endpoints), one flag each; the verify scheme's
# options share --verify-option. Only what is given is sent: the server's defaults do the rest.
OPTIONS = (
    _option("--name", "name", "free text label"),
    _option("--alias", "alias", "a slug usable instead of the token: [a-z0-9][a-z0-9_-]{2,63}"),
    _option("--verify", "verify.scheme", "signature scheme: github, stripe, standard-webhooks, "
            "svix, shopify, slack, avo, virtuoso, webengage, hmac, token, or auto",
            metavar="SCHEME"),
    _option("--secret", "verify.secrets", "a signing secret (repeat for key rotation: any one "
            "verifies)", **_REPEATED),
    _option("--tolerance", "verify.tolerance_seconds", "allowed clock skew in seconds for "
            "schemes that sign a timestamp (default 300)", type=int, metavar="SECONDS"),
    _option("--verify-option", "verify", "a scheme option, e.g. header=x-signature, "
            "algorithm=sha512, prefix=sha256= (hmac and token schemes; repeatable)",
            lambda texts: dict(_name_value(t) for t in texts), metavar="NAME=VALUE",
            **_REPEATED),
    _option("--format", "format", "payload format: auto (default), none, or a format id "
            "(`hookscope formats`)", metavar="ID"),
    _option("--schema", "schema", "validate with this JSON Schema file instead of a format",
            _read_json_file, metavar="FILE"),
    _option("--response-status", "response.status", "status the capture URL answers "
            "(200..599, default 200)", type=int, metavar="CODE"),
    _option("--response-header", "response.headers", "a header of the answer (repeatable)",
            lambda texts: dict(header_pair(t) for t in texts), metavar="'NAME: VALUE'",
            **_REPEATED),
    _option("--response-body", "response.body", 'body of the answer (default {"ok": true, '
            '"id": ...})', metavar="TEXT"),
    _option("--delay-ms", "response.delay_ms", "wait this long before answering (0..30000)",
            type=int, metavar="MS"),
    _option("--reject-bad-signature", "reject.bad_signature", "answer 401 when the signature "
            "fails or is missing", action="store_true"),
    _option("--reject-invalid-payload", "reject.invalid_payload", "answer 422 when the payload "
            "is invalid", action="store_true"),
    _option("--forward", "forward.url", "the server sends each capture on to this URL (its "
            "sub-path and query appended) and records each attempt", metavar="URL"),
    _option("--forward-timeout", "forward.timeout", "seconds for each forwarding attempt "
            "(default 10, at most 60)", type=float, metavar="SECONDS"),
    _option("--forward-retries", "forward.retries", "tries after the first when the target "
            "fails or answers 5xx (0..10, default 3)", type=int, metavar="N"),
    _option("--max-captures", "max_captures", "keep at most N captures, pruning the oldest",
            type=int, metavar="N"),
    _option("--max-bytes", "max_bytes", "keep at most N stored bytes (bodies, paths, queries "
            "and headers), pruning the oldest captures", type=int, metavar="N"),
    _option("--rate-limit", "rate_limit", "accept at most this many requests per second "
            "(0.5: one every 2 s); beyond it answer 429", type=float, metavar="PER_S"),
    _option("--expires-at", "expires_at", "after this moment the capture URL answers 410 "
            "(ISO 8601; UTC without an offset)", metavar="ISO8601"),
)


def endpoint_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The POST /api/endpoints body: only what was given, so the server's defaults apply."""
    fields: dict[str, Any] = {}
    for option in OPTIONS:
        value = getattr(args, option.dest)
        if value is None or value is False or value == []:
            continue
        if option.convert is not None:
            value = option.convert(value)
        *parents, leaf = option.field.split(".")
        target = fields
        for name in parents:
            target = target.setdefault(name, {})
        if isinstance(value, dict) and isinstance(target.get(leaf), dict):
            target[leaf].update(value)  # --verify-option joins --verify and --secret
        else:
            target[leaf] = value
    return fields


@remote
def new(args: argparse.Namespace, client: Client) -> int:
    endpoint = client.json("POST", "/api/endpoints", json=endpoint_fields(args))
    out = Printer(as_json=args.json)
    if out.as_json:
        out.json(endpoint)
    else:
        out.line(endpoint["url"])  # only the URL, so URL=$(hookscope new) just works
    return OK


@remote
def list_endpoints(args: argparse.Namespace, client: Client) -> int:
    reply = client.json("GET", "/api/endpoints", params={"limit": args.limit})
    out = Printer(as_json=args.json)
    if out.as_json:
        out.json(reply)
        return OK
    rows = [[e["token"], e["alias"] or "", e["name"] or "", str(e["capture_count"]),
             local_time(e["last_capture_at"], with_date=True), _checks(e)]
            for e in reply["endpoints"]]
    if not rows:
        out.line("no endpoints yet: `hookscope new` makes one")
        return OK
    out.table(["TOKEN", "ALIAS", "NAME", "CAPTURES", "LAST CAPTURE", "CHECKS"], rows)
    return OK


def _checks(endpoint: dict[str, Any]) -> str:
    verify = endpoint.get("verify")
    checks = [f"verify {verify['scheme']}"] if verify else []
    if endpoint.get("schema") is not None:
        checks.append("own schema")
    elif endpoint.get("format") != "none":
        checks.append(f"format {endpoint.get('format')}")
    return ", ".join(checks)
