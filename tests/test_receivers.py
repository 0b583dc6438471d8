"""Captured deliveries replayed into real receivers (the pytest plugin's `fixtures` and `deliver`):
a Starlette app that verifies with stripe-python's Webhook.construct_event, a WSGI app that
verifies GitHub's signature as @octokit/webhooks-methods does, and the request each one sees,
byte for byte. The fixtures come from a real Hookscope server through `hookscope snapshot`."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import textwrap
import time
from pathlib import Path

import httpx
import pytest
import stripe
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from hookscope.pytest_plugin import Fixture, deliver, fixtures
from hookscope.verify import CannotSign
from tests.clirun import Receiver, hookscope, run_pytest

STRIPE_LIVE, STRIPE_TEST = "whsec_the_senders_live_secret", "whsec_the_receivers_test_secret"
GITHUB_LIVE, GITHUB_TEST = "live-github-secret", "test-github-secret"
TESTING_DOC = Path(__file__).resolve().parent.parent / "docs" / "testing.md"
STRIPE_EVENT = {"id": "evt_1Nq", "object": "event", "type": "checkout.session.completed",
                "api_version": "2024-06-20", "created": 1_700_000_000, "livemode": False,
                "data": {"object": {"id": "cs_test_1", "object": "checkout.session",
                                    "amount_total": 4200, "currency": "eur"}}}


# -- the receivers under test ---------------------------------------------------------------------

async def stripe_webhook(request: Request) -> Response:
    try:
        event = stripe.Webhook.construct_event(
            await request.body(), request.headers.get("stripe-signature"), STRIPE_TEST)
    except (ValueError, stripe.SignatureVerificationError) as exc:
        return PlainTextResponse(str(exc), status_code=400)
    return JSONResponse({"handled": event["type"], "session": event["data"]["object"]["id"]})


async def echo(request: Request) -> Response:
    body = await request.body()
    return JSONResponse({"method": request.method, "path": request.url.path,
                         "query": request.url.query, "headers": [
                             [k.decode("latin-1"), v.decode("latin-1")]
                             for k, v in request.scope["headers"]],
                         "body": body.hex()})


STARLETTE_APP = Starlette(routes=[
    Route("/webhooks/stripe", stripe_webhook, methods=["POST"]),
    Route("/{rest:path}", echo, methods=["POST", "PUT"]),
])


def github_app(environ, start_response):
    """A plain WSGI receiver: X-Hub-Signature-256 checked over the raw body in constant time."""
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    expected = "sha256=" + hmac.new(GITHUB_TEST.encode(), body, hashlib.sha256).hexdigest()
    given = environ.get("HTTP_X_HUB_SIGNATURE_256", "")
    ok = hmac.compare_digest(given.encode("latin-1"), expected.encode())
    reply = json.dumps({
        "event": environ.get("HTTP_X_GITHUB_EVENT"), "path": environ["PATH_INFO"],
        "query": environ["QUERY_STRING"], "dup": environ.get("HTTP_X_DUP"),
        "latin1": environ.get("HTTP_X_LATIN1"), "sha256": hashlib.sha256(body).hexdigest(),
    }).encode()
    start_response("200 OK" if ok else "401 Unauthorized", [
        ("Content-Type", "application/json"), ("Content-Length", str(len(reply)))])
    return [reply]


# -- captures from a real server, snapshot into files ---------------------------------------------

def _stripe_header(body: bytes, secret: str, stamp: int) -> str:
    """Signed as Stripe signs, here by the sender whose delivery is captured."""
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={mac}"


def _snapshot(server_url: str, token: str, out: Path) -> list[Fixture]:
    result = hookscope("--server", server_url, "snapshot", token, "--out", str(out))
    assert result.code == 0, result.err
    return fixtures(out)


@pytest.fixture(scope="module")
def stripe_fixtures(shared_server, tmp_path_factory) -> list[Fixture]:
    endpoint = httpx.post(f"{shared_server.url}/api/endpoints", json={
        "verify": {"scheme": "stripe", "secrets": [STRIPE_LIVE]}}).json()
    body = json.dumps(STRIPE_EVENT, indent=2).encode()
    response = httpx.post(endpoint["url"] + "/webhooks/stripe", content=body, headers={
        "Content-Type": "application/json; charset=utf-8", "User-Agent": "Stripe/1.0",
        "Stripe-Signature": _stripe_header(body, STRIPE_LIVE, int(time.time()))})
    assert response.status_code == 200
    found = _snapshot(shared_server.url, endpoint["token"], tmp_path_factory.mktemp("stripe"))
    assert [f.data["signature"]["status"] for f in found] == ["verified"]  # the live signature
    return found


@pytest.fixture(scope="module")
def github_fixtures(shared_server, tmp_path_factory) -> list[Fixture]:
    endpoint = httpx.post(f"{shared_server.url}/api/endpoints", json={}).json()
    for event, body in (("push", b'{"ref": "refs/heads/main", "note": "caf\xc3\xa9"}'),
                        ("ping", b'{"zen": "Design for failure."}')):
        mac = hmac.new(GITHUB_LIVE.encode(), body, hashlib.sha256).hexdigest()
        httpx.post(endpoint["url"] + "/gh?installation=7", content=body, headers=[
            ("Content-Type", "application/json"), ("X-GitHub-Event", event),
            ("X-Dup", "1"), ("X-Dup", "2"), ("X-Latin1", b"caf\xe9"),
            ("X-Hub-Signature-256", f"sha256={mac}")]).raise_for_status()
    return _snapshot(shared_server.url, endpoint["token"], tmp_path_factory.mktemp("github"))


# -- the tests ------------------------------------------------------------------------------------

def test_stripe_python_accepts_the_capture_resigned_for_its_test_secret(stripe_fixtures):
    [fixture] = stripe_fixtures
    assert fixture.sub_path == "/webhooks/stripe"
    response = deliver(fixture, to=STARLETTE_APP, sign=("stripe", STRIPE_TEST))
    assert response.status_code == 200, response.text
    assert response.json() == {"handled": "checkout.session.completed", "session": "cs_test_1"}

    # As captured, the signature is the live secret's: the receiver refuses it.
    refused = deliver(fixture, to=STARLETTE_APP)
    assert refused.status_code == 400
    assert "No signatures found matching the expected signature" in refused.text

    # An old capture: signed with the right secret long ago, refused for its timestamp.
    stale = fixture.data | {"headers": [
        [k, _stripe_header(fixture.body, STRIPE_TEST, int(time.time()) - 3600)
         if k == "stripe-signature" else v] for k, v in fixture.headers]}
    assert deliver(stale, to=STARLETTE_APP).status_code == 400
    assert deliver(stale, to=STARLETTE_APP, sign=("stripe", STRIPE_TEST)).status_code == 200


def test_a_wsgi_receiver_checks_githubs_signature_over_the_exact_bytes(github_fixtures):
    assert [f.name for f in github_fixtures] == ["ping-2", "push-1"]
    for fixture in github_fixtures:
        response = deliver(fixture, to=github_app, sign=("github", GITHUB_TEST))
        assert response.status_code == 200, response.text
        assert response.json() == {
            "event": fixture.header("x-github-event"), "path": "/gh", "query": "installation=7",
            "dup": "1,2", "latin1": "café", "sha256": hashlib.sha256(fixture.body).hexdigest()}
        assert deliver(fixture, to=github_app).status_code == 401
        assert deliver(fixture, to=github_app, sign=("github", "another")).status_code == 401


def test_an_asgi_app_gets_the_request_byte_for_byte(github_fixtures):
    fixture = github_fixtures[1]
    response = deliver(fixture, to=STARLETTE_APP)
    seen = response.json()
    assert (seen["method"], seen["path"], seen["query"]) == ("POST", "/gh", "installation=7")
    assert bytes.fromhex(seen["body"]) == fixture.body
    sent = [[k, v] for k, v in fixture.headers if k not in ("host", "connection")]
    assert seen["headers"] == [["host", "testserver"], *sent]

    # path= replaces the sub-path (and with a ?, the query); headers= sets and removes.
    seen = deliver(fixture, to=STARLETTE_APP, path="/other?x=1",
                   headers={"X-Extra": "yes", "x-dup": None}).json()
    assert (seen["path"], seen["query"]) == ("/other", "x=1")
    assert ["x-extra", "yes"] in seen["headers"]
    assert not [h for h in seen["headers"] if h[0] == "x-dup"]


def test_a_url_is_a_target_too(github_fixtures):
    fixture = github_fixtures[1]
    with Receiver(status=202) as receiver:
        response = deliver(fixture, to=receiver.url + "/base", sign=("github", GITHUB_TEST))
    assert response.status_code == 202
    [received] = receiver.requests
    assert (received.path, received.body) == ("/base/gh?installation=7", fixture.body)
    assert [v for k, v in received.headers if k.lower() == "x-dup"] == ["1", "2"]


@pytest.mark.anyio
async def test_deliver_works_from_an_async_test_too(github_fixtures):
    response = deliver(github_fixtures[1], to=STARLETTE_APP)
    assert response.status_code == 200


def test_what_cannot_be_delivered_says_why(github_fixtures, tmp_path):
    fixture = github_fixtures[0]
    with pytest.raises(CannotSign, match="unknown scheme 'stripee'"):
        deliver(fixture, to=github_app, sign=("stripee", "s"))
    with pytest.raises(TypeError, match="sign= takes"):
        deliver(fixture, to=github_app, sign="github")
    with pytest.raises(TypeError, match="to= must be an ASGI or WSGI app"):
        deliver(fixture, to=42)
    with pytest.raises(ValueError, match="the body was cut at the size limit"):
        deliver(fixture.data | {"truncated": True}, to=github_app)
    with pytest.raises(FileNotFoundError, match="hookscope snapshot KEY --out"):
        fixtures(tmp_path / "missing")
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(ValueError, match=r"other\.json is not a Hookscope fixture"):
        fixtures(tmp_path)


def _docs_example() -> dict[str, str]:
    """docs/testing.md's receiver example: the python blocks of its section, by file name."""
    section = TESTING_DOC.read_text().split("## Snapshot and replay into your receiver", 1)[1]
    blocks = re.findall(r"```python\n(.*?)```", section.split("\n## ", 1)[0], re.S)
    return {re.match(r"# (\S+\.py):", block).group(1): block for block in blocks}


def test_the_docs_example_passes_as_written(shared_server, tmp_path):
    """Stripe deliveries captured at a bare capture URL (so the test gives the path), snapshot
    into webhooks/, and the docs' receiver and test run on them by pytest, as a user would."""
    files = _docs_example()
    assert set(files) == {"receiver.py", "test_receiver.py"}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    secret = re.search(r'STRIPE_WEBHOOK_SECRET = "(.*?)"', files["receiver.py"]).group(1)
    assert secret != STRIPE_LIVE
    endpoint = httpx.post(f"{shared_server.url}/api/endpoints", json={}).json()
    for kind in ("checkout.session.completed", "invoice.paid"):
        body = json.dumps(STRIPE_EVENT | {"type": kind}).encode()
        httpx.post(endpoint["url"], content=body, headers={
            "Content-Type": "application/json", "Stripe-Signature": _stripe_header(
                body, STRIPE_LIVE, int(time.time()))}).raise_for_status()
    _snapshot(shared_server.url, endpoint["token"], tmp_path / "webhooks")
    # The same, through the methods of the hookscope fixture.
    (tmp_path / "test_methods.py").write_text(textwrap.dedent('''
        from receiver import STRIPE_WEBHOOK_SECRET, app

        def test_the_fixture_has_fixtures_and_deliver(hookscope):
            found = hookscope.fixtures("webhooks")
            assert [f.name for f in found] == ["checkout.session.completed-1", "invoice.paid-2"]
            response = hookscope.deliver(found[1], to=app, path="/webhooks/stripe", sign={
                "scheme": "stripe", "secrets": [STRIPE_WEBHOOK_SECRET]})
            assert response.json() == {"handled": "invoice.paid"}
    '''))
    result = run_pytest(tmp_path, "-rA")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 passed" in result.stdout
    for test in ("handles_every_captured_event", "refuses_a_delivery_it_cannot_verify"):
        for stem in ("checkout.session.completed-1", "invoice.paid-2"):
            assert f"PASSED test_receiver.py::test_the_receiver_{test}[{stem}]" in result.stdout
