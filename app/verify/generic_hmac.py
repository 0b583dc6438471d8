"""Generic HMAC, for senders with no named scheme (Flows, Paddle, Zoom, Linear, Typeform,
Calendly, Intercom...): choose the header, algorithm, encoding, prefix and what is signed."""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Mapping
from typing import Any

from hookscope.verify.base import (
    ALGORITHMS,
    CannotSign,
    Context,
    Option,
    Scheme,
    Signature,
    SignedRequest,
    Verdict,
    after_match,
    digest,
    encode,
    failed,
    match,
    no_match,
    signature_from,
    utf8,
    verified,
)

_PLACEHOLDER = re.compile(r"\{(body|timestamp|id)\}")
_ANY_PLACEHOLDER = re.compile(r"\{[^{}]*\}")

OPTIONS = (
    Option("header", "header that carries the signature", "x-signature"),
    Option("algorithm", "HMAC hash", "sha256", tuple(ALGORITHMS)),
    Option("encoding", "how the signature is written", "hex", ("hex", "base64")),
    Option("prefix", "text before the signature in the header, e.g. 'sha256='", ""),
    Option("template", "what is signed: {body}, {timestamp} and {id} are replaced", "{body}"),
    Option("timestamp_header", "header with the unix-seconds timestamp ({timestamp}); when set, "
                               "tolerance_seconds applies", None),
    Option("id_header", "header with the message id ({id})", None),
    Option("secret_encoding", "raw: the secret's UTF-8 bytes are the key; base64: decode it",
           "raw", ("raw", "base64")),
)
DEFAULTS = {o.name: o.default for o in OPTIONS}


def check_options(options: Mapping[str, Any]) -> list[tuple[str, str]]:
    problems = []
    template = options.get("template", DEFAULTS["template"])
    unknown = [p for p in _ANY_PLACEHOLDER.findall(template) if not _PLACEHOLDER.fullmatch(p)]
    if unknown:
        problems.append(("verify.template", f"unknown placeholder {unknown[0]}; use {{body}}, "
                                            "{timestamp} and {id}"))
    if "{body}" not in template:
        problems.append(("verify.template", "template must include {body}, or the signature "
                                            "would not cover the payload"))
    for placeholder, header in (("{timestamp}", "timestamp_header"), ("{id}", "id_header")):
        if placeholder in template and not options.get(header):
            problems.append((f"verify.{header}", f"the template uses {placeholder}, so "
                                                 f"{header} must name the header carrying it"))
        if options.get(header) and placeholder not in template:
            # A timestamp that is checked but not signed could be rewritten by anyone.
            problems.append(("verify.template", f"{header} is set, so the template must sign "
                                                 f"it with {placeholder}"))
    if not options.get("header", DEFAULTS["header"]):
        problems.append(("verify.header", "header must name the signature header"))
    return problems


def _signed_content(template: str, request: SignedRequest, values: dict[str, str]) -> bytes:
    parts = []
    for index, piece in enumerate(_PLACEHOLDER.split(template)):
        if index % 2 == 0:
            parts.append(piece.encode("utf-8"))
        elif piece == "body":
            parts.append(request.body)
        else:
            parts.append(values[piece].encode("latin-1"))
    return b"".join(parts)


def _key(secret: str, encoding: str) -> bytes | None:
    if encoding == "raw":
        return utf8(secret)
    try:
        return base64.b64decode(secret, validate=True)
    except (ValueError, binascii.Error):
        return None


def check(request: SignedRequest, ctx: Context) -> Verdict:
    options = {**DEFAULTS, **ctx.options}
    given = signature_from(request, options["header"], prefix=options["prefix"],
                           encoding=options["encoding"])
    if isinstance(given, Verdict):
        return given
    values = {}
    for name, option in (("timestamp", "timestamp_header"), ("id", "id_header")):
        if options[option]:
            found = request.header(options[option])
            if found is None:
                return failed(f"{options[option]} is missing")
            values[name] = found
    signed = _signed_content(options["template"], request, values)

    def expected(secret: str) -> bytes | None:
        key = _key(secret, options["secret_encoding"])
        return digest(options["algorithm"], key, signed) if key is not None else None

    index = match(ctx.secrets, [given], expected)
    if options["timestamp_header"]:
        return after_match(index, ctx, values["timestamp"], header=options["timestamp_header"])
    return no_match(ctx.secrets) if index is None else verified(index)


def sign(request: SignedRequest, secret: str, now: int, options: Mapping[str, Any]) -> Signature:
    """The signature header, the timestamp header set to `now` and the id header (the captured
    id kept, or a new one), as the options say."""
    options = {**DEFAULTS, **options}
    key = _key(secret, options["secret_encoding"])
    if key is None:
        raise CannotSign("secret_encoding is base64, and the secret is not base64")
    headers, values = [], {}
    if options["timestamp_header"]:
        values["timestamp"] = str(now)
        headers.append((options["timestamp_header"], values["timestamp"]))
    if options["id_header"]:
        values["id"] = request.header(options["id_header"]) or f"msg_{secrets.token_hex(12)}"
        headers.append((options["id_header"], values["id"]))
    mac = digest(options["algorithm"], key, _signed_content(options["template"], request, values))
    headers.insert(0, (options["header"], options["prefix"] + encode(mac, options["encoding"])))
    return Signature(tuple(headers))


HMAC = Scheme(
    id="hmac",
    title="Generic HMAC",
    description="any HMAC signature: header, algorithm, hex/base64, prefix and signed-content "
                "template are options",
    headers=(),
    check=check,
    sign=sign,
    options=OPTIONS,
    check_options=check_options,
)
