"""GitHub: X-Hub-Signature-256 `sha256=<hex>` of the body (legacy X-Hub-Signature, `sha1=`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hookscope.verify.base import (
    Context,
    Scheme,
    Signature,
    SignedRequest,
    Verdict,
    digest,
    match_hmac,
    missing,
    no_match,
    signature_from,
    utf8,
    verified,
)

# (header, algorithm, prefix), the newer first.
_HEADERS = (("x-hub-signature-256", "sha256", "sha256="), ("x-hub-signature", "sha1", "sha1="))
_NAMES = {"x-hub-signature-256": "X-Hub-Signature-256", "x-hub-signature": "X-Hub-Signature"}


def check(request: SignedRequest, ctx: Context) -> Verdict:
    for header, algorithm, prefix in _HEADERS:
        if request.header(header) is None:
            continue
        given = signature_from(request, header, prefix=prefix)
        if isinstance(given, Verdict):
            return given
        index = match_hmac(ctx.secrets, [given], algorithm, request.body)
        return no_match(ctx.secrets) if index is None else verified(index)
    return missing("no X-Hub-Signature-256 or X-Hub-Signature header")


def sign(request: SignedRequest, secret: str, now: int, options: Mapping[str, Any]) -> Signature:
    """X-Hub-Signature-256 always; the legacy SHA-1 header too when the request carried one."""
    return Signature(tuple(
        (_NAMES[header], prefix + digest(algorithm, utf8(secret), request.body).hex())
        for header, algorithm, prefix in _HEADERS
        if header == "x-hub-signature-256" or request.header(header) is not None))


GITHUB = Scheme(
    id="github",
    title="GitHub",
    description="X-Hub-Signature-256: sha256=<hex HMAC of the body> (legacy X-Hub-Signature: "
                "sha1=); GitLab's X-Gitlab-Token is the `token` scheme",
    headers=("x-hub-signature-256", "x-hub-signature"),
    check=check,
    sign=sign,
    detect_headers=("x-hub-signature-256", "x-hub-signature"),
)
