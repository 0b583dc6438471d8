"""Stripe: `Stripe-Signature: t=<ts>,v1=<sig>[,v1=...][,v0=...]`, HMAC-SHA256 hex of
`{t}.{body}`. Only v1 entries count. The key is the whole secret string, `whsec_` included, as
UTF-8 (unlike Standard Webhooks, nothing is base64-decoded)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hookscope.verify.base import (
    Context,
    Scheme,
    Signature,
    SignedRequest,
    Verdict,
    after_match,
    decode_signature,
    digest,
    failed,
    match_hmac,
    missing,
    utf8,
)


def _signed(stamp: str, body: bytes) -> bytes:
    return f"{stamp}.".encode("latin-1") + body


def check(request: SignedRequest, ctx: Context) -> Verdict:
    header = request.header("stripe-signature")
    if header is None:
        return missing("no Stripe-Signature header")
    stamp = None
    given = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and stamp is None:
            stamp = value
        elif key == "v1":
            decoded = decode_signature(value, "hex")
            if decoded is not None:
                given.append(decoded)
    if stamp is None:
        return failed("Stripe-Signature has no t=<timestamp>")
    if not given:
        return failed("Stripe-Signature has no v1=<hex> signature (v0 entries are ignored)")
    index = match_hmac(ctx.secrets, given, "sha256", _signed(stamp, request.body))
    return after_match(index, ctx, stamp, header="Stripe-Signature t")


def sign(request: SignedRequest, secret: str, now: int, options: Mapping[str, Any]) -> Signature:
    """One v1 signature at `now`, as Stripe sends it (the v0 entries of a capture go)."""
    mac = digest("sha256", utf8(secret), _signed(str(now), request.body)).hex()
    return Signature((("Stripe-Signature", f"t={now},v1={mac}"),))


STRIPE = Scheme(
    id="stripe",
    title="Stripe",
    description="Stripe-Signature: t=<ts>,v1=<hex HMAC-SHA256 of {t}.{body}>; the secret is "
                "used whole, whsec_ included",
    headers=("stripe-signature",),
    check=check,
    sign=sign,
    timed=True,
    detect_headers=("stripe-signature",),
)
