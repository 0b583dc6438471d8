"""Slack: X-Slack-Signature `v0=<hex>` of `v0:{X-Slack-Request-Timestamp}:{body}`."""

from __future__ import annotations

from hookscope.verify.base import (
    Context,
    Scheme,
    SignedRequest,
    Verdict,
    after_match,
    failed,
    match_hmac,
    signature_from,
)


def check(request: SignedRequest, ctx: Context) -> Verdict:
    given = signature_from(request, "x-slack-signature", prefix="v0=")
    if isinstance(given, Verdict):
        return given
    stamp = request.header("x-slack-request-timestamp")
    if stamp is None:
        return failed("X-Slack-Request-Timestamp is missing")
    signed = f"v0:{stamp}:".encode("latin-1") + request.body
    index = match_hmac(ctx.secrets, [given], "sha256", signed)
    return after_match(index, ctx, stamp, header="X-Slack-Request-Timestamp")


SLACK = Scheme(
    id="slack",
    title="Slack",
    description="X-Slack-Signature: v0=<hex HMAC-SHA256 of v0:{timestamp}:{body}>, "
                "X-Slack-Request-Timestamp",
    headers=("x-slack-signature", "x-slack-request-timestamp"),
    check=check,
    timed=True,
    detect_headers=("x-slack-signature",),
)
