"""Shopify: X-Shopify-Hmac-Sha256, base64 HMAC-SHA256 of the body, no prefix."""

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
    encode,
    match_hmac,
    no_match,
    signature_from,
    utf8,
    verified,
)


def check(request: SignedRequest, ctx: Context) -> Verdict:
    given = signature_from(request, "x-shopify-hmac-sha256", encoding="base64")
    if isinstance(given, Verdict):
        return given
    index = match_hmac(ctx.secrets, [given], "sha256", request.body)
    return no_match(ctx.secrets) if index is None else verified(index)


def sign(request: SignedRequest, secret: str, now: int, options: Mapping[str, Any]) -> Signature:
    mac = digest("sha256", utf8(secret), request.body)
    return Signature((("X-Shopify-Hmac-Sha256", encode(mac, "base64")),))


SHOPIFY = Scheme(
    id="shopify",
    title="Shopify",
    description="X-Shopify-Hmac-Sha256: base64 HMAC-SHA256 of the body",
    headers=("x-shopify-hmac-sha256",),
    check=check,
    sign=sign,
    detect_headers=("x-shopify-hmac-sha256",),
)
