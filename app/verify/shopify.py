"""Shopify: X-Shopify-Hmac-Sha256, base64 HMAC-SHA256 of the body, no prefix."""

from __future__ import annotations

from app.verify.base import (
    Context,
    Scheme,
    SignedRequest,
    Verdict,
    digest,
    match,
    no_match,
    signature_from,
    utf8,
    verified,
)


def check(request: SignedRequest, ctx: Context) -> Verdict:
    given = signature_from(request, "x-shopify-hmac-sha256", encoding="base64")
    if isinstance(given, Verdict):
        return given
    index = match(ctx.secrets, [given], lambda s: digest("sha256", utf8(s), request.body))
    return no_match(ctx.secrets) if index is None else verified(index)


SHOPIFY = Scheme(
    id="shopify",
    title="Shopify",
    description="X-Shopify-Hmac-Sha256: base64 HMAC-SHA256 of the body",
    headers=("x-shopify-hmac-sha256",),
    check=check,
    detect_headers=("x-shopify-hmac-sha256",),
)
