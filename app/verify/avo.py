"""Avo: `Authorization: Bearer <JWT>`, HS256 over `header.payload`, `iat` within the tolerance.

Written out rather than taken from a JWT library: it is a dozen lines for one algorithm, it lets
every refusal say exactly what was wrong (alg none, a wrong alg, a bad iat), and the tests sign
with PyJWT, an independent implementation. Note that Avo's JWT does not cover the body.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from hookscope.verify.base import (
    Context,
    Scheme,
    Signature,
    SignedRequest,
    Verdict,
    digest,
    failed,
    match_hmac,
    missing,
    no_match,
    timestamp_problem,
    verified,
)


def _b64url(part: str) -> bytes:
    return base64.b64decode(part + "=" * (-len(part) % 4), altchars=b"-_", validate=True)


def _b64url_text(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _json_part(part: str) -> Any:
    value = json.loads(_b64url(part))
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def bearer_jwt(request: SignedRequest) -> str | None:
    auth = request.header("authorization")
    if auth is None:
        return None
    kind, _, token = auth.strip().partition(" ")
    token = token.strip()
    if kind.lower() != "bearer" or token.count(".") != 2:
        return None
    return token


def check(request: SignedRequest, ctx: Context) -> Verdict:
    if request.header("authorization") is None:
        return missing("no Authorization header")
    token = bearer_jwt(request)
    if token is None:
        return failed("Authorization is not 'Bearer <JWT>' (header.payload.signature)")
    head, payload, signature = token.split(".")
    try:
        header, claims, given = _json_part(head), _json_part(payload), _b64url(signature)
    except (ValueError, binascii.Error, RecursionError):
        return failed("the JWT's parts are not base64url-encoded JSON objects")
    alg = header.get("alg")
    if alg != "HS256":
        return failed(f"JWT alg {alg!r} is refused: Avo signs with HS256")
    signed = f"{head}.{payload}".encode("ascii")
    index = match_hmac(ctx.secrets, [given], "sha256", signed)
    if index is None:
        return no_match(ctx.secrets)
    iat = claims.get("iat")
    if isinstance(iat, bool) or not isinstance(iat, int | float) or not 0 <= iat < 1e12:
        return failed(f"signature matches secret {index}, but the JWT has no numeric iat", index)
    problem = timestamp_problem(str(int(iat)), ctx.now, ctx.tolerance, header="JWT iat")
    if problem is not None:
        return failed(f"signature matches secret {index}, but {problem}", index)
    return verified(index)


def sign(request: SignedRequest, secret: str, now: int, options: Mapping[str, Any]) -> Signature:
    """A new HS256 JWT issued at `now`, with the claims of the captured one (when it has any
    that can be read) besides iat."""
    claims: dict[str, Any] = {}
    token = bearer_jwt(request)
    if token is not None:
        try:
            read = _json_part(token.split(".")[1])
        except (ValueError, binascii.Error, RecursionError):
            read = None
        claims = read if isinstance(read, dict) else {}  # claims are an object, or none
    iat, exp = claims.get("iat"), claims.get("exp")
    if isinstance(iat, int | float) and isinstance(exp, int | float):
        claims["exp"] = now + (exp - iat)  # as long a life as the captured token had
    head = _b64url_text(b'{"alg":"HS256","typ":"JWT"}')
    payload = _b64url_text(json.dumps({**claims, "iat": now}, separators=(",", ":")).encode())
    mac = digest("sha256", secret.encode("utf-8"), f"{head}.{payload}".encode("ascii"))
    return Signature((("Authorization", f"Bearer {head}.{payload}.{_b64url_text(mac)}"),))


AVO = Scheme(
    id="avo",
    title="Avo",
    description="Authorization: Bearer <JWT>, HS256 with the webhook secret, iat within the "
                "tolerance; the JWT does not cover the body",
    headers=("authorization",),
    check=check,
    sign=sign,
    timed=True,
    detect=lambda r: bearer_jwt(r) is not None,
)
