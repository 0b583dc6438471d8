"""Slack: X-Slack-Signature `v0=<hex>` of `v0:{X-Slack-Request-Timestamp}:{body}`."""

from __future__ import annotations

from app.verify.base import (
    Context,
    Scheme,
    SignedRequest,
    Verdict,
    after_match,
    decode_signature,
    digest,
    failed,
    match,
    missing,
    utf8,
)


def check(request: SignedRequest, ctx: Context) -> Verdict:
    value = request.header("x-slack-signature")
    if value is None:
        return missing("no X-Slack-Signature header")
    if not value.startswith("v0="):
        return failed("X-Slack-Signature should start with 'v0='")
    given = decode_signature(value[3:], "hex")
    if given is None:
        return failed("X-Slack-Signature is not v0=<hex>")
    stamp = request.header("x-slack-request-timestamp")
    if stamp is None:
        return failed("X-Slack-Request-Timestamp is missing")
    signed = f"v0:{stamp}:".encode("latin-1") + request.body
    index = match(ctx.secrets, [given], lambda s: digest("sha256", utf8(s), signed))
    return after_match(index, ctx, stamp, header="X-Slack-Request-Timestamp")


SLACK = Scheme(
    id="slack",
    title="Slack",
    description="X-Slack-Signature: v0=<hex HMAC-SHA256 of v0:{timestamp}:{body}>, "
                "X-Slack-Request-Timestamp",
    headers=("x-slack-signature", "x-slack-request-timestamp"),
    check=check,
    timed=True,
    detect=lambda r: r.header("x-slack-signature") is not None,
)
