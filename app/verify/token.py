"""Shared token: the sender puts the secret itself in a header (GitLab's X-Gitlab-Token, a
Bearer token, Flows' "Secret" when sent as a header). Compared in constant time."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hookscope.verify.base import (
    Context,
    Option,
    Scheme,
    Signature,
    SignedRequest,
    Verdict,
    match,
    missing,
    no_match,
    utf8,
    verified,
)

OPTIONS = (
    Option("header", "header that carries the token; with Authorization, 'Bearer <token>' and "
                     "the bare token are both accepted", "authorization"),
    Option("prefix", "text before the token in the header, e.g. 'Token '", ""),
)


def check(request: SignedRequest, ctx: Context) -> Verdict:
    header = ctx.options.get("header") or "authorization"
    value = request.header(header)
    if value is None:
        return missing(f"no {header} header")
    prefix = ctx.options.get("prefix") or ""
    raw = value.encode("latin-1")  # the bytes as sent
    candidates = [raw.removeprefix(prefix.encode("utf-8"))] if prefix else [raw]
    if header.lower() == "authorization" and not prefix and value[:7].lower() == "bearer ":
        candidates.append(raw[7:].strip())
    index = match(ctx.secrets, candidates, utf8)
    return no_match(ctx.secrets) if index is None else verified(index)


def sign(request: SignedRequest, secret: str, now: int, options: Mapping[str, Any]) -> Signature:
    """The token itself in its header; in Authorization without a prefix, as a Bearer token."""
    header = options.get("header") or "authorization"
    prefix = options.get("prefix") or ("Bearer " if header.lower() == "authorization" else "")
    return Signature(((header, prefix + secret),))


TOKEN = Scheme(
    id="token",
    title="Shared token",
    description="the secret itself in a header (default Authorization, Bearer or bare), "
                "compared in constant time",
    headers=(),
    check=check,
    sign=sign,
    options=OPTIONS,
)
