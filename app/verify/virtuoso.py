"""Virtuoso: X-Virtuoso-Signature `sha1=<hex>` HMAC-SHA1 of the body.

A form-encoded delivery carries the JSON in the `payload` field; what is signed there is not
documented, so the raw body is tried first, then the `payload` value (only when it is the form's
single field).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from hookscope.ingest.parse import media_type
from hookscope.verify.base import (
    Context,
    Scheme,
    Signature,
    SignedRequest,
    Verdict,
    digest,
    match_hmac,
    no_match,
    signature_from,
    utf8,
    verified,
)


def _candidates(request: SignedRequest) -> list[bytes]:
    contents = [request.body]
    if media_type(request.content_type) == "application/x-www-form-urlencoded":
        try:
            fields = parse_qsl(request.body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            fields = []
        # Only a form whose one field is `payload`: otherwise unsigned fields could ride along.
        if len(fields) == 1 and fields[0][0] == "payload":
            contents.append(fields[0][1].encode("utf-8"))
    return contents


def check(request: SignedRequest, ctx: Context) -> Verdict:
    given = signature_from(request, "x-virtuoso-signature", prefix="sha1=")
    if isinstance(given, Verdict):
        return given
    for content in _candidates(request):
        index = match_hmac(ctx.secrets, [given], "sha1", content)
        if index is not None:
            return verified(index)
    return no_match(ctx.secrets)


def sign(request: SignedRequest, secret: str, now: int, options: Mapping[str, Any]) -> Signature:
    """Of the raw body, the one content whose signing is documented."""
    mac = digest("sha1", utf8(secret), request.body).hex()
    return Signature((("X-Virtuoso-Signature", f"sha1={mac}"),))


VIRTUOSO = Scheme(
    id="virtuoso",
    title="Virtuoso",
    description="X-Virtuoso-Signature: sha1=<hex HMAC-SHA1 of the body>; form deliveries also "
                "try the payload field",
    headers=("x-virtuoso-signature",),
    check=check,
    sign=sign,
    detect_headers=("x-virtuoso-signature",),
)
