"""GitHub: X-Hub-Signature-256 `sha256=<hex>` of the body (legacy X-Hub-Signature, `sha1=`)."""

from __future__ import annotations

from hookscope.verify.base import (
    Context,
    Scheme,
    SignedRequest,
    Verdict,
    match_hmac,
    missing,
    no_match,
    signature_from,
    verified,
)

# (header, algorithm, prefix), the newer first.
_HEADERS = (("x-hub-signature-256", "sha256", "sha256="), ("x-hub-signature", "sha1", "sha1="))


def check(request: SignedRequest, ctx: Context) -> Verdict:
    for header, algorithm, prefix in _HEADERS:
        if request.header(header) is None:
            continue
        given = signature_from(request, header, prefix=prefix)
        if isinstance(given, Verdict):
            return given
        index = match_hmac(ctx.secrets, [given], algorithm, request.body)
        return no_match(ctx.secrets) if index is None else verified(index)
    return missing("no X-Hub-Signature-256 or X-Hub-Signature header")


GITHUB = Scheme(
    id="github",
    title="GitHub",
    description="X-Hub-Signature-256: sha256=<hex HMAC of the body> (legacy X-Hub-Signature: "
                "sha1=); GitLab's X-Gitlab-Token is the `token` scheme",
    headers=("x-hub-signature-256", "x-hub-signature"),
    check=check,
    detect_headers=("x-hub-signature-256", "x-hub-signature"),
)
