"""What every signature scheme shares: the request as signed, verdicts, digests and time checks.

Everything works on the raw bytes exactly as received and compares with hmac.compare_digest on
bytes. Header values arrive as Latin-1 text (one character per byte), so `.encode("latin-1")`
gives back the bytes the sender put on the wire.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import re
from collections.abc import Callable, Iterable, KeysView, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, cast
from urllib.parse import parse_qsl

ALGORITHMS = ("sha1", "sha256", "sha512")
_SECONDS = re.compile(r"[0-9]{1,12}")  # unix seconds; more digits cannot be a real time


class SignedRequest:
    """The parts of a capture a signature can cover.

    A plain slotted class and NamedTuples below, not dataclasses: this runs on every capture
    of a verifying endpoint, and frozen dataclasses and functools.cached_property (which takes a
    lock on Python 3.11) cost as much as the HMAC itself.
    """

    __slots__ = ("_first", "_params", "body", "content_type", "headers", "query")

    def __init__(self, headers: Sequence[Sequence[str]], query: str, body: bytes,
                 content_type: str | None = None) -> None:
        self.headers = headers  # [name (lower case), value] pairs in order
        self.query = query
        self.body = body
        self.content_type = content_type
        # Built from the last pair to the first, so the first value of each name stays.
        self._first: dict[str, str] = dict(cast("Iterable[tuple[str, str]]", reversed(headers)))
        self._params: dict[str, str] | None = None

    def header(self, name: str) -> str | None:
        """The first value of a header, or None."""
        return self._first.get(name.lower())

    def header_names(self) -> KeysView[str]:
        """The names (lower case) of the headers present."""
        return self._first.keys()

    @property
    def query_params(self) -> dict[str, str]:
        """First value of each query parameter (parsed on first use: few schemes need it)."""
        if self._params is None:
            self._params = {}
            for key, value in parse_qsl(self.query, keep_blank_values=True):
                self._params.setdefault(key, value)
        return self._params


class Verdict(NamedTuple):
    status: str  # verified | failed | missing | unchecked
    reason: str | None = None
    secret_index: int | None = None


# Verdicts are immutable: the common ones are made once rather than on every capture.
_VERIFIED = tuple(Verdict("verified", None, index) for index in range(16))


def verified(index: int) -> Verdict:
    return _VERIFIED[index] if index < len(_VERIFIED) else Verdict("verified", None, index)


def failed(reason: str, index: int | None = None) -> Verdict:
    return Verdict("failed", reason, index)


def missing(reason: str) -> Verdict:
    return Verdict("missing", reason)


class Context(NamedTuple):
    """What a check knows besides the request: the endpoint's secrets and options, and the
    moment to judge timestamps against (the capture's arrival, so re-checking later agrees)."""

    secrets: Sequence[str]
    options: Mapping[str, Any]
    tolerance: int
    now: float


Check = Callable[[SignedRequest, Context], Verdict]


class Signature(NamedTuple):
    """A request signed afresh (for a test secret, by `hookscope.verify.sign`): the headers to
    set, each in place of every captured header of that name, and, for the scheme that signs in
    the URL, the new query."""

    headers: tuple[tuple[str, str], ...]
    query: str | None = None


class CannotSign(ValueError):
    """The request cannot be signed as asked; the message says why."""


# (request, secret, now in unix seconds, the scheme's options) -> the new signature
Sign = Callable[[SignedRequest, str, int, Mapping[str, Any]], Signature]


@dataclass(frozen=True)
class Option:
    name: str
    help: str
    default: Any = None
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scheme:
    id: str
    title: str
    description: str
    headers: tuple[str, ...]  # what it reads, for people and for `auto`
    check: Check
    options: tuple[Option, ...] = ()
    timed: bool = False  # signs a timestamp, so tolerance_seconds applies
    # For `auto`: the request carries this scheme's signature when any of these headers is
    # present, or when `detect` says so.
    detect_headers: tuple[str, ...] = ()
    detect: Callable[[SignedRequest], bool] | None = None
    # Extra checks of the options beyond their choices: (field, message) problems.
    check_options: Callable[[Mapping[str, Any]], list[tuple[str, str]]] | None = None
    # Signs a request as the sender would, for replaying a capture to a receiver that holds a
    # test secret; None for a scheme that cannot.
    sign: Sign | None = None

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "description": self.description,
                "headers": list(self.headers), "timed": self.timed,
                "options": [{"name": o.name, "help": o.help, "default": o.default,
                             **({"choices": list(o.choices)} if o.choices else {})}
                            for o in self.options]}


def digest(algorithm: str, key: bytes, message: bytes) -> bytes:
    # Not hmac.digest(): on Python 3.11 that one-shot releases the GIL around every call, so on
    # the busy capture path each check waits to get it back from the writer thread, many times
    # what the HMAC costs. update() keeps the GIL for bodies under 2 KiB. Keyed once per
    # secret and copied: that skips hashing the padded key twice on every check.
    mac = _keyed(algorithm, key).copy()
    mac.update(message)
    return mac.digest()


@functools.lru_cache(maxsize=256)
def _keyed(algorithm: str, key: bytes) -> hmac.HMAC:
    """An HMAC with its key set and nothing hashed yet; it is only ever copied. (A secret that
    was replaced stays here until 256 newer ones push it out: the process that verifies holds
    secrets in memory anyway.)"""
    return hmac.new(key, digestmod=algorithm)


def encode(raw: bytes, encoding: str) -> str:
    """A digest as a signature header writes it: the inverse of decode_signature."""
    return raw.hex() if encoding == "hex" else base64.b64encode(raw).decode("ascii")


def decode_signature(text: str, encoding: str) -> bytes | None:
    """hex or base64 text -> raw digest bytes; None when it is not that encoding."""
    try:
        if encoding == "hex":
            return bytes.fromhex(text.strip())
        return base64.b64decode(text.strip().encode("latin-1"), validate=True)
    except (ValueError, binascii.Error):
        return None


def signature_from(request: SignedRequest, header: str, *, prefix: str = "",
                   encoding: str = "hex") -> bytes | Verdict:
    """The decoded signature in `header`, or the verdict when it is absent or malformed."""
    value = request.header(header)
    if value is None:
        return missing(f"no {header} header")
    if prefix and not value.startswith(prefix):
        return failed(f"{header} should start with {prefix!r}")
    decoded = decode_signature(value[len(prefix):], encoding)
    if decoded is None:
        return failed(f"{header} is not {prefix}<{encoding}>")
    return decoded


def utf8(secret: str) -> bytes:
    return secret.encode("utf-8")


def match(secrets: Sequence[str], given: Sequence[bytes],
          expected: Callable[[str], bytes | None]) -> int | None:
    """Index of the first secret whose expected digest equals any given one, else None.

    Compared with hmac.compare_digest (no early exit inside it), so the time taken does not
    reveal how close a forgery came.
    """
    for index, secret in enumerate(secrets):
        want = expected(secret)
        if want is not None and _equals_any(want, given):
            return index
    return None


def match_hmac(secrets: Sequence[str], given: Sequence[bytes], algorithm: str,
               message: bytes) -> int | None:
    """match() for most schemes: each secret's UTF-8 bytes key an HMAC of `message`. (No
    function made and called per secret: this runs on every capture of a verifying endpoint.)"""
    for index, secret in enumerate(secrets):
        if _equals_any(digest(algorithm, secret.encode("utf-8"), message), given):
            return index
    return None


def _equals_any(want: bytes, given: Sequence[bytes]) -> bool:
    # A loop, not any(): making a generator costs more than a comparison.
    for candidate in given:  # noqa: SIM110
        if hmac.compare_digest(want, candidate):
            return True
    return False


def timestamp_problem(raw: str | None, now: float, tolerance: int, *,
                      header: str) -> str | None:
    """Why a signed timestamp is unacceptable, or None. tolerance 0 turns the check off."""
    if raw is None:
        return f"{header} is missing"
    if not _SECONDS.fullmatch(raw.strip()):
        return f"{header} {raw[:40]!r} is not a number of seconds"
    stamp = int(raw.strip())
    if tolerance <= 0:
        return None
    drift = now - stamp
    if abs(drift) > tolerance:
        when = "old" if drift > 0 else "in the future"
        age, limit = span(abs(int(drift))), span(tolerance)
        if age == limit:  # just past it: words would hide the difference
            age, limit = f"{abs(int(drift))} s", f"{tolerance} s"
        return (f"timestamp {stamp} is {age} {when}, outside the tolerance of {limit} (a replay, "
                "or a clock that is off)")
    return None


def span(seconds: int) -> str:
    """A length of time as people say it: exact to the second below two minutes, then whole
    minutes, hours or days."""
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 120 * 60:
        return f"{seconds // 60} min"
    if seconds < 48 * 3600:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def no_match(secrets: Sequence[str]) -> Verdict:
    count = len(secrets)
    return failed("signature does not match the secret" if count == 1 else
                  f"signature matches none of the {count} secrets")


def after_match(index: int | None, ctx: Context, raw_timestamp: str | None, *,
                header: str) -> Verdict:
    """The verdict of a timed scheme once its signature was compared."""
    if index is None:
        return no_match(ctx.secrets)
    problem = timestamp_problem(raw_timestamp, ctx.now, ctx.tolerance, header=header)
    if problem is not None:
        return failed(f"signature matches secret {index}, but {problem}", index)
    return verified(index)
