"""Signatures through the HTTP surface: verdicts on captures, rejection, re-verification."""

from __future__ import annotations

import hmac
from pathlib import Path

import pytest

from hookscope.verify import SCHEMES

pytestmark = pytest.mark.anyio

SIGNATURES_DOC = (Path(__file__).resolve().parent.parent / "docs" / "signatures.md").read_text()


def _github(secret: str, body: bytes) -> dict[str, str]:
    return {"X-Hub-Signature-256": "sha256=" + hmac.new(secret.encode(), body,
                                                        "sha256").hexdigest()}


async def _endpoint(client, **fields) -> dict:
    response = await client.post("/api/endpoints", json=fields)
    assert response.status_code == 201, response.text
    return response.json()


async def _capture(client, response) -> dict:
    return (await client.get(f"/api/captures/{response.headers['x-hookscope-capture']}")).json()


async def test_every_capture_carries_a_verdict(client):
    created = await _endpoint(client, verify={"scheme": "github", "secrets": ["gh-secret"]})
    token = created["token"]
    good = await client.post(f"/h/{token}", content=b"{}", headers=_github("gh-secret", b"{}"))
    bad = await client.post(f"/h/{token}", content=b"{}", headers=_github("nope", b"{}"))
    none = await client.post(f"/h/{token}", content=b"{}")
    assert (await _capture(client, good))["signature"] == {
        "scheme": "github", "status": "verified", "reason": None, "secret_index": 0}
    failed = (await _capture(client, bad))["signature"]
    assert (failed["status"], failed["reason"]) == ("failed",
                                                    "signature does not match the secret")
    assert (await _capture(client, none))["signature"]["status"] == "missing"
    # Without reject, every one of them got the configured response.
    assert [r.status_code for r in (good, bad, none)] == [200, 200, 200]


async def test_list_filters_by_signature_status(client):
    created = await _endpoint(client, verify={"scheme": "github", "secrets": ["k"]})
    token = created["token"]
    await client.post(f"/h/{token}", content=b"1", headers=_github("k", b"1"))
    await client.post(f"/h/{token}", content=b"2", headers=_github("x", b"2"))
    await client.post(f"/h/{token}", content=b"3", headers=_github("k", b"3"))
    verified = (await client.get(f"/api/endpoints/{token}/captures?signature=verified")).json()
    assert [c["seq"] for c in verified["captures"]] == [3, 1]
    failed = (await client.get(f"/api/endpoints/{token}/captures?signature=failed")).json()
    assert [c["seq"] for c in failed["captures"]] == [2]


async def test_endpoint_without_verify_leaves_captures_unchecked(client, endpoint):
    response = await client.post(f"/h/{endpoint['token']}", headers=_github("k", b""))
    assert (await _capture(client, response))["signature"]["status"] == "unchecked"


async def test_reject_bad_signature_answers_401_and_still_records(client):
    created = await _endpoint(client, verify={"scheme": "github", "secrets": ["k"]},
                              reject={"bad_signature": True},
                              response={"status": 202, "body": "fine"})
    token = created["token"]
    refused = await client.post(f"/h/{token}", content=b"forged", headers=_github("x", b"forged"))
    assert refused.status_code == 401
    error = refused.json()["error"]
    assert error["code"] == "bad_signature"
    assert "does not match" in error["message"]
    stored = await _capture(client, refused)
    assert (stored["body_text"], stored["response"]) == ("forged", {"status": 401})
    unsigned = await client.post(f"/h/{token}", content=b"bare")
    assert unsigned.status_code == 401
    assert "missing" in unsigned.json()["error"]["message"]
    accepted = await client.post(f"/h/{token}", content=b"ok", headers=_github("k", b"ok"))
    assert (accepted.status_code, accepted.text) == (202, "fine")


async def test_new_secrets_do_not_rewrite_old_verdicts_until_reverified(client):
    created = await _endpoint(client, verify={"scheme": "github", "secrets": ["old"]})
    token = created["token"]
    response = await client.post(f"/h/{token}", content=b"{}", headers=_github("new", b"{}"))
    capture_id = response.headers["x-hookscope-capture"]
    assert (await _capture(client, response))["signature"]["status"] == "failed"

    await client.patch(f"/api/endpoints/{token}", json={"verify": {"secrets": ["old", "new"]}})
    assert (await _capture(client, response))["signature"]["status"] == "failed"

    again = await client.post(f"/api/captures/{capture_id}/verify")
    assert again.status_code == 200
    assert again.json()["previous"]["status"] == "failed"
    assert again.json()["signature"] == {"scheme": "github", "status": "verified",
                                         "reason": None, "secret_index": 1}
    assert (await _capture(client, response))["signature"]["secret_index"] == 1
    listed = (await client.get(f"/api/endpoints/{token}/captures?signature=verified")).json()
    assert [c["id"] for c in listed["captures"]] == [capture_id]


async def test_reverify_judges_timestamps_by_arrival_not_by_now(client, monkeypatch):
    import time

    created = await _endpoint(client, verify={"scheme": "slack", "secrets": ["s"]})
    stamp = str(int(time.time()))
    signature = "v0=" + hmac.new(b"s", f"v0:{stamp}:".encode() + b"x", "sha256").hexdigest()
    response = await client.post(f"/h/{created['token']}", content=b"x", headers={
        "X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature})
    assert (await _capture(client, response))["signature"]["status"] == "verified"
    # A day later, far outside the tolerance: the delivery was still fresh when it arrived.
    real_time, real_ns = time.time, time.time_ns
    monkeypatch.setattr(time, "time", lambda: real_time() + 86_400)
    monkeypatch.setattr(time, "time_ns", lambda: real_ns() + 86_400 * 10**9)
    again = await client.post(f"/api/captures/{response.headers['x-hookscope-capture']}/verify")
    assert again.json()["signature"]["status"] == "verified"


async def test_reverify_without_a_verify_config_is_409_and_keeps_the_verdict(client):
    created = await _endpoint(client, verify={"scheme": "github", "secrets": ["k"]})
    response = await client.post(f"/h/{created['token']}", content=b"1",
                                 headers=_github("k", b"1"))
    await client.patch(f"/api/endpoints/{created['token']}", json={"verify": None})
    again = await client.post(f"/api/captures/{response.headers['x-hookscope-capture']}/verify")
    assert again.status_code == 409
    assert (await _capture(client, response))["signature"]["status"] == "verified"


async def test_null_options_mean_the_default(client, store):
    created = await _endpoint(client, verify={"scheme": "hmac", "secrets": ["k"],
                                              "template": None, "prefix": None})
    endpoint = await store.get_endpoint(created["token"])
    assert endpoint.verify == {"scheme": "hmac", "secrets": ["k"], "tolerance_seconds": 300}
    signature = hmac.new(b"k", b"body", "sha256").hexdigest()
    response = await client.post(f"/h/{created['token']}", content=b"body",
                                 headers={"X-Signature": signature})
    assert (await _capture(client, response))["signature"]["status"] == "verified"


async def test_a_truncated_capture_says_its_signature_cannot_be_checked(client, settings):
    created = await _endpoint(client, verify={"scheme": "github", "secrets": ["k"]})
    body = b"x" * (settings.max_body_bytes + 10)
    response = await client.post(f"/h/{created['token']}", content=body,
                                 headers=_github("k", body))
    assert response.status_code == 413
    verdict = (await _capture(client, response))["signature"]
    assert (verdict["status"], verdict["reason"]) == (
        "failed", "the body was cut at the size limit, so its signature cannot be checked")


async def test_reverify_unknown_capture_is_404(client):
    response = await client.post("/api/captures/c_missing/verify")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_schemes_are_listed_from_the_registry(client):
    listed = (await client.get("/api/schemes")).json()["schemes"]
    assert [s["id"] for s in listed] == ["auto", *SCHEMES]
    hmac_scheme = next(s for s in listed if s["id"] == "hmac")
    algorithm = next(o for o in hmac_scheme["options"] if o["name"] == "algorithm")
    assert algorithm["choices"] == ["sha1", "sha256", "sha512"]
    assert next(s for s in listed if s["id"] == "stripe")["timed"] is True


@pytest.mark.parametrize("scheme", ["auto", *SCHEMES])
def test_every_scheme_is_in_the_docs_signatures_table(scheme):
    assert any(line.startswith(f"| `{scheme}` ") for line in SIGNATURES_DOC.splitlines()), scheme


@pytest.mark.parametrize(("verify", "field", "words"), [
    ({"scheme": "github", "header": "x"}, "verify.header", "takes no options"),
    ({"scheme": "hmac", "algorithm": "md5"}, "verify.algorithm", "one of sha1, sha256, sha512"),
    ({"scheme": "hmac", "encoding": "base32"}, "verify.encoding", "one of hex, base64"),
    ({"scheme": "hmac", "template": "{timestamp}"}, "verify.template", "must include {body}"),
    ({"scheme": "hmac", "template": "{ts}.{body}"}, "verify.template", "unknown placeholder"),
    ({"scheme": "hmac", "template": "{timestamp}.{body}"}, "verify.timestamp_header",
     "must name the header"),
    ({"scheme": "token", "prefix": 5}, "verify.prefix", "must be a string"),
    ({"scheme": "stripe", "secrets": ["ok", ""]}, "verify.secrets", "non-empty strings"),
])
async def test_bad_verify_configs_are_422_naming_the_option(client, verify, field, words):
    response = await client.post("/api/endpoints", json={"verify": verify})
    assert response.status_code == 422
    details = response.json()["error"]["details"]
    assert any(d["field"] == field and words in d["message"] for d in details), details


async def test_changing_scheme_drops_the_old_schemes_options(client, store):
    created = await _endpoint(client, verify={"scheme": "hmac", "secrets": ["k"],
                                              "header": "x-sig", "algorithm": "sha1"})
    response = await client.patch(f"/api/endpoints/{created['token']}",
                                  json={"verify": {"scheme": "github"}})
    assert response.status_code == 200
    endpoint = await store.get_endpoint(created["token"])
    assert endpoint.verify == {"scheme": "github", "secrets": ["k"], "tolerance_seconds": 300}
