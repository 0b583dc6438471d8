"""Stripe: `Stripe-Signature: t=<ts>,v1=<sig>[,v1=...][,v0=...]`, HMAC-SHA256 hex of
`{t}.{body}`. Only v1 entries count. The key is the whole secret string, `whsec_` included, as
UTF-8 (unlike Standard Webhooks, nothing is base64-decoded)."""

from __future__ import annotations

from hookscope.verify.base import (
    Context,
    Scheme,
    SignedRequest,
    Verdict,
    after_match,
    decode_signature,
    failed,
    match_hmac,
    missing,
)


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
    signed = f"{stamp}.".encode("latin-1") + request.body
    index = match_hmac(ctx.secrets, given, "sha256", signed)
    return after_match(index, ctx, stamp, header="Stripe-Signature t")


STRIPE = Scheme(
    id="stripe",
    title="Stripe",
    description="Stripe-Signature: t=<ts>,v1=<hex HMAC-SHA256 of {t}.{body}>; the secret is "
                "used whole, whsec_ included",
    headers=("stripe-signature",),
    check=check,
    timed=True,
    detect_headers=("stripe-signature",),
)
