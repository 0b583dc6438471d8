"""Forwarding: a capture sent on to a URL of the user's, byte for byte, and each attempt recorded
on the capture as a delivery (`hookscope listen --forward-to`, an endpoint's `forward`).

What is sent: the captured method; the target URL's path with the capture's sub-path (what
followed /h/KEY) appended, and the captured query after the target's own; the captured headers in
order with duplicates, minus those of the sender's connection and Host (Capture.resent_headers);
the stored body's exact bytes, so a sender's signature still verifies at the target. The exchange
itself is replay's (hookscope.ops.replay.exchange): no redirects followed, the reply read up to a
cap, one timeout for the whole of it.

A delivery is one attempt: where it went, who sent it, which try, the target's status or why
there was none, how long it took, the reply's headers and the first MAX_DELIVERY_BODY bytes of
its body, and the outcome: `delivered` (the target answered and no retry was asked for),
`retrying` (another try follows) or `failed` (the last try, without an answer that counts).

The server's own forwarding, of each capture of an endpoint with a `forward`, is forwarder.py's.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
from typing import Any

import httpx

from hookscope.errors import ApiError, Problems
from hookscope.models import Capture, body_fields, format_time, new_capture_id, now_us
from hookscope.ops.replay import TargetPolicy, exchange, url_problem

log = logging.getLogger("hookscope.forward")

# What a delivery keeps of the target's reply body.
MAX_DELIVERY_BODY = 64 * 1024
OUTCOMES = ("delivered", "retrying", "failed")
DELIVERY_FIELDS = ("target", "by", "attempt", "status", "error", "elapsed_ms", "outcome",
                   "response")
MAX_BY = 200
MAX_ERROR = 1000
MAX_TARGET = 2048  # a URL, shown in every delivery's line
MAX_ATTEMPT = 1000
MAX_REPLY_HEADERS = 200
# An endpoint's `forward`: where the server sends each capture after committing it.
FORWARD_FIELDS = ("url", "timeout", "retries")
DEFAULT_FORWARD_TIMEOUT = 10.0
MAX_FORWARD_TIMEOUT = 60.0
DEFAULT_FORWARD_RETRIES = 3
MAX_FORWARD_RETRIES = 10
BACKOFF_MAX_S = 60.0
RESOLVE_CHECK_S = 5.0


def sub_path(capture_path: str) -> str:
    """What followed /h/KEY in a capture's path, with its leading slash ('' when nothing)."""
    rest = capture_path[3:] if capture_path.startswith("/h/") else capture_path.lstrip("/")
    _, slash, tail = rest.partition("/")
    return slash + tail


def forward_url(target: str, capture_path: str, query: str) -> str:
    """Where a capture goes: `target` with the capture's sub-path appended to its path and the
    capture's query after its own."""
    return join_url(target, sub_path(capture_path), query)


def join_url(target: str, tail: str, query: str) -> str:
    """`target` with `tail` (a path, or '') appended to its path and `query` after its own."""
    url = httpx.URL(target)
    path = url.raw_path.split(b"?", 1)[0].decode("latin-1")
    if tail:
        path = path.rstrip("/") + tail
    joined = "&".join(part for part in (url.query.decode("latin-1"), query) if part)
    raw = path.encode("latin-1") + (b"?" + joined.encode("latin-1") if joined else b"")
    return str(url.copy_with(raw_path=raw))


def backoff(attempt: int) -> float:
    """Seconds before try `attempt + 1`: 1, 2, 4, ... up to BACKOFF_MAX_S."""
    return min(BACKOFF_MAX_S, 2.0 ** (attempt - 1))


def shown(url: str) -> str:
    """A URL as a delivery shows it to the team: without a user name or password in it."""
    parsed = httpx.URL(url)
    return str(parsed.copy_with(userinfo=b"")) if parsed.userinfo else url


def new_delivery_id() -> str:
    return "d_" + new_capture_id(now_us())[2:]


def delivery_record(capture: Capture, url: str, *, by: str, number: int) -> dict[str, Any]:
    """A delivery of `capture` to `url` (where it was sent, sub-path and query added), as yet
    without an answer: `failed` until one says otherwise."""
    return {
        "id": new_delivery_id(), "capture": capture.id, "seq": capture.seq,
        "at": format_time(now_us()), "target": shown(url)[:MAX_TARGET], "by": by[:MAX_BY],
        "attempt": number, "status": None, "error": None, "elapsed_ms": None,
        "outcome": "failed", "response": None}


async def attempt(capture: Capture, target: str, *, by: str, number: int, timeout: float,
                  policy: TargetPolicy | None, retry_on_5xx: bool = False,
                  last: bool = True) -> dict[str, Any]:
    """Send `capture` to `target` (a base URL: the sub-path and query are added) once; the
    delivery record of that try. `last`: no other try follows whatever happens."""
    url = forward_url(target, capture.path, capture.query)
    record = delivery_record(capture, url, by=by, number=number)
    try:
        sent = await exchange(capture.method, url, capture.resent_headers(), capture.body or b"",
                              timeout=timeout, policy=policy, body_limit=MAX_DELIVERY_BODY,
                              action="forwarding")
    except ApiError as exc:
        record["error"] = exc.message.replace(url, record["target"])[:MAX_ERROR]
        record["outcome"] = "failed" if last or exc.status == 403 else "retrying"
        return record
    record.update(status=sent.status, elapsed_ms=sent.elapsed_ms, response={
        "headers": sent.headers[:MAX_REPLY_HEADERS], **body_fields(sent.body),
        "body_size": len(sent.body), "truncated": sent.truncated})
    again = retry_on_5xx and sent.status >= 500
    record["outcome"] = ("failed" if last else "retrying") if again else "delivered"
    return record


def describe(delivery: dict[str, Any]) -> str:
    """One line for a person: `POST /h/key/x -> 500 in 12 ms` or `... -> connection refused`."""
    answer = (f"{delivery['status']} in {delivery['elapsed_ms']:g} ms"
              if delivery.get("status") is not None else delivery.get("error") or "no answer")
    return f"{delivery['target']}: {answer}"


# -- what clients send: POST /api/captures/{id}/deliveries ----------------------------------------

def check_delivery_fields(body: Any) -> dict[str, Any]:
    """The delivery a client (`hookscope listen`) reports, checked; without id, capture, seq
    and at, which the server sets."""
    if not isinstance(body, dict):
        raise ApiError(422, 'expected a JSON object such as {"target": '
                            '"http://localhost:3000/hook", "status": 200, "outcome": "delivered"}')
    problems = Problems()
    for key in body:
        if key not in DELIVERY_FIELDS:
            problems.add(key, f"unknown field {key!r}; known: {', '.join(DELIVERY_FIELDS)}")
    target = body.get("target")
    if not isinstance(target, str) or not target or len(target) > MAX_TARGET:
        problems.add("target", f"target is required: the URL the capture was sent to, at most "
                               f"{MAX_TARGET} characters")
    by = body.get("by", "")
    if not isinstance(by, str) or len(by) > MAX_BY or not (by.isprintable() or not by):
        problems.add("by", f"by must be printable text of at most {MAX_BY} characters (who "
                           "forwarded: a listener's name)")
    number = body.get("attempt", 1)
    if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= MAX_ATTEMPT:
        problems.add("attempt", f"attempt must be a whole number from 1 to {MAX_ATTEMPT}")
    status = body.get("status")
    if status is not None and (isinstance(status, bool) or not isinstance(status, int)
                               or not 100 <= status <= 599):
        problems.add("status", "status must be the target's HTTP status (100-599), or null when "
                               "it did not answer")
    error = body.get("error")
    if error is not None and (not isinstance(error, str) or len(error) > MAX_ERROR):
        problems.add("error", f"error must be text of at most {MAX_ERROR} characters, or null")
    if status is None and not error:
        problems.add("error", "a delivery without a status says why in error")
    elapsed = body.get("elapsed_ms")
    if elapsed is not None and (isinstance(elapsed, bool) or not isinstance(elapsed, int | float)
                                or not math.isfinite(elapsed) or not 0 <= elapsed <= 3.6e6):
        problems.add("elapsed_ms", "elapsed_ms must be milliseconds from 0 to 3600000, or null")
    outcome = body.get("outcome", "delivered")
    if outcome not in OUTCOMES:
        problems.add("outcome", f"outcome must be one of {', '.join(OUTCOMES)}")
    response = _reply(body.get("response"), problems)
    problems.raise_any()
    return {"target": target, "by": by, "attempt": number, "status": status, "error": error,
            "elapsed_ms": elapsed, "outcome": outcome, "response": response}


def _reply(value: Any, problems: Problems) -> dict[str, Any] | None:
    if value is None:
        return None
    shape = ('response must be null or an object such as {"headers": [["content-type", '
             '"text/plain"]], "body_text": "ok"}')
    if not isinstance(value, dict):
        problems.add("response", shape)
        return None
    known = ("headers", "body_text", "body_base64", "body_size", "truncated")
    for key in value:
        if key not in known:
            problems.add(f"response.{key}", f"unknown field {key!r}; known: {', '.join(known)}")
    headers = value.get("headers", [])
    if not isinstance(headers, list) or len(headers) > MAX_REPLY_HEADERS or not all(
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)
            and sum(len(x) for x in pair) <= 8192 for pair in headers):
        problems.add("response.headers", f"headers must be at most {MAX_REPLY_HEADERS} "
                                         "[name, value] pairs of strings")
        headers = []
    text, encoded = value.get("body_text"), value.get("body_base64")
    body = b""
    if text is not None and encoded is not None:
        problems.add("response", "give body_text or body_base64, not both")
    elif isinstance(text, str):
        body = text.encode("utf-8", "surrogatepass")
    elif isinstance(encoded, str):
        try:
            body = base64.b64decode(encoded, validate=True)
        except ValueError:
            problems.add("response.body_base64", "body_base64 is not valid base64")
    elif text is not None or encoded is not None:
        problems.add("response", "body_text and body_base64 must be strings")
    truncated = value.get("truncated", False)
    if len(body) > MAX_DELIVERY_BODY:
        body, truncated = body[:MAX_DELIVERY_BODY], True
    if not isinstance(truncated, bool):
        problems.add("response.truncated", "truncated must be true or false")
    size = value.get("body_size", len(body))
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        problems.add("response.body_size", "body_size must be a whole number of bytes")
    return {"headers": headers, **body_fields(body), "body_size": size,
            "truncated": bool(truncated)}


# -- an endpoint's `forward` ----------------------------------------------------------------------

def check_forward(value: Any, problems: Problems) -> dict[str, Any] | None:
    """An endpoint's `forward` field: null (off) or {"url", "timeout", "retries"}."""
    if value is None:
        return None
    if not isinstance(value, dict):
        problems.add("forward", 'forward must be null or an object such as {"url": '
                                '"https://staging.example.com/hooks", "timeout": 10, '
                                '"retries": 3}')
        return None
    for key in value:
        if key not in FORWARD_FIELDS:
            problems.add(f"forward.{key}", f"unknown field {key!r}; known: "
                                           f"{', '.join(FORWARD_FIELDS)}")
    url = value.get("url")
    problem = _url_problem(url)
    if problem:
        problems.add("forward.url", problem)
    timeout = value.get("timeout", DEFAULT_FORWARD_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not (
            0 < timeout <= MAX_FORWARD_TIMEOUT):
        problems.add("forward.timeout", f"timeout must be a number of seconds, more than 0 "
                                        f"and at most {MAX_FORWARD_TIMEOUT:g}")
    retries = value.get("retries", DEFAULT_FORWARD_RETRIES)
    if isinstance(retries, bool) or not isinstance(retries, int) or not (
            0 <= retries <= MAX_FORWARD_RETRIES):
        problems.add("forward.retries", f"retries must be a whole number from 0 to "
                                        f"{MAX_FORWARD_RETRIES}")
    return {"url": url, "timeout": timeout, "retries": retries}


def _url_problem(value: Any) -> str | None:
    problem = url_problem(value, most=MAX_TARGET, example="such as https://staging.example.com/hooks")
    if problem is None and httpx.URL(value).userinfo:
        return ("url must not hold a user name or password: it would be shown to everyone who "
                "can read the endpoint and its deliveries")
    return problem


async def refused_target(url: str, policy: TargetPolicy) -> str | None:
    """Why `policy` refuses to forward to `url` whatever happens, or None. Only a refusal counts:
    a host name that does not resolve now may later, and each attempt is checked again anyway."""
    parsed = httpx.URL(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        # A slow resolver must not hold up saving the endpoint.
        async with asyncio.timeout(RESOLVE_CHECK_S):
            await policy.address(parsed.host, port, "forwarding")
    except ApiError as exc:
        return exc.message if exc.status == 403 else None
    except TimeoutError:
        return None
    return None
