"""Slack: X-Slack-Signature `v0=<hex>` of `v0:{X-Slack-Request-Timestamp}:{body}`."""

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
    digest,
    failed,
    match_hmac,
    signature_from,
    utf8,
)


def _signed(stamp: str, body: bytes) -> bytes:
    return f"v0:{stamp}:".encode("latin-1") + body


def check(request: SignedRequest, ctx: Context) -> Verdict:
    given = signature_from(request, "x-slack-signature", prefix="v0=")
    if isinstance(given, Verdict):
        return given
    stamp = request.header("x-slack-request-timestamp")
    if stamp is None:
        return failed("X-Slack-Request-Timestamp is missing")
    index = match_hmac(ctx.secrets, [given], "sha256", _signed(stamp, request.body))
    return after_match(index, ctx, stamp, header="X-Slack-Request-Timestamp")


def sign(request: SignedRequest, secret: str, now: int, options: Mapping[str, Any]) -> Signature:
    mac = digest("sha256", utf8(secret), _signed(str(now), request.body)).hex()
    return Signature((("X-Slack-Signature", f"v0={mac}"), ("X-Slack-Request-Timestamp", str(now))))


SLACK = Scheme(
    id="slack",
    title="Slack",
    description="X-Slack-Signature: v0=<hex HMAC-SHA256 of v0:{timestamp}:{body}>, "
                "X-Slack-Request-Timestamp",
    headers=("x-slack-signature", "x-slack-request-timestamp"),
    check=check,
    sign=sign,
    timed=True,
    detect_headers=("x-slack-signature",),
)
