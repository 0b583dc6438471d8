"""Standard Webhooks (standardwebhooks.com) and Svix, which signs the same way under svix-*.

Signed content `{id}.{timestamp}.{body}`, HMAC-SHA256, base64; the signature header is a
space-separated list of `v1,<sig>` items and any match passes. The secret is `whsec_` + base64:
the key is the DECODED bytes (a secret without the prefix is decoded too, as the official
library does).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Mapping
from typing import Any

from hookscope.verify.base import (
    CannotSign,
    Check,
    Context,
    Scheme,
    Sign,
    Signature,
    SignedRequest,
    Verdict,
    after_match,
    decode_signature,
    digest,
    encode,
    failed,
    match,
    missing,
)


def _key(secret: str) -> bytes | None:
    raw = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True) or None
    except (ValueError, binascii.Error):
        return None


def _signed(msg_id: str, stamp: str, body: bytes) -> bytes:
    return f"{msg_id}.{stamp}.".encode("latin-1") + body


def _names(prefix: str) -> tuple[str, str, str]:
    return f"{prefix}-id", f"{prefix}-timestamp", f"{prefix}-signature"


def _checker(prefix: str) -> Check:
    id_header, ts_header, sig_header = _names(prefix)

    def check(request: SignedRequest, ctx: Context) -> Verdict:
        header = request.header(sig_header)
        if header is None:
            return missing(f"no {sig_header} header")
        msg_id, stamp = request.header(id_header), request.header(ts_header)
        if msg_id is None or stamp is None:
            absent = id_header if msg_id is None else ts_header
            return failed(f"{sig_header} is present but {absent} is missing")
        given = []
        for item in header.split():
            version, _, value = item.partition(",")
            if version == "v1":
                decoded = decode_signature(value, "base64")
                if decoded is not None:
                    given.append(decoded)
        if not given:
            return failed(f"{sig_header} holds no v1 signature in base64 (v1a, Ed25519, is not "
                          "supported)")
        if not any(_key(s) for s in ctx.secrets):
            return failed("no secret is valid base64 (expected whsec_ followed by base64)")
        signed = _signed(msg_id, stamp, request.body)

        def expected(secret: str) -> bytes | None:
            key = _key(secret)
            return digest("sha256", key, signed) if key else None

        return after_match(match(ctx.secrets, given, expected), ctx, stamp, header=ts_header)

    return check


def _signer(prefix: str, title: str) -> Sign:
    id_header, ts_header, sig_header = _names(prefix)

    def sign(request: SignedRequest, secret: str, now: int,
             options: Mapping[str, Any]) -> Signature:
        """The captured message id is kept (receivers deduplicate on it); a capture without
        one gets a new id."""
        key = _key(secret)
        if key is None:
            raise CannotSign(f"{title} secrets are whsec_ followed by base64, and this one is "
                             "not")
        msg_id = request.header(id_header) or f"msg_{secrets.token_hex(12)}"
        mac = digest("sha256", key, _signed(msg_id, str(now), request.body))
        return Signature(((id_header, msg_id), (ts_header, str(now)),
                          (sig_header, f"v1,{encode(mac, 'base64')}")))

    return sign


STANDARD_WEBHOOKS = Scheme(
    id="standard-webhooks",
    title="Standard Webhooks",
    description="webhook-id/-timestamp/-signature; HMAC-SHA256 over {id}.{timestamp}.{body}, "
                "base64, v1 list; secret whsec_<base64>",
    headers=("webhook-id", "webhook-timestamp", "webhook-signature"),
    check=_checker("webhook"),
    sign=_signer("webhook", "Standard Webhooks"),
    timed=True,
    detect_headers=("webhook-signature",),
)

SVIX = Scheme(
    id="svix",
    title="Svix",
    description="svix-id/-timestamp/-signature, signed exactly like Standard Webhooks",
    headers=("svix-id", "svix-timestamp", "svix-signature"),
    check=_checker("svix"),
    sign=_signer("svix", "Svix"),
    timed=True,
    detect_headers=("svix-signature",),
)
