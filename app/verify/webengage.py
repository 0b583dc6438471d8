"""WebEngage: not a body signature. The URL gets query parameters `licenseCode` and `secret`,
where `secret` is the hex MD5 of `{licenseCode}:{webhook secret key}`."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_plus

from hookscope.verify.base import (
    CannotSign,
    Context,
    Scheme,
    Signature,
    SignedRequest,
    Verdict,
    decode_signature,
    failed,
    match,
    missing,
    no_match,
    verified,
)


def _md5(license_code: str, key: str) -> bytes:
    return hashlib.md5(f"{license_code}:{key}".encode(), usedforsecurity=False).digest()


def check(request: SignedRequest, ctx: Context) -> Verdict:
    params = request.query_params
    if "secret" not in params:
        return missing("no secret query parameter")
    license_code = params.get("licenseCode")
    if license_code is None:
        return failed("the secret query parameter comes without licenseCode")
    given = decode_signature(params["secret"], "hex")
    if given is None:
        return failed("the secret query parameter is not hex")
    index = match(ctx.secrets, [given], lambda key: _md5(license_code, key))
    return no_match(ctx.secrets) if index is None else verified(index)


def sign(request: SignedRequest, secret: str, now: int, options: Mapping[str, Any]) -> Signature:
    """The query with each `secret` parameter's value replaced, every other byte of it kept."""
    license_code = request.query_params.get("licenseCode")
    if license_code is None:
        raise CannotSign("webengage signs the licenseCode query parameter, and the request has "
                         "none")
    fresh = f"secret={_md5(license_code, secret).hex()}"
    parts = [fresh if unquote_plus(part.partition("=")[0]) == "secret" else part
             for part in request.query.split("&")] if request.query else []
    if fresh not in parts:
        parts.append(fresh)
    return Signature((), "&".join(parts))


WEBENGAGE = Scheme(
    id="webengage",
    title="WebEngage",
    description="query parameters licenseCode and secret = hex MD5 of {licenseCode}:{secret key}",
    headers=(),
    check=check,
    sign=sign,
    detect=lambda r: "secret" in r.query_params and "licenseCode" in r.query_params,
)
