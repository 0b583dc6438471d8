"""Re-signing (hookscope.verify.sign): every scheme signs a captured request for another secret,
and its own check, and the vendor's library where there is one, accepts the result."""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path

import jwt
import pytest
import standardwebhooks
import stripe

from hookscope.models import Capture
from hookscope.ops.replay import replay_headers
from hookscope.verify import (
    COMMON_FIELDS,
    SCHEMES,
    CannotSign,
    SignedRequest,
    check_signature,
    sign,
)

NOW = 1_763_800_000
STALE = NOW - 86_400  # the capture's own timestamps: a day old, outside any tolerance
BODY = b'{"type": "order.paid", "note": "caf\xc3\xa9 \xe2\x9c\x93"}'
# 32 bytes and more: PyJWT warns about shorter HS256 keys.
LIVE, TEST = "live-secret-of-the-sender-32-bytes", "test-secret-of-the-receiver-32-bytes"
LIVE_WHSEC = "whsec_" + base64.b64encode(b"live key bytes, 24 long").decode()
TEST_WHSEC = "whsec_" + base64.b64encode(b"test key bytes, 24 long").decode()
SIGNATURES_DOC = Path(__file__).resolve().parent.parent / "docs" / "signatures.md"


def _capture(headers, query="", body=BODY) -> Capture:
    return Capture(id="c_1", endpoint_id=0, endpoint_token="t", received_at=0, method="POST",
                   path="/h/t", query=query, headers=[list(h) for h in headers],
                   remote_addr=None, content_type="application/json", body_size=len(body),
                   truncated=False, response_status=200, body=body)


def _request(headers, query="", body=BODY) -> SignedRequest:
    return SignedRequest([[k.lower(), v] for k, v in headers], query, body, "application/json")


def resign(config: dict, headers, query: str = "", body: bytes = BODY, secret: str = TEST,
           now: float = NOW) -> tuple[list[list[str]], str]:
    """The request as `deliver` sends it re-signed: the new signature's headers set in place of
    the captured ones (hookscope.ops.replay.replay_headers), and its query when it has one."""
    options = {k: v for k, v in config.items() if k not in COMMON_FIELDS}
    signature = sign(config["scheme"], secret, _request(headers, query, body), now, options)
    sent = replay_headers(_capture(headers, query, body), dict(signature.headers))
    return sent, query if signature.query is None else signature.query


def named(headers) -> dict[str, str]:
    """Headers by lower-case name (the first of each)."""
    found: dict[str, str] = {}
    for name, value in headers:
        found.setdefault(name.lower(), value)
    return found


def verdict(config: dict, headers, query: str = "", body: bytes = BODY, secret: str = TEST
            ) -> dict:
    result = check_signature({**config, "secrets": [secret]}, _request(headers, query, body), NOW)
    assert result is not None
    return result


# Each scheme, its config, and a capture of a delivery signed with the live secret long ago (as
# the sender signed it; the values need not verify: they are what re-signing replaces).
CASES = {
    "github": ({"scheme": "github"}, [
        ("content-type", "application/json"), ("x-github-event", "push"),
        ("x-hub-signature-256", "sha256=" + "ab" * 32)]),
    "github with the legacy header": ({"scheme": "github"}, [
        ("x-hub-signature", "sha1=" + "cd" * 20), ("x-hub-signature-256", "sha256=" + "ab" * 32)]),
    "github, unsigned capture": ({"scheme": "github"}, [("content-type", "application/json")]),
    "stripe": ({"scheme": "stripe"}, [
        ("stripe-signature", f"t={STALE},v1={'ab' * 32},v0={'cd' * 32}")]),
    "standard-webhooks": ({"scheme": "standard-webhooks"}, [
        ("webhook-id", "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"), ("webhook-timestamp", str(STALE)),
        ("webhook-signature", "v1,c2lnbmF0dXJl v1,b3RoZXI=")]),
    "svix": ({"scheme": "svix"}, [
        ("svix-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"), ("svix-timestamp", str(STALE)),
        ("svix-signature", "v1,c2lnbmF0dXJl")]),
    "svix, unsigned capture": ({"scheme": "svix"}, []),
    "shopify": ({"scheme": "shopify"}, [
        ("x-shopify-topic", "orders/create"), ("x-shopify-hmac-sha256", "c2lnbmF0dXJl")]),
    "slack": ({"scheme": "slack"}, [
        ("x-slack-request-timestamp", str(STALE)), ("x-slack-signature", "v0=" + "ab" * 32)]),
    "virtuoso": ({"scheme": "virtuoso"}, [("x-virtuoso-signature", "sha1=" + "ab" * 20)]),
    "avo": ({"scheme": "avo"}, [("authorization", "Bearer " + jwt.encode(
        {"iat": STALE, "workspace": "w1"}, LIVE, algorithm="HS256"))]),
    "webengage": ({"scheme": "webengage"}, []),  # its signature is in the query: see below
    "token": ({"scheme": "token"}, [("authorization", f"Bearer {LIVE}")]),
    "token in its own header": ({"scheme": "token", "header": "x-gitlab-token"}, [
        ("X-Gitlab-Token", LIVE)]),
    "token with a prefix": ({"scheme": "token", "header": "x-auth", "prefix": "Token "}, []),
    "hmac": ({"scheme": "hmac"}, [("x-signature", "ab" * 32)]),
    "hmac, Zoom's way": ({"scheme": "hmac", "header": "x-zm-signature", "prefix": "v0=",
                          "template": "v0:{timestamp}:{body}",
                          "timestamp_header": "x-zm-request-timestamp"}, [
        ("x-zm-request-timestamp", str(STALE)), ("x-zm-signature", "v0=" + "ab" * 32)]),
    "hmac with id, base64 and sha512": (
        {"scheme": "hmac", "header": "x-sig", "algorithm": "sha512", "encoding": "base64",
         "template": "{id}.{timestamp}.{body}", "timestamp_header": "x-ts",
         "id_header": "x-id", "secret_encoding": "base64"},
        [("x-id", "evt_1"), ("x-ts", str(STALE)), ("x-sig", "c2ln")]),
}
QUERY = {"webengage": f"licenseCode=~2024c5a&secret={'ab' * 16}&x=1"}
SECRETS = {"standard-webhooks": (LIVE_WHSEC, TEST_WHSEC), "svix": (LIVE_WHSEC, TEST_WHSEC),
           "hmac with id, base64 and sha512": (base64.b64encode(b"live").decode(),
                                               base64.b64encode(b"test").decode())}


@pytest.mark.parametrize("case", list(CASES))
def test_a_capture_resigned_for_the_test_secret_verifies_with_it_and_only_with_it(case):
    config, headers = CASES[case]
    live, test = SECRETS.get(case) or SECRETS.get(config["scheme"], (LIVE, TEST))
    query = QUERY.get(case, "")
    sent, new_query = resign(config, headers, query, secret=test)
    assert verdict(config, sent, new_query, secret=test) == {
        "scheme": config["scheme"], "status": "verified", "reason": None, "secret_index": 0}
    assert verdict(config, sent, new_query, secret=live)["status"] == "failed"
    # The captured signature headers are replaced where they stood, not added again.
    names = [name.lower() for name, _ in sent]
    assert len(names) == len(set(names))
    captured = [name.lower() for name, _ in headers]
    assert names[:len(captured)] == captured


def test_timestamps_are_fresh_and_ids_kept():
    sent, _ = resign(*CASES["standard-webhooks"], secret=TEST_WHSEC)
    assert named(sent)["webhook-id"] == "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
    assert named(sent)["webhook-timestamp"] == str(NOW)
    assert re.fullmatch(r"v1,[A-Za-z0-9+/=]+", named(sent)["webhook-signature"])
    sent, _ = resign(*CASES["svix, unsigned capture"], secret=TEST_WHSEC)
    assert re.fullmatch(r"msg_[0-9a-f]{24}", named(sent)["svix-id"])
    sent, _ = resign(*CASES["stripe"])
    assert re.fullmatch(rf"t={NOW},v1=[0-9a-f]{{64}}", named(sent)["stripe-signature"])
    sent, _ = resign(*CASES["slack"])
    assert named(sent)["x-slack-request-timestamp"] == str(NOW)
    sent, _ = resign(*CASES["github, unsigned capture"])
    assert [name for name, _ in sent] == ["content-type", "X-Hub-Signature-256"]
    sent, _ = resign(*CASES["github"])
    assert "x-hub-signature" not in named(sent)  # no legacy header made up for a capture without
    sent, query = resign({"scheme": "webengage"}, [], QUERY["webengage"])
    assert query.startswith("licenseCode=~2024c5a&secret=") and query.endswith("&x=1")
    assert query != QUERY["webengage"]


def test_the_vendors_own_libraries_accept_the_new_signatures():
    sent, _ = resign(*CASES["stripe"])
    stripe.WebhookSignature.verify_header(BODY.decode(), named(sent)["stripe-signature"], TEST,
                                          tolerance=None)
    # This library checks the timestamp against the clock, with no way to say otherwise.
    sent, _ = resign(*CASES["standard-webhooks"], secret=TEST_WHSEC, now=time.time())
    webhook = standardwebhooks.Webhook(TEST_WHSEC)
    assert webhook.verify(BODY, named(sent)) == {"type": "order.paid", "note": "café ✓"}
    sent, _ = resign(*CASES["avo"])
    claims = jwt.decode(named(sent)["authorization"].removeprefix("Bearer "), TEST,
                        algorithms=["HS256"])
    assert claims == {"iat": NOW, "workspace": "w1"}


def test_a_jwts_expiry_moves_with_its_issue_time():
    token = jwt.encode({"iat": STALE, "exp": STALE + 600}, LIVE, algorithm="HS256")
    sent, _ = resign({"scheme": "avo"}, [("authorization", f"Bearer {token}")])
    claims = jwt.decode(named(sent)["authorization"][7:], TEST, algorithms=["HS256"],
                        options={"verify_exp": False})
    assert claims == {"iat": NOW, "exp": NOW + 600}


def test_a_jwt_whose_payload_is_not_an_object_is_signed_anew_without_its_claims():
    token = jwt.api_jws.encode(b"[1, 2]", LIVE, algorithm="HS256")
    sent, _ = resign({"scheme": "avo"}, [("authorization", f"Bearer {token}")])
    claims = jwt.decode(named(sent)["authorization"][7:], TEST, algorithms=["HS256"])
    assert claims == {"iat": NOW}


def test_auto_signs_with_the_scheme_the_capture_carries():
    sent, _ = resign({"scheme": "auto"}, CASES["slack"][1])
    assert verdict({"scheme": "slack"}, sent)["status"] == "verified"
    with pytest.raises(CannotSign, match="carries no signature of a known scheme, so name one"):
        resign({"scheme": "auto"}, [("content-type", "application/json")])


@pytest.mark.parametrize(("config", "secret", "query", "message"), [
    ({"scheme": "nope"}, TEST, "", "unknown scheme 'nope'; known: standard-webhooks, svix,"),
    ({"scheme": "svix"}, "not base64!", "", "Svix secrets are whsec_ followed by base64"),
    ({"scheme": "webengage"}, TEST, "secret=ab", "the request has none"),
    ({"scheme": "hmac", "template": "{timestamp}"}, TEST, "", "template must include {body}"),
    ({"scheme": "hmac", "secret_encoding": "base64"}, "%%%", "", "the secret is not base64"),
    ({"scheme": "github", "header": "x"}, TEST, "", "unknown option 'header'"),
    ({"scheme": "github"}, "", "", "must be a non-empty string"),
])
def test_what_cannot_be_signed_says_why(config, secret, query, message):
    with pytest.raises(CannotSign, match=re.escape(message)):
        resign(config, [], query, secret=secret)


def test_every_scheme_signs_and_signatures_md_says_so():
    assert [s.id for s in SCHEMES.values() if s.sign is None] == []
    section = SIGNATURES_DOC.read_text().split("## Re-signing", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert {name for row in rows for name in re.findall(r"`([a-z-]+)`", row.split(" | ")[0])
            } == {"auto", *SCHEMES}
