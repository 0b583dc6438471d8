"""Checking an endpoint's fields sent to the API: every problem found, each naming its field.

`check_endpoint_fields` turns a create or patch body into values the store can write, or raises
one ApiError(422) listing every problem, so a user fixes them all in one go. A replay request's
fields are checked the same way beside replay itself (ops/replay.py).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for

from hookscope.errors import ApiError, Problems
from hookscope.formats import SchemaUnusable, compile_rust, load_formats
from hookscope.formats.cost import schema_problem
from hookscope.models import (
    ALIAS_PATTERN,
    DEFAULT_REJECT,
    DEFAULT_RESPONSE,
    HEADER_VALUE_RULE,
    MAX_DELAY_MS,
    Endpoint,
    header_name_ok,
    header_value_ok,
    mask_secret,
)
from hookscope.ops.forward import check_forward
from hookscope.verify import COMMON_FIELDS, SCHEME_IDS, option_problems

MAX_MAX_CAPTURES = 1_000_000
MAX_MAX_BYTES = 2**50  # a petabyte: "no practical limit" without an unbounded integer
MAX_RATE_LIMIT = 100_000  # requests per second
MAX_RESPONSE_BODY = 1024 * 1024
MAX_NAME = 200
MAX_SECRETS = 10  # each one costs an HMAC over every captured body
MAX_SECRET_LENGTH = 1024
READ_ONLY = ("token", "url", "alias_url", "inspect_url", "stream_url", "captures_url",
             "created_at", "capture_count", "stored_bytes", "last_seq", "last_capture_at")
_ALIAS = re.compile(ALIAS_PATTERN)
# Framing is the server's; cookies and security headers would act on Hookscope's own origin.
_FORBIDDEN_HEADERS = {"content-length", "transfer-encoding", "connection", "keep-alive",
                      "upgrade", "te", "trailer", "x-hookscope-capture", "set-cookie",
                      "content-security-policy", "x-content-type-options"}
# Stored as microseconds since 1970 and shown as ISO 8601 with a four-digit year.
_LATEST_US = int(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()) * 1_000_000


def check_endpoint_fields(body: Any, *, current: Endpoint | None = None,
                          default_max_captures: int = 10_000,
                          default_max_bytes: int = 0) -> dict[str, Any]:
    """Validate a create (current=None) or patch body; return the fields to store."""
    if not isinstance(body, dict):
        raise ApiError(422, "expected a JSON object of endpoint fields")
    problems = Problems()
    out: dict[str, Any] = {}
    for key, value in body.items():
        checker = _CHECKERS.get(key)
        if checker is None:
            problems.add(key, f"{key} is read-only" if key in READ_ONLY else
                         f"unknown field {key!r}; known: {', '.join(_CHECKERS)}")
            continue
        with contextlib.suppress(_Invalid):
            out[key] = checker(value, current, problems)
    problems.raise_any()
    if current is None:
        out.setdefault("max_captures", default_max_captures)
        out.setdefault("max_bytes", default_max_bytes or None)
        out.setdefault("response", dict(DEFAULT_RESPONSE))
        out.setdefault("reject", dict(DEFAULT_REJECT))
    return out


class _Invalid(Exception):
    pass


def _fail(problems: Problems, field: str, message: str) -> _Invalid:
    problems.add(field, message)
    return _Invalid()


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _name(value: Any, current: Endpoint | None, problems: Problems) -> str | None:
    if value is None:
        return None
    # A NUL too is refused: PostgreSQL's text cannot hold one, and both stores answer alike.
    if not isinstance(value, str) or len(value) > MAX_NAME or "\x00" in value:
        raise _fail(problems, "name",
                    f"name must be a string of at most {MAX_NAME} characters, without NUL")
    return value


def _alias(value: Any, current: Endpoint | None, problems: Problems) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _ALIAS.fullmatch(value):
        raise _fail(problems, "alias", "alias must be 3-64 characters of a-z, 0-9, '_' and '-', "
                                       "starting with a letter or digit")
    return value


def _verify(value: Any, current: Endpoint | None, problems: Problems) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _fail(problems, "verify", "verify must be an object such as "
                                        '{"scheme": "github", "secrets": ["..."]}, or null')
    ok = True
    before = current.verify if current is not None and current.verify is not None else {}
    scheme = value.get("scheme", before.get("scheme", "auto"))  # a patch keeps what it omits
    if scheme not in SCHEME_IDS:
        problems.add("verify.scheme", f"unknown scheme {scheme!r}; known: {', '.join(SCHEME_IDS)}")
        ok = False
    secrets = value.get("secrets", before.get("secrets", []))
    if (not isinstance(secrets, list) or len(secrets) > MAX_SECRETS
            or not all(isinstance(s, str) and 0 < len(s) <= MAX_SECRET_LENGTH for s in secrets)):
        problems.add("verify.secrets", f"secrets must be a list of at most {MAX_SECRETS} "
                                       f"non-empty strings of at most {MAX_SECRET_LENGTH} "
                                       "characters")
        ok = False
    else:
        secrets, masked_ok = _unmask(secrets, before.get("secrets", []), problems)
        ok = ok and masked_ok
    tolerance = value.get("tolerance_seconds", before.get("tolerance_seconds", 300))
    if not _whole(tolerance) or tolerance < 0:
        problems.add("verify.tolerance_seconds",
                     "tolerance_seconds must be a whole number of seconds, 0 or more")
        ok = False
    # Scheme options: those given now, else (same scheme) those already set.
    same_scheme = before.get("scheme") == scheme
    options = {k: v for k, v in (before.items() if same_scheme else ()) if k not in COMMON_FIELDS}
    options.update({k: v for k, v in value.items() if k not in COMMON_FIELDS})
    options = {k: v for k, v in options.items() if v is not None}  # null: back to the default
    if ok:
        for field, message in option_problems(scheme, options):
            problems.add(field, message)
            ok = False
    if not ok:
        raise _Invalid()
    return {**options, "scheme": scheme, "secrets": secrets, "tolerance_seconds": tolerance}


def _unmask(secrets: list[str], current: list[str], problems: Problems) -> tuple[list[str], bool]:
    """A client that sends back what it fetched sends masked secrets: each mask keeps the first
    current secret (not yet kept) that it masks, wherever the list puts it, so a rotation can
    put the new secret first. A mask that matches none is refused, never stored as a secret."""
    out, ok = [], True
    unused = list(current)
    for secret in secrets:
        if secret.endswith("****"):
            kept = next((s for s in unused if mask_secret(s) == secret), None)
            if kept is not None:
                unused.remove(kept)
                out.append(kept)
                continue
            problems.add("verify.secrets", f"{secret!r} looks like a masked secret; send the "
                                           "secret itself, or leave secrets out to keep them")
            ok = False
        out.append(secret)
    return out, ok


def _format(value: Any, current: Endpoint | None, problems: Problems) -> str:
    ids = load_formats().ids
    if value not in ("auto", "none", *ids):
        raise _fail(problems, "format",
                    f"format must be 'auto', 'none' or a format id ({', '.join(ids)})")
    return str(value)


def _schema(value: Any, current: Endpoint | None, problems: Problems) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _fail(problems, "schema", "schema must be a JSON Schema object, or null")
    if not isinstance(value.get("$schema", ""), str):  # validator_for() raises on anything else
        raise _fail(problems, "schema", "$schema must be a string: the URI of a JSON Schema "
                                        "draft, such as 'http://json-schema.org/draft-07/schema#'")
    if problem := schema_problem(value):  # before the checks below, whose cost it bounds
        raise _fail(problems, "schema", problem)
    try:
        # An explicit default: with none, an unknown $schema is a DeprecationWarning now and
        # "will raise an error in the future" (jsonschema); compile_rust names the problem.
        validator_for(value, default=Draft202012Validator).check_schema(value)
        compile_rust(value)  # every $ref must resolve here, none off this machine
    except RecursionError:
        raise _fail(problems, "schema", "schema is nested too deeply to check") from None
    except OverflowError as exc:  # Python's re, checking a pattern such as "a{4294967296}"
        raise _fail(problems, "schema", f"not a valid JSON Schema: a pattern cannot be "
                                        f"compiled ({exc})") from None
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path)
        raise _fail(problems, "schema",
                    f"not a valid JSON Schema{' at /' + where if where else ''}: {exc.message}"
                    ) from None
    except SchemaUnusable as exc:
        raise _fail(problems, "schema", f"schema cannot be used: {exc}") from None
    return value


def _response(value: Any, current: Endpoint | None, problems: Problems) -> dict[str, Any]:
    base = dict(current.response if current is not None else DEFAULT_RESPONSE)
    if value is None:
        return dict(DEFAULT_RESPONSE)
    if not isinstance(value, dict):
        raise _fail(problems, "response", "response must be an object with status, headers, "
                                          "body and delay_ms")
    ok = True
    for key in value:
        if key not in DEFAULT_RESPONSE:
            problems.add(f"response.{key}", f"unknown response field {key!r}; known: "
                                            "status, headers, body, delay_ms")
            ok = False
    status = value.get("status", base["status"])
    if not _whole(status) or not 200 <= status <= 599:
        problems.add("response.status", "status must be a whole number from 200 to 599 "
                                        "(1xx codes are interim and cannot end a response)")
        ok = False
    headers = value.get("headers", base["headers"])
    if headers is None:
        headers = {}
    if not isinstance(headers, dict):
        problems.add("response.headers", 'headers must be an object like {"X-Foo": "bar"}')
        ok = False
    else:
        for name, header_value in headers.items():
            if not header_name_ok(name) or name.lower() in _FORBIDDEN_HEADERS:
                problems.add(f"response.headers.{name}",
                             f"{name!r} cannot be set: not a header name, or one Hookscope "
                             "controls (Content-Length, Connection, Set-Cookie, "
                             "Content-Security-Policy, X-Hookscope-Capture...)")
                ok = False
            elif not header_value_ok(header_value):
                problems.add(f"response.headers.{name}", HEADER_VALUE_RULE)
                ok = False
    body = value.get("body", base["body"])
    if body is not None and (not isinstance(body, str) or len(body) > MAX_RESPONSE_BODY):
        problems.add("response.body", f"body must be a string of at most {MAX_RESPONSE_BODY} "
                                      "characters, or null for the default JSON reply")
        ok = False
    delay = value.get("delay_ms", base["delay_ms"])
    if not _whole(delay) or not 0 <= delay <= MAX_DELAY_MS:
        problems.add("response.delay_ms", f"delay_ms must be a whole number from 0 to "
                                          f"{MAX_DELAY_MS}")
        ok = False
    if not ok:
        raise _Invalid()
    return {"status": status, "headers": headers, "body": body, "delay_ms": delay}


def _reject(value: Any, current: Endpoint | None, problems: Problems) -> dict[str, bool]:
    base = dict(current.reject if current is not None else DEFAULT_REJECT)
    if value is None:
        return dict(DEFAULT_REJECT)
    if not isinstance(value, dict) or any(
            key not in DEFAULT_REJECT or not isinstance(flag, bool) for key, flag in value.items()):
        raise _fail(problems, "reject", "reject must be an object of booleans: "
                                        '{"bad_signature": false, "invalid_payload": false}')
    return {**base, **value}


def _forward(value: Any, current: Endpoint | None, problems: Problems) -> dict[str, Any] | None:
    if isinstance(value, dict) and current is not None and current.forward is not None:
        value = {**current.forward, **value}  # a patch keeps what it omits
    return check_forward(value, problems)


def _max_captures(value: Any, current: Endpoint | None, problems: Problems) -> int:
    if not _whole(value) or not 1 <= value <= MAX_MAX_CAPTURES:
        raise _fail(problems, "max_captures",
                    f"max_captures must be a whole number from 1 to {MAX_MAX_CAPTURES}")
    return int(value)


def _max_bytes(value: Any, current: Endpoint | None, problems: Problems) -> int | None:
    if value is None:
        return None
    if not _whole(value) or not 1 <= value <= MAX_MAX_BYTES:
        raise _fail(problems, "max_bytes", f"max_bytes must be a whole number of bytes from 1 to "
                                           f"{MAX_MAX_BYTES}, or null for no limit")
    return int(value)


def _rate_limit(value: Any, current: Endpoint | None, problems: Problems) -> float | None:
    if value is None:
        return None
    if (not isinstance(value, int | float) or isinstance(value, bool)
            or not 0 < value <= MAX_RATE_LIMIT):
        raise _fail(problems, "rate_limit", f"rate_limit must be a number of requests per second "
                                            f"above 0 and at most {MAX_RATE_LIMIT} (0.5: one "
                                            f"every 2 s), or null for no limit")
    return float(value)


def _expires_at(value: Any, current: Endpoint | None, problems: Problems) -> int | None:
    if value is None:
        return None
    message = ("expires_at must be an ISO 8601 date-time such as '2026-12-31T23:59:59Z' "
               "(UTC when no offset is given), or null for never")
    if not isinstance(value, str):
        raise _fail(problems, "expires_at", message)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _fail(problems, "expires_at", message) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    us = int(moment.timestamp() * 1_000_000)
    if not 0 <= us <= _LATEST_US:
        raise _fail(problems, "expires_at", "expires_at must fall between 1970-01-01 and "
                                            "9999-12-31 (UTC)")
    return us


_CHECKERS: dict[str, Callable[[Any, Endpoint | None, Problems], Any]] = {
    "name": _name,
    "alias": _alias,
    "verify": _verify,
    "format": _format,
    "schema": _schema,
    "response": _response,
    "reject": _reject,
    "forward": _forward,
    "max_captures": _max_captures,
    "max_bytes": _max_bytes,
    "rate_limit": _rate_limit,
    "expires_at": _expires_at,
}
