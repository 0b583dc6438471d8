"""Signature schemes: one registry that the capture path, the API, the input checks and the test
of docs/signatures.md all read. Adding a scheme is one module with a `Scheme` and one line in
SCHEMES."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from hookscope.models import header_name_ok
from hookscope.verify.avo import AVO
from hookscope.verify.base import (
    CannotSign,
    Context,
    Scheme,
    Signature,
    SignedRequest,
    Verdict,
    failed,
)
from hookscope.verify.generic_hmac import HMAC
from hookscope.verify.github import GITHUB
from hookscope.verify.shopify import SHOPIFY
from hookscope.verify.slack import SLACK
from hookscope.verify.standard_webhooks import STANDARD_WEBHOOKS, SVIX
from hookscope.verify.stripe import STRIPE
from hookscope.verify.token import TOKEN
from hookscope.verify.virtuoso import VIRTUOSO
from hookscope.verify.webengage import WEBENGAGE

log = logging.getLogger("hookscope.verify")

# Order matters for `auto`: the first scheme whose signature is present is checked. The most
# specific headers come first; a bare Bearer JWT (Avo) and WebEngage's query come last.
SCHEMES: dict[str, Scheme] = {s.id: s for s in (
    STANDARD_WEBHOOKS, SVIX, STRIPE, GITHUB, SHOPIFY, SLACK, VIRTUOSO, AVO, WEBENGAGE, HMAC, TOKEN,
)}
_AUTO = tuple(s for s in SCHEMES.values() if s.detect_headers or s.detect)
AUTO_DESCRIPTION = ("picks the scheme from the signature present (first match): "
                    + ", ".join(s.id for s in _AUTO))
# `auto` picks the first scheme in _AUTO whose signature is present. Most are recognised by a
# header, and all those headers are looked up at once, rather than asking each scheme in turn.
_RANK_BY_HEADER: dict[str, int] = {}
for _rank, _scheme in enumerate(_AUTO):
    for _name in _scheme.detect_headers:
        _RANK_BY_HEADER.setdefault(_name, _rank)
_DETECT_HEADERS = frozenset(_RANK_BY_HEADER)
_DETECT_OTHERWISE = tuple((rank, s.detect) for rank, s in enumerate(_AUTO) if s.detect)
SCHEME_IDS: tuple[str, ...] = ("auto", *SCHEMES)
COMMON_FIELDS = ("scheme", "secrets", "tolerance_seconds")
DEFAULT_TOLERANCE = 300


def scheme_list() -> list[dict[str, Any]]:
    auto = {"id": "auto", "title": "Automatic", "description": AUTO_DESCRIPTION, "headers": [],
            "timed": False, "options": []}
    return [auto, *(s.as_json() for s in SCHEMES.values())]


def option_problems(scheme_id: str, options: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Problems with a verify config's scheme-specific options, as (field, message)."""
    scheme = SCHEMES.get(scheme_id)
    known = {o.name: o for o in scheme.options} if scheme else {}
    problems = []
    for name, value in options.items():
        option = known.get(name)
        if option is None:
            takes = ", ".join(known) or "no options"
            problems.append((f"verify.{name}", f"unknown option {name!r} for scheme "
                                               f"{scheme_id!r}; it takes {takes}"))
        elif not isinstance(value, str):
            problems.append((f"verify.{name}", f"{name} must be a string (leave it out for the "
                                               "default)"))
        elif option.choices and value not in option.choices:
            problems.append((f"verify.{name}", f"{name} must be one of "
                                               f"{', '.join(option.choices)}"))
        elif name.endswith("header") and not header_name_ok(value):
            problems.append((f"verify.{name}", f"{value!r} is not a header name"))
    if not problems and scheme is not None and scheme.check_options is not None:
        problems.extend(scheme.check_options(options))
    return problems


def check_signature(config: Mapping[str, Any] | None, request: SignedRequest,
                    now: float, *, truncated: bool = False) -> dict[str, Any] | None:
    """The signature verdict for a request, or None when the endpoint verifies nothing.

    With `auto` the request chooses the scheme, so a sender (or an attacker replaying an old
    delivery) can pick an untimed one: auto says which scheme it used, and naming the scheme is
    what gives replay protection.
    """
    if config is None:
        return None
    scheme_id = config.get("scheme", "auto")
    scheme = SCHEMES.get(scheme_id)
    picked = scheme_id == "auto"
    if picked:
        scheme = _auto_scheme(request)
    secrets = config.get("secrets") or ()
    if scheme is None:
        verdict = Verdict("missing", "no signature of a known scheme is present")
        return _json("auto", verdict if secrets else Verdict("unchecked", "no secret configured"),
                     picked)
    if not secrets:
        return _json(scheme.id, Verdict("unchecked", "no secret configured"), picked)
    if truncated:
        return _json(scheme.id, failed("the body was cut at the size limit, so its signature "
                                       "cannot be checked"), picked)
    options = ({k: v for k, v in config.items() if k not in COMMON_FIELDS} if scheme.options
               else {})
    # Positional: keywords to a NamedTuple cost a dict on every capture.
    context = Context(secrets, options, int(config.get("tolerance_seconds", DEFAULT_TOLERANCE)),
                      now)
    try:
        verdict = scheme.check(request, context)
    except Exception as exc:  # a scheme bug must never cost a capture
        log.exception("scheme %s raised", scheme.id)
        verdict = failed(f"could not check the signature ({type(exc).__name__})")
    return _json(scheme.id, verdict, picked)


def sign(scheme_id: str, secret: str, request: SignedRequest, now: float,
         options: Mapping[str, Any] | None = None) -> Signature:
    """`request` signed with `secret` at `now` as `scheme_id` signs (options as in a verify
    config), with the code that checks it. `auto` signs with the scheme whose signature the
    request carries. CannotSign says why not."""
    options = dict(options or {})
    scheme = _auto_scheme(request) if scheme_id == "auto" else SCHEMES.get(scheme_id)
    if scheme is None:
        raise CannotSign(
            "auto: the request carries no signature of a known scheme, so name one"
            if scheme_id == "auto" else
            f"unknown scheme {scheme_id!r}; known: {', '.join(SCHEMES)}")
    if scheme.sign is None:
        raise CannotSign(f"scheme {scheme.id} cannot sign a request")
    if not isinstance(secret, str) or not secret:
        raise CannotSign("the secret to sign with must be a non-empty string")
    problems = option_problems(scheme.id, options)
    if problems:
        raise CannotSign("; ".join(message for _, message in problems))
    return scheme.sign(request, secret, int(now), options)


def _auto_scheme(request: SignedRequest) -> Scheme | None:
    """The first scheme in _AUTO whose signature the request carries, or None."""
    first = len(_AUTO)
    for name in _DETECT_HEADERS.intersection(request.header_names()):
        # (A plain loop: min(..., default=) parses its keyword on every call.)
        rank = _RANK_BY_HEADER[name]
        if rank < first:
            first = rank
    for rank, detect in _DETECT_OTHERWISE:
        if rank >= first:
            break
        if detect(request):
            return _AUTO[rank]
    return _AUTO[first] if first < len(_AUTO) else None


def _json(scheme_id: str, verdict: Verdict, picked: bool) -> dict[str, Any]:
    data: dict[str, Any] = {"scheme": scheme_id, "status": verdict.status,
                            "reason": verdict.reason, "secret_index": verdict.secret_index}
    if picked:
        data["auto"] = True
    return data


__all__ = ["COMMON_FIELDS", "SCHEMES", "SCHEME_IDS", "CannotSign", "Signature", "SignedRequest",
           "check_signature", "option_problems", "scheme_list", "sign"]
