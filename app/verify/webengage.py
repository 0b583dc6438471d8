"""WebEngage: not a body signature. The URL gets query parameters `licenseCode` and `secret`,
where `secret` is the hex MD5 of `{licenseCode}:{webhook secret key}`."""

from __future__ import annotations

import hashlib

from hookscope.verify.base import (
    Context,
    Scheme,
    SignedRequest,
    Verdict,
    decode_signature,
    failed,
    match,
    missing,
    no_match,
    verified,
)


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
    index = match(ctx.secrets, [given], lambda key: hashlib.md5(
        f"{license_code}:{key}".encode(), usedforsecurity=False).digest())
    return no_match(ctx.secrets) if index is None else verified(index)


WEBENGAGE = Scheme(
    id="webengage",
    title="WebEngage",
    description="query parameters licenseCode and secret = hex MD5 of {licenseCode}:{secret key}",
    headers=(),
    check=check,
    detect=lambda r: "secret" in r.query_params and "licenseCode" in r.query_params,
)
