"""Signature schemes: published vectors, independent signers, and every way a signature fails."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlencode

import jwt
import pytest
import standardwebhooks
import stripe

from hookscope.verify import SCHEMES, SignedRequest, check_signature
from hookscope.verify.base import digest, span, timestamp_problem

NOW = 1_763_800_000
BODY = b'{"event": "order.created", "id": 42, "note": "caf\xc3\xa9"}'


def verdict(config: dict, headers=(), query: str = "", body: bytes = BODY,
            now: float = NOW, content_type: str | None = "application/json") -> dict:
    request = SignedRequest(headers=[[k.lower(), v] for k, v in headers], query=query, body=body,
                            content_type=content_type)
    result = check_signature(config, request, now)
    assert result is not None
    return result


# -- published test vectors ----------------------------------------------------------------------


def test_standard_webhooks_published_vector():
    headers = [("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
               ("webhook-timestamp", "1614265330"),
               ("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")]
    result = verdict({"scheme": "standard-webhooks",
                      "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]},
                     headers, body=b'{"test": 2432232314}', now=1614265330)
    assert result == {"scheme": "standard-webhooks", "status": "verified", "reason": None,
                      "secret_index": 0}


def test_github_published_vector():
    headers = [("X-Hub-Signature-256",
                "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")]
    result = verdict({"scheme": "github", "secrets": ["It's a Secret to Everybody"]}, headers,
                     body=b"Hello, World!")
    assert result["status"] == "verified"


def test_slack_published_vector():
    body = (b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&"
            b"channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&"
            b"command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2F"
            b"commands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id="
            b"398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c")
    headers = [("X-Slack-Request-Timestamp", "1531420618"),
               ("X-Slack-Signature",
                "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503")]
    result = verdict({"scheme": "slack", "secrets": ["8f742231b10e8888abcd99yyyzzz85a5"]},
                     headers, body=body, now=1531420618,
                     content_type="application/x-www-form-urlencoded")
    assert result["status"] == "verified"


# -- one signer per scheme, most of them the vendor's own code ---------------------------------


@dataclass
class Signed:
    headers: list[tuple[str, str]]
    query: str = ""
    body: bytes = BODY
    content_type: str = "application/json"


def _hex(algorithm: str, secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, algorithm).hexdigest()


def sign_standard(prefix: str) -> Callable[[str, int, bytes], Signed]:
    def sign(secret: str, ts: int, body: bytes) -> Signed:
        header = standardwebhooks.Webhook(secret).sign(
            "msg_1", datetime.fromtimestamp(ts, UTC), body.decode())
        return Signed([(f"{prefix}-id", "msg_1"), (f"{prefix}-timestamp", str(ts)),
                       (f"{prefix}-signature", header)], body=body)
    return sign


def sign_stripe(secret: str, ts: int, body: bytes) -> Signed:
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret, ts)
    return Signed([("Stripe-Signature", header)], body=body)


def sign_github(secret: str, ts: int, body: bytes) -> Signed:
    return Signed([("X-Hub-Signature-256", "sha256=" + _hex("sha256", secret, body))], body=body)


def sign_shopify(secret: str, ts: int, body: bytes) -> Signed:
    mac = hmac.new(secret.encode(), body, "sha256").digest()
    return Signed([("X-Shopify-Hmac-Sha256", base64.b64encode(mac).decode())], body=body)


def sign_slack(secret: str, ts: int, body: bytes) -> Signed:
    signature = "v0=" + _hex("sha256", secret, f"v0:{ts}:".encode() + body)
    return Signed([("X-Slack-Request-Timestamp", str(ts)), ("X-Slack-Signature", signature)],
                  body=body)


def sign_avo(secret: str, ts: int, body: bytes) -> Signed:
    token = jwt.encode({"iat": ts}, secret, algorithm="HS256", headers={"typ": "Jwt"})
    return Signed([("Authorization", f"Bearer {token}")], body=body)


def sign_virtuoso(secret: str, ts: int, body: bytes) -> Signed:
    return Signed([("X-Virtuoso-Signature", "sha1=" + _hex("sha1", secret, body))], body=body)


def sign_webengage(secret: str, ts: int, body: bytes) -> Signed:
    digest = hashlib.md5(f"LIC123:{secret}".encode()).hexdigest()
    query = urlencode({"licenseCode": "LIC123", "secret": digest, "eventType": "user"})
    return Signed([], query=query, body=body)


HMAC_OPTIONS = {"header": "x-sig", "algorithm": "sha512", "encoding": "base64",
                "prefix": "v1=", "template": "{id}:{timestamp}:{body}",
                "timestamp_header": "x-ts", "id_header": "x-id"}


def sign_hmac(secret: str, ts: int, body: bytes) -> Signed:
    mac = hmac.new(secret.encode(), f"evt-9:{ts}:".encode() + body, "sha512").digest()
    return Signed([("X-Id", "evt-9"), ("X-Ts", str(ts)),
                   ("X-Sig", "v1=" + base64.b64encode(mac).decode())], body=body)


def sign_token(secret: str, ts: int, body: bytes) -> Signed:
    return Signed([("Authorization", f"Bearer {secret}")], body=body)


def _whsec() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def _plain() -> str:
    return "s3cret-" + os.urandom(8).hex()


@dataclass
class Case:
    scheme: str
    sign: Callable[[str, int, bytes], Signed]
    new_secret: Callable[[], str] = _plain
    options: dict = field(default_factory=dict)
    timed: bool = False
    auto: bool = True
    # What "the signature header is absent" means for this scheme.
    strip: tuple[str, ...] = ()


CASES = [
    Case("standard-webhooks", sign_standard("webhook"), _whsec, timed=True,
         strip=("webhook-signature",)),
    Case("svix", sign_standard("svix"), _whsec, timed=True, strip=("svix-signature",)),
    Case("stripe", sign_stripe, lambda: "whsec_" + os.urandom(16).hex(), timed=True,
         strip=("stripe-signature",)),
    Case("github", sign_github, strip=("x-hub-signature-256",)),
    Case("shopify", sign_shopify, strip=("x-shopify-hmac-sha256",)),
    Case("slack", sign_slack, timed=True, strip=("x-slack-signature",)),
    Case("avo", sign_avo, lambda: "avo-" + os.urandom(16).hex(), timed=True,
         strip=("authorization",)),
    Case("virtuoso", sign_virtuoso, strip=("x-virtuoso-signature",)),
    Case("webengage", sign_webengage, strip=("?",)),
    Case("hmac", sign_hmac, options=HMAC_OPTIONS, timed=True, auto=False, strip=("x-sig",)),
    Case("token", sign_token, auto=False, strip=("authorization",)),
]
IDS = [c.scheme for c in CASES]


def test_every_registered_scheme_has_a_case():
    assert sorted(IDS) == sorted(SCHEMES)


def _run(case: Case, secrets: list[str], signed: Signed, *, now: float = NOW,
         scheme: str | None = None, **config) -> dict:
    return verdict({"scheme": scheme or case.scheme, "secrets": secrets, **case.options,
                    **config}, signed.headers, signed.query, signed.body, now,
                   signed.content_type)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_good_signature_verifies(case):
    secret = case.new_secret()
    result = _run(case, [secret], case.sign(secret, NOW, BODY))
    assert result == {"scheme": case.scheme, "status": "verified", "reason": None,
                      "secret_index": 0}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_tampered_body_fails(case):
    secret = case.new_secret()
    signed = case.sign(secret, NOW, BODY)
    signed.body = BODY.replace(b"42", b"43")
    result = _run(case, [secret], signed)
    if case.scheme in ("avo", "webengage", "token"):
        # These do not cover the body at all: say so by still verifying.
        assert result["status"] == "verified"
    else:
        assert result["status"] == "failed"
        assert result["reason"] == "signature does not match the secret"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_wrong_secret_fails(case):
    signed = case.sign(case.new_secret(), NOW, BODY)
    result = _run(case, [case.new_secret(), case.new_secret()], signed)
    assert result["status"] == "failed"
    assert result["reason"] == "signature matches none of the 2 secrets"
    assert result["secret_index"] is None


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_absent_signature_is_missing(case):
    secret = case.new_secret()
    signed = case.sign(secret, NOW, BODY)
    if case.strip == ("?",):
        signed.query = ""
    else:
        signed.headers = [(k, v) for k, v in signed.headers if k.lower() not in case.strip]
    result = _run(case, [secret], signed)
    assert result["status"] == "missing"
    assert result["reason"]


@pytest.mark.parametrize("case", [c for c in CASES if c.timed], ids=[c.scheme for c in CASES
                                                                     if c.timed])
def test_stale_or_future_timestamp_fails_with_the_reason(case):
    secret = case.new_secret()
    stale = _run(case, [secret], case.sign(secret, NOW - 301, BODY))
    assert stale["status"] == "failed"
    assert "301 s old, outside the tolerance of 300 s" in stale["reason"]
    assert stale["secret_index"] == 0  # the signature itself was right
    future = _run(case, [secret], case.sign(secret, NOW + 400, BODY))
    assert "in the future" in future["reason"]
    within = _run(case, [secret], case.sign(secret, NOW - 299, BODY))
    assert within["status"] == "verified"
    wider = _run(case, [secret], case.sign(secret, NOW - 3600, BODY), tolerance_seconds=7200)
    assert wider["status"] == "verified"
    unchecked_time = _run(case, [secret], case.sign(secret, NOW - 10**6, BODY),
                          tolerance_seconds=0)
    assert unchecked_time["status"] == "verified"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_rotation_any_secret_verifies_and_says_which(case):
    old, new = case.new_secret(), case.new_secret()
    result = _run(case, [old, new], case.sign(new, NOW, BODY))
    assert (result["status"], result["secret_index"]) == ("verified", 1)


@pytest.mark.parametrize("case", [c for c in CASES if c.auto], ids=[c.scheme for c in CASES
                                                                    if c.auto])
def test_auto_picks_the_scheme_from_the_request(case):
    secret = case.new_secret()
    result = _run(case, [secret], case.sign(secret, NOW, BODY), scheme="auto")
    assert result == {"scheme": case.scheme, "status": "verified", "reason": None,
                      "secret_index": 0, "auto": True}


def test_auto_picks_the_first_scheme_in_order_among_several_signatures():
    """A request signed every way `auto` knows: it takes the first scheme in SCHEMES' order,
    whether that one is recognised by a header (most) or otherwise (Avo, WebEngage)."""
    order = list(SCHEMES)
    auto = sorted((c for c in CASES if c.auto), key=lambda c: order.index(c.scheme))
    assert len(auto) == 9
    for start, case in enumerate(auto):
        signed = [c.sign(c.new_secret(), NOW, BODY) for c in auto[start:]]
        headers = [pair for one in signed for pair in one.headers]
        query = "&".join(one.query for one in signed if one.query)
        result = verdict({"scheme": "auto", "secrets": ["x"]}, headers, query)
        assert (result["scheme"], result["auto"]) == (case.scheme, True)


def test_auto_with_no_known_signature_is_missing():
    result = verdict({"scheme": "auto", "secrets": ["x"]}, [("x-other", "1")])
    assert (result["scheme"], result["status"]) == ("auto", "missing")


def test_no_secret_is_unchecked_and_no_config_is_nothing():
    signed = sign_github("abc", NOW, BODY)
    result = verdict({"scheme": "github", "secrets": []}, signed.headers)
    assert (result["status"], result["reason"]) == ("unchecked", "no secret configured")
    request = SignedRequest(headers=[], query="", body=b"")
    assert check_signature(None, request, NOW) is None


# -- scheme details ----------------------------------------------------------------------------


def test_standard_webhooks_accepts_a_space_separated_list():
    secret = _whsec()
    signed = sign_standard("webhook")(secret, NOW, BODY)
    good = dict(signed.headers)["webhook-signature"]
    listed = f"v1,{base64.b64encode(os.urandom(32)).decode()} v1a,ignored {good}"
    signed.headers = [(k, listed if k == "webhook-signature" else v) for k, v in signed.headers]
    assert _run(CASES[0], [secret], signed)["status"] == "verified"


def test_stripe_ignores_non_v1_entries():
    secret = "whsec_test"
    body = BODY
    v1 = _hex("sha256", secret, f"{NOW}.".encode() + body)
    only_v0 = verdict({"scheme": "stripe", "secrets": [secret]},
                      [("Stripe-Signature", f"t={NOW},v0={v1}")], body=body)
    assert only_v0["status"] == "failed" and "v1" in only_v0["reason"]
    mixed = verdict({"scheme": "stripe", "secrets": [secret]},
                    [("Stripe-Signature", f"t={NOW},v0=00,v1={'ab' * 32},v1={v1}")], body=body)
    assert mixed["status"] == "verified"


def test_github_legacy_sha1_header():
    secret = "legacy"
    signed = [("X-Hub-Signature", "sha1=" + _hex("sha1", secret, BODY))]
    assert verdict({"scheme": "github", "secrets": [secret]}, signed)["status"] == "verified"


def test_virtuoso_form_delivery_verifies_over_the_payload_field():
    secret = "virtuoso-secret"
    inner = json.dumps({"type": "PING", "project": {"id": 1}})
    body = urlencode({"payload": inner}).encode()
    for signed_content in (body, inner.encode()):
        result = verdict({"scheme": "virtuoso", "secrets": [secret]},
                         [("X-Virtuoso-Signature", "sha1=" + _hex("sha1", secret,
                                                                  signed_content))],
                         body=body, content_type="application/x-www-form-urlencoded")
        assert result["status"] == "verified"


def test_token_in_a_custom_header_and_bare_authorization():
    config = {"scheme": "token", "secrets": ["gl-token"], "header": "X-Gitlab-Token"}
    assert verdict(config, [("X-Gitlab-Token", "gl-token")])["status"] == "verified"
    assert verdict(config, [("X-Gitlab-Token", "gl-tokeN")])["status"] == "failed"
    bare = {"scheme": "token", "secrets": ["plain"]}
    assert verdict(bare, [("Authorization", "plain")])["status"] == "verified"


def test_hmac_with_defaults_is_hex_sha256_of_the_body():
    config = {"scheme": "hmac", "secrets": ["k"]}
    signature = _hex("sha256", "k", BODY)
    assert verdict(config, [("X-Signature", signature)])["status"] == "verified"
    assert verdict(config, [("X-Signature", signature.upper())])["status"] == "verified"


def test_hmac_with_base64_secret():
    key = os.urandom(32)
    config = {"scheme": "hmac", "secrets": [base64.b64encode(key).decode()],
              "secret_encoding": "base64"}
    signature = hmac.new(key, BODY, "sha256").hexdigest()
    assert verdict(config, [("X-Signature", signature)])["status"] == "verified"


# -- hostile input: always a verdict with a reason, never an exception -------------------------

HOSTILE_VALUES = ["", " ", "=", "v1,", "sha256=", "sha256=zz", "v0=not-hex", "t=,v1=",
                  "t=abc,v1=00", "v1,!!!notbase64!!!", "Bearer", "Bearer a.b", "Bearer ...",
                  "Bearer e30.e30.", "\xe9\xe8\xff" * 10, "x" * 100_000, "sha1=" + "0" * 5000,
                  "v1," + "A" * 100_000]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_hostile_header_values_fail_with_a_reason(case):
    secret = case.new_secret()
    signed = case.sign(secret, NOW, BODY)
    for value in HOSTILE_VALUES:
        mangled = [(k, value) for k, _ in signed.headers] or [("x-any", value)]
        query = urlencode({"licenseCode": value, "secret": value}) if case.scheme == \
            "webengage" else signed.query
        result = _run(case, [secret], Signed(mangled, query=query, body=signed.body))
        assert result["status"] in ("failed", "missing"), (value[:20], result)
        assert result["reason"]
        assert "could not check" not in result["reason"], (value[:20], result)  # no exception


def _jwt_with(header: dict, claims: dict, secret: str = "avo-secret") -> str:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    signing_input = f"{part(header)}.{part(claims)}"
    signature = base64.urlsafe_b64encode(
        hmac.new(secret.encode(), signing_input.encode(), "sha256").digest()).rstrip(b"=")
    return f"{signing_input}.{signature.decode()}"


@pytest.mark.parametrize(("token", "reason"), [
    (_jwt_with({"alg": "none"}, {"iat": NOW}).rsplit(".", 1)[0] + ".", "alg 'none' is refused"),
    (jwt.encode({"iat": NOW}, "avo-secret-that-is-long-enough-for-hs512-keys-64bytes-xxxxxxxxxx",
                algorithm="HS512"), "alg 'HS512' is refused"),
    (_jwt_with({"alg": "HS256"}, {"sub": "no iat"}), "no numeric iat"),
    (_jwt_with({"alg": "HS256"}, {"iat": "yesterday"}), "no numeric iat"),
    (_jwt_with({"alg": "HS256"}, {"iat": NOW}, secret="other"), "does not match"),
    ("a.b.c", "not base64url-encoded JSON"),
])
def test_avo_refuses_bad_tokens_with_a_reason(token, reason):
    result = verdict({"scheme": "avo", "secrets": ["avo-secret"]},
                     [("Authorization", f"Bearer {token}")])
    assert result["status"] == "failed"
    assert reason in result["reason"]


def test_avo_accepts_pyjwt_tokens_with_the_real_clock():
    now = int(time.time())
    secret = "an-avo-webhook-secret-of-32-bytes"
    token = jwt.encode({"iat": now}, secret, algorithm="HS256", headers={"typ": "Jwt"})
    result = verdict({"scheme": "avo", "secrets": [secret]},
                     [("Authorization", f"Bearer {token}")], now=now + 5)
    assert result["status"] == "verified"


def test_bad_whsec_secret_says_so():
    signed = sign_standard("webhook")(_whsec(), NOW, BODY)
    result = _run(CASES[0], ["whsec_not base64!"], signed)
    assert result["status"] == "failed"
    assert "base64" in result["reason"]


@pytest.mark.parametrize("stamp", ["9" * 400, "1e10", "-5", "0x10", " ", "1_763_800_000"])
def test_absurd_timestamps_fail_with_a_reason(stamp):
    secret = "k"
    signature = "v0=" + _hex("sha256", secret, f"v0:{stamp}:".encode() + BODY)
    result = verdict({"scheme": "slack", "secrets": [secret]},
                     [("X-Slack-Request-Timestamp", stamp), ("X-Slack-Signature", signature)])
    assert result["status"] == "failed"
    assert "is not a number of seconds" in result["reason"]


@pytest.mark.parametrize("claims", [b'{"iat": 1e400}', b'{"iat": NaN}', b'{"iat": -1}',
                                    b'{"iat": 10000000000000}', b'{"iat": true}',
                                    b'{"iat": null}'])
def test_avo_absurd_iat_fails_with_a_reason(claims):
    token = _resign(f"{_b64({'alg': 'HS256'})}.{_b64raw(claims)}.unsigned")
    result = verdict({"scheme": "avo", "secrets": ["avo-secret"]},
                     [("Authorization", f"Bearer {token}")])
    assert (result["status"], result["secret_index"]) == ("failed", 0)
    assert "no numeric iat" in result["reason"]


def _b64(data: dict) -> str:
    return _b64raw(json.dumps(data).encode())


def _b64raw(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _resign(token: str, secret: str = "avo-secret") -> str:
    signing_input = token.rsplit(".", 1)[0]
    signature = hmac.new(secret.encode(), signing_input.encode(), "sha256").digest()
    return f"{signing_input}.{_b64raw(signature)}"


def test_virtuoso_form_with_extra_fields_does_not_verify_over_the_payload():
    secret = "virtuoso-secret"
    inner = json.dumps({"type": "PING"})
    body = urlencode({"payload": inner, "admin": "true"}).encode()
    result = verdict({"scheme": "virtuoso", "secrets": [secret]},
                     [("X-Virtuoso-Signature", "sha1=" + _hex("sha1", secret, inner.encode()))],
                     body=body, content_type="application/x-www-form-urlencoded")
    assert result["status"] == "failed"


def test_naming_the_scheme_refuses_a_cross_scheme_replay():
    """An old Stripe delivery re-sent as a GitHub one: `auto` lets the sender choose (and says
    which it chose); a named scheme does not."""
    secret = "whsec_shared"
    old = NOW - 86_400
    v1 = _hex("sha256", secret, f"{old}.".encode() + BODY)
    replay = [("X-Hub-Signature-256", f"sha256={v1}")]
    body = f"{old}.".encode() + BODY
    named = verdict({"scheme": "stripe", "secrets": [secret]}, replay, body=body)
    assert named["status"] == "missing"
    picked = verdict({"scheme": "auto", "secrets": [secret]}, replay, body=body)
    assert (picked["scheme"], picked["auto"]) == ("github", True)


def test_a_truncated_body_cannot_be_verified_and_says_so():
    signed = sign_github("k", NOW, BODY)
    request = SignedRequest(headers=[[k.lower(), v] for k, v in signed.headers], query="",
                            body=BODY[:10])
    result = check_signature({"scheme": "github", "secrets": ["k"]}, request, NOW,
                             truncated=True)
    assert result["status"] == "failed"
    assert "cut at the size limit" in result["reason"]


def test_digest_keys_once_and_never_carries_one_message_into_the_next():
    """digest() copies an HMAC keyed once per secret: each call must equal a fresh hmac.new."""
    calls = [("sha256", b"k1", b"first"), ("sha256", b"k1", b"second"), ("sha256", b"k2", b"first"),
             ("sha1", b"k1", b"first"), ("sha512", b"", b""), ("sha256", b"k1", b"first"),
             ("sha256", b"x" * 200, b"y" * 5000)]  # a key longer than a block; a long body
    for algorithm, key, message in calls:
        assert digest(algorithm, key, message) == hmac.new(key, message, algorithm).digest()


@pytest.mark.parametrize(("seconds", "words"), [(0, "0 s"), (119, "119 s"), (120, "2 min"),
                                                (3720, "62 min"), (7200, "2 h"),
                                                (47 * 3600, "47 h"), (3 * 86400, "3 days")])
def test_a_timestamp_drift_is_said_in_words(seconds, words):
    assert span(seconds) == words


def test_a_stale_timestamp_names_its_age_and_the_tolerance_in_words():
    problem = timestamp_problem("1000", 1000 + 3720, 300, header="X-Timestamp")
    assert problem == ("timestamp 1000 is 62 min old, outside the tolerance of 5 min (a replay, "
                       "or a clock that is off)")
    ahead = timestamp_problem("5000", 1000, 300, header="X-Timestamp")
    assert ahead is not None and "66 min in the future" in ahead
