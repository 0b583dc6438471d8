"""One capture as a curl command or a HAR 1.2 log: pure functions of a Capture and the base URL
the API reports (so the capture URL is the one the user sent to). The JSON fixture is the
capture's full view (hookscope.routes.captures.full_view) marked `hookscope_fixture`.

The curl command reproduces the request byte for byte, which takes more than quoting:

- curl adds User-Agent and Accept (and, with a body, Content-Type and, past 1 MiB, Expect) of its
  own; `-H 'Name:'` suppresses each one the capture did not carry.
- Every header goes in its captured place, Content-Length too (stating the stored body's length),
  so curl adds no Content-Length of its own at the end.
- Accept-Encoding is sent as captured, with `--compressed` so that curl decodes the reply it asks
  for (without a captured Accept-Encoding, `--compressed` would add curl's own).
- `-g` stops curl globbing `[]`/`{}` in the URL and `--path-as-is` stops it squashing `/../`.
- The command is UTF-8 text. A header or URL whose raw bytes are not UTF-8 cannot be written as
  itself, so `printf` rebuilds those bytes from octal escapes.
- A body goes inline only when it is short UTF-8 text without control characters and does not
  start with `@` (which curl reads as a file name); anything else travels as base64 through
  `base64 -d` into `--data-binary @-`. Linux refuses a single argument over 128 KiB, hence the
  inline limit.
- Hop-by-hop headers (Connection, Transfer-Encoding, ...) belonged to the sender's connection and
  are left out, as in a replay; Host comes from the URL.
"""

from __future__ import annotations

import base64
import re
import shlex
from typing import Any
from urllib.parse import parse_qsl

from hookscope import __version__
from hookscope.models import Capture, body_fields, format_time

FORMATS = ("curl", "har", "json")
INLINE_BODY_LIMIT = 64 * 1024
CURL_DEFAULTS = ("User-Agent", "Accept")
CURL_BODY_DEFAULTS = ("Content-Type", "Expect")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def capture_url(capture: Capture, base_url: str) -> str:
    return base_url + capture.path + (f"?{capture.query}" if capture.query else "")


def _latin1(text: str) -> bytes:
    """Path, query, method and headers hold one character per byte received."""
    return text.encode("latin-1")


def _word(raw: bytes) -> str:
    """`raw` as one POSIX shell word in a UTF-8 command that yields exactly these bytes."""
    try:
        return shlex.quote(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return "\"$(printf '" + "".join(map(_printf_char, raw)) + "')\""


def _printf_char(byte: int) -> str:
    """One byte in a single-quoted printf format: itself when printable, else an octal escape."""
    return chr(byte) if 0x20 <= byte < 0x7f and chr(byte) not in "'\\%" else f"\\{byte:03o}"


def _inline_text(body: bytes) -> str | None:
    if len(body) > INLINE_BODY_LIMIT or body.startswith(b"@"):
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if _CONTROL.search(text) else text


def curl(capture: Capture, base_url: str) -> str:
    body = capture.body or b""
    headers = capture.resent_headers()
    sent = {name.lower() for name, _ in headers}
    url = base_url.encode("utf-8") + _latin1(capture_url(capture, ""))
    if capture.method == "HEAD" and not body:
        method = "-I"  # -X HEAD would wait for a body that never comes
    else:
        method = f"-X {_word(_latin1(capture.method))}"
    parts = [f"curl -sS -g --path-as-is {method} {_word(url)}"]
    if "accept-encoding" in sent:
        parts.append("--compressed")
    for name, value in headers:
        # curl drops a header given as "name:" and sends an empty one given as "name;".
        line = f"{name}: {value}" if value else f"{name};"
        parts.append(f"-H {_word(_latin1(line))}")
    defaults = CURL_DEFAULTS + (CURL_BODY_DEFAULTS if body else ())
    parts.extend(f"-H '{name}:'" for name in defaults if name.lower() not in sent)
    note = (f"# only the first {capture.body_size} bytes of this body were captured\n"
            if capture.truncated else "")
    if not body:
        return note + " \\\n  ".join(parts)
    text = _inline_text(body)
    if text is not None:
        parts.append(f"--data-binary {shlex.quote(text)}")
        return note + " \\\n  ".join(parts)
    parts.append("--data-binary @-")
    # In lines of 76, which base64 -d reads as one: a terminal pastes them without trouble.
    encoded = base64.encodebytes(body).decode("ascii").rstrip("\n")
    return f"{note}printf %s '{encoded}' | base64 -d | " + " \\\n  ".join(parts)


def har(capture: Capture, base_url: str) -> dict[str, Any]:
    """A HAR 1.2 log of one entry. Hookscope answered the request itself, so the response part is
    the status it sent and the timings are zero."""
    body = capture.body or b""
    request: dict[str, Any] = {
        "method": capture.method,
        "url": capture_url(capture, base_url),
        "httpVersion": "HTTP/1.1",
        "cookies": [],
        "headers": [{"name": name, "value": value} for name, value in capture.headers],
        "queryString": [{"name": name, "value": value}
                        for name, value in parse_qsl(capture.query, keep_blank_values=True)],
    }
    if body:
        fields = body_fields(body)
        request["postData"] = {"mimeType": capture.content_type or "",
                               "text": fields["body_text"]}
        if fields["body_text"] is None:
            request["postData"].update(text=fields["body_base64"], encoding="base64")
    request.update(headersSize=-1, bodySize=capture.body_size)
    return {"log": {
        "version": "1.2",
        "creator": {"name": "hookscope", "version": __version__},
        "entries": [{
            "startedDateTime": format_time(capture.received_at),
            "time": 0,
            "request": request,
            "response": {"status": capture.response_status, "statusText": "",
                         "httpVersion": "HTTP/1.1", "cookies": [], "headers": [],
                         "content": {"size": 0, "mimeType": ""}, "redirectURL": "",
                         "headersSize": -1, "bodySize": -1},
            "cache": {},
            "timings": {"send": 0, "wait": 0, "receive": 0},
        }],
    }}
