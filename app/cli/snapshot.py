"""`hookscope snapshot`: an endpoint's captures as fixture files to commit beside a receiver's
tests, one per event type and shape (hookscope.ops.snapshot chooses them and names the files).

Each file is the capture's JSON export (`GET /api/captures/{id}/export?as=json`, the format
`hookscope replay FILE`, `hookscope validate FILE` and the pytest plugin's `fixtures()` read),
indented for a readable diff in review; its body_text or body_base64 holds the exact bytes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from hookscope.cli.base import FAILED, OK, USAGE, Failed, remote, warn
from hookscope.cli.captures import endpoint_key
from hookscope.cli.client import Client, segment
from hookscope.cli.output import Printer, safe

DEFAULT_LIMIT = 1000
PAGE = 1000  # the API's largest page


def group_by(text: str) -> str:
    from hookscope.ops.groups import check

    try:
        return check(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a whole number, 1 or more, got {text!r}")
    return int(text)


def recent(client: Client, key: str, limit: int) -> list[dict[str, Any]]:
    """Summaries of the newest `limit` captures, oldest first."""
    found: list[dict[str, Any]] = []
    before = None
    while len(found) < limit:
        params: dict[str, Any] = {"limit": min(PAGE, limit - len(found))}
        if before is not None:
            params["before"] = before
        page = client.json("GET", f"/api/endpoints/{key}/captures", params=params)
        if not page["captures"]:
            break
        found += page["captures"]
        before = page["next_before"]
    return found[::-1]


def render(export: dict[str, Any]) -> bytes:
    # A lone surrogate (a JSON body may escape one: "\\ud800") goes back to that escape.
    return (json.dumps(export, indent=2, ensure_ascii=False) + "\n").encode("utf-8",
                                                                     "backslashreplace")


@remote
def snapshot(args: argparse.Namespace, client: Client) -> int:
    from hookscope.ops.snapshot import choose

    key = endpoint_key(args.key)
    summaries = recent(client, key, args.limit)
    exports = []
    for summary in summaries:
        if summary["truncated"]:
            warn(f"#{summary['seq']} ({summary['id']}) is left out: its body was cut at the size "
                 "limit, so it is not the request that was sent")
            continue
        exports.append(client.json("GET", f"/api/captures/{segment(summary['id'])}/export",
                                   params={"as": "json"}))
    if not exports:
        raise Failed(FAILED, f"nothing to snapshot: {args.key} has no "
                             f"{'whole ' if summaries else ''}captures")
    grouping, chosen = choose(exports, args.group_by, args.per_group)
    out_dir = Path(args.out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Failed(USAGE, f"cannot make {out_dir}: {exc.strerror or exc}") from None
    written = []
    for item in chosen:
        path = out_dir / item.file_name
        content = render(item.capture)
        try:
            changed = not path.is_file() or path.read_bytes() != content
            if changed:
                path.write_bytes(content)
        except OSError as exc:
            raise Failed(USAGE, f"cannot write {path}: {exc.strerror or exc}") from None
        signature = item.capture["signature"]
        if signature.get("scheme") == "token" and signature.get("status") == "verified":
            warn(f"{path} holds the endpoint's shared token in clear (scheme token): replace it "
                 "before committing the file, and re-sign with a test token when delivering")
        elif held := _credentials(item.capture["headers"]):
            warn(f"{path} holds {', '.join(held)}, which may be a live credential: look before "
                 "committing the file")
        written.append({"file": str(path), "group": item.group, "seq": item.capture["seq"],
                        "id": item.capture["id"], "changed": changed})
    out = Printer(as_json=args.json)
    groups_seen = len({item.group for item in chosen})
    if out.as_json:
        out.json({"group_by": grouping, "captures_read": len(exports), "groups": groups_seen,
                  "fixtures": written})
        return OK
    for entry in written:
        state = "wrote" if entry["changed"] else "same "
        out.line(safe(f"{state} {entry['file']}  (#{entry['seq']}, group {entry['group']})"))
    out.line(f"{len(written)} fixture{'s' * (len(written) != 1)} of {len(exports)} "
             f"capture{'s' * (len(exports) != 1)} in {groups_seen} "
             f"group{'s' * (groups_seen != 1)} (grouped by {grouping})")
    return OK


# Headers that carry a credential itself rather than a signature made with one.
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key",
                                 "api-key", "x-auth-token", "x-gitlab-token", "x-webhook-token"})


def _credentials(headers: list[list[str]]) -> list[str]:
    """The names of `headers` that may hold a credential in clear, as sent."""
    return sorted({name for name, _ in headers
                   if name.lower() in _CREDENTIAL_HEADERS or name.lower().endswith("-token")})
