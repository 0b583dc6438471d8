"""Endpoints API: create, list, get, patch, delete, and a clear 4xx for every bad field."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.anyio


async def test_create_with_no_fields_gives_defaults_and_absolute_urls(client):
    response = await client.post("/api/endpoints")
    assert response.status_code == 201
    created = response.json()
    token = created["token"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{24}", token)  # 144 random bits, URL-safe
    assert created["url"] == f"http://hookscope.test/h/{token}"
    assert created["inspect_url"] == f"http://hookscope.test/e/{token}"
    assert created["stream_url"] == f"http://hookscope.test/api/endpoints/{token}/stream"
    assert created["captures_url"] == f"http://hookscope.test/api/endpoints/{token}/captures"
    assert created["format"] == "auto"
    assert created["verify"] is None and created["schema"] is None
    assert created["response"] == {"status": 200, "headers": {}, "body": None, "delay_ms": 0}
    assert created["reject"] == {"bad_signature": False, "invalid_payload": False}
    assert created["max_captures"] == 10_000
    assert created["expires_at"] is None
    assert created["capture_count"] == 0


async def test_tokens_are_unique(client):
    tokens = {(await client.post("/api/endpoints")).json()["token"] for _ in range(20)}
    assert len(tokens) == 20


def test_tokens_never_start_with_a_dash():
    from hookscope.models import new_token

    # One raw token in 64 would: `hookscope wait -Xy...` then reads like an option.
    tokens = [new_token() for _ in range(3000)]
    assert not [t for t in tokens if t.startswith("-")]
    assert {len(t) for t in tokens} == {24}


async def test_create_with_every_field(client):
    body = {
        "name": "staging avo publish",
        "alias": "avo-staging",
        "verify": {"scheme": "github", "secrets": ["s3cretvalue", "old-s3cretvalue"],
                   "tolerance_seconds": 60},
        "format": "avo.json-schema",
        "schema": None,
        "response": {"status": 202, "headers": {"X-Foo": "bar"}, "body": "ok", "delay_ms": 5},
        "reject": {"bad_signature": True, "invalid_payload": False},
        "max_captures": 50,
        "expires_at": "2099-01-02T03:04:05+01:00",
    }
    created = (await client.post("/api/endpoints", json=body)).json()
    assert created["name"] == "staging avo publish"
    assert created["alias"] == "avo-staging"
    assert created["alias_url"] == "http://hookscope.test/h/avo-staging"
    assert created["verify"]["scheme"] == "github"
    assert created["verify"]["tolerance_seconds"] == 60
    assert created["format"] == "avo.json-schema"
    assert created["response"] == body["response"]
    assert created["reject"] == {"bad_signature": True, "invalid_payload": False}
    assert created["max_captures"] == 50
    assert created["expires_at"] == "2099-01-02T02:04:05.000000Z"


async def test_secrets_are_write_only(client):
    created = (await client.post("/api/endpoints", json={
        "verify": {"scheme": "github", "secrets": ["s3cretvalue", "abc"]}})).json()
    assert created["verify"]["secrets"] == ["s3****", "****"]
    fetched = (await client.get(f"/api/endpoints/{created['token']}")).json()
    assert "s3cretvalue" not in str(fetched)
    listed = (await client.get("/api/endpoints")).json()
    assert "s3cretvalue" not in str(listed)


async def test_custom_schema_is_stored(client):
    schema = {"type": "object", "required": ["id"]}
    created = (await client.post("/api/endpoints", json={"schema": schema})).json()
    assert created["schema"] == schema


async def test_get_by_token_and_by_alias(client):
    created = (await client.post("/api/endpoints", json={"alias": "my-hook"})).json()
    by_token = (await client.get(f"/api/endpoints/{created['token']}")).json()
    by_alias = (await client.get("/api/endpoints/my-hook")).json()
    assert by_token["token"] == by_alias["token"] == created["token"]


async def test_unknown_endpoint_is_404_in_the_error_shape(client):
    response = await client.get("/api/endpoints/nope")
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "details": [],
                                         "message": "no endpoint with token or alias 'nope'"}}


async def test_duplicate_alias_is_409(client):
    await client.post("/api/endpoints", json={"alias": "taken"})
    response = await client.post("/api/endpoints", json={"alias": "taken"})
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "conflict"
    assert error["details"][0]["field"] == "alias"
    other = (await client.post("/api/endpoints")).json()
    response = await client.patch(f"/api/endpoints/{other['token']}", json={"alias": "taken"})
    assert response.status_code == 409
    assert response.json()["error"]["details"][0]["field"] == "alias"
    assert (await client.get(f"/api/endpoints/{other['token']}")).json()["alias"] is None


async def test_alias_cannot_shadow_another_endpoints_token(client, store, monkeypatch):
    tokens = iter(["lowercase-token-aaaaaaaa", "second-token-bbbbbbbbbbb"])
    monkeypatch.setattr(f"{type(store).__module__}.new_token", lambda: next(tokens))
    first = (await client.post("/api/endpoints")).json()
    assert first["token"] == "lowercase-token-aaaaaaaa"
    response = await client.post("/api/endpoints", json={"alias": first["token"]})
    assert response.status_code == 409
    assert (await client.post(f"/h/{first['token']}")).status_code == 200


async def test_list_is_newest_first(client):
    names = ["first", "second", "third"]
    for name in names:
        await client.post("/api/endpoints", json={"name": name})
    listed = (await client.get("/api/endpoints")).json()["endpoints"]
    assert [e["name"] for e in listed] == list(reversed(names))
    limited = (await client.get("/api/endpoints?limit=2")).json()["endpoints"]
    assert [e["name"] for e in limited] == ["third", "second"]


async def test_patch_changes_only_what_it_names(client):
    created = (await client.post("/api/endpoints", json={
        "name": "before", "response": {"status": 201, "body": "made"}})).json()
    response = await client.patch(f"/api/endpoints/{created['token']}",
                                  json={"name": "after", "response": {"status": 500}})
    assert response.status_code == 200
    patched = response.json()
    assert patched["name"] == "after"
    assert patched["response"] == {"status": 500, "headers": {}, "body": "made", "delay_ms": 0}
    assert patched["token"] == created["token"]
    again = (await client.get(f"/api/endpoints/{created['token']}")).json()
    assert again["name"] == "after" and again["response"]["status"] == 500


async def test_patch_takes_effect_on_the_capture_url(client, endpoint):
    token = endpoint["token"]
    assert (await client.post(f"/h/{token}")).status_code == 200
    await client.patch(f"/api/endpoints/{token}", json={"response": {"status": 418}})
    assert (await client.post(f"/h/{token}")).status_code == 418
    await client.patch(f"/api/endpoints/{token}", json={"alias": "renamed"})
    via_alias = await client.post("/h/renamed", content=b"by alias")
    assert via_alias.status_code == 418
    capture = (await client.get(f"/api/captures/{via_alias.headers['x-hookscope-capture']}")
               ).json()
    assert (capture["endpoint"], capture["body_text"]) == (token, "by alias")
    await client.patch(f"/api/endpoints/{token}", json={"alias": None})
    gone = await client.post("/h/renamed")
    assert gone.status_code == 404 and "x-hookscope-capture" not in gone.headers


async def test_patch_verify_without_secrets_keeps_them(client, store):
    created = (await client.post("/api/endpoints", json={
        "verify": {"scheme": "github", "secrets": ["keep-this-secret"]}})).json()
    await client.patch(f"/api/endpoints/{created['token']}",
                       json={"verify": {"scheme": "stripe", "tolerance_seconds": 10}})
    endpoint = await store.get_endpoint(created["token"])
    assert endpoint.verify == {"scheme": "stripe", "secrets": ["keep-this-secret"],
                               "tolerance_seconds": 10}


async def test_patch_expiry_makes_capture_url_gone(client, endpoint):
    token = endpoint["token"]
    patched = await client.patch(f"/api/endpoints/{token}",
                                 json={"expires_at": "2001-01-01T00:00:00"})
    assert patched.json()["expires_at"] == "2001-01-01T00:00:00.000000Z"
    assert (await client.post(f"/h/{token}")).status_code == 410
    await client.patch(f"/api/endpoints/{token}", json={"expires_at": None})
    assert (await client.post(f"/h/{token}")).status_code == 200
    listing = (await client.get(f"/api/endpoints/{token}/captures")).json()
    assert [c["seq"] for c in listing["captures"]] == [1]  # the 410 stored nothing


async def test_delete_removes_the_endpoint_and_its_captures(client, endpoint):
    token = endpoint["token"]
    ids = [(await client.post(f"/h/{token}", content=b"x")).headers["x-hookscope-capture"]
           for _ in range(3)]
    response = await client.delete(f"/api/endpoints/{token}")
    assert response.json() == {"ok": True, "token": token, "captures_deleted": 3}
    assert (await client.get(f"/api/endpoints/{token}")).status_code == 404
    assert (await client.post(f"/h/{token}")).status_code == 404
    for capture_id in ids:
        assert (await client.get(f"/api/captures/{capture_id}")).status_code == 404
    assert (await client.delete(f"/api/endpoints/{token}")).status_code == 404


def _deep(leaf: dict, depth: int) -> dict:
    for _ in range(depth):
        leaf = {"not": leaf}
    return leaf


BAD_FIELDS = [
    ({"name": 5}, "name"),
    ({"name": "x" * 201}, "name"),
    ({"name": "a\x00b"}, "name"),
    ({"alias": "A-Upper"}, "alias"),
    ({"alias": "ab"}, "alias"),
    ({"alias": "-starts-with-dash"}, "alias"),
    ({"alias": "x" * 65}, "alias"),
    ({"alias": 12345}, "alias"),
    ({"alias": "abc\n"}, "alias"),
    ({"verify": "github"}, "verify"),
    ({"verify": {"scheme": "nope"}}, "verify.scheme"),
    ({"verify": {"scheme": "github", "secrets": "s3cret"}}, "verify.secrets"),
    ({"verify": {"scheme": "github", "secrets": [""]}}, "verify.secrets"),
    ({"verify": {"scheme": "github", "secrets": [1]}}, "verify.secrets"),
    ({"verify": {"scheme": "github", "secrets": ["s"] * 11}}, "verify.secrets"),
    ({"verify": {"scheme": "github", "secrets": ["s" * 1025]}}, "verify.secrets"),
    ({"verify": {"scheme": "token", "header": "bad header\n"}}, "verify.header"),
    ({"verify": {"scheme": "hmac", "timestamp_header": "x-ts"}}, "verify.template"),
    ({"verify": {"scheme": "hmac", "id_header": "x-id"}}, "verify.template"),
    ({"verify": {"scheme": "github", "tolerance_seconds": -1}}, "verify.tolerance_seconds"),
    ({"verify": {"scheme": "hmac", "algorithm": 256}}, "verify.algorithm"),
    ({"verify": {"scheme": "hmac", "colour": "red"}}, "verify.colour"),
    ({"format": "xml"}, "format"),
    ({"format": None}, "format"),
    ({"schema": "not an object"}, "schema"),
    ({"schema": {"type": 5}}, "schema"),
    ({"schema": {"properties": {"a": {"minimum": "zero"}}}}, "schema"),
    ({"response": "ok"}, "response"),
    ({"response": {"status": 99}}, "response.status"),
    ({"response": {"status": 600}}, "response.status"),
    ({"response": {"status": 101}}, "response.status"),
    ({"response": {"status": "200"}}, "response.status"),
    ({"response": {"status": True}}, "response.status"),
    ({"response": {"delay_ms": -1}}, "response.delay_ms"),
    ({"response": {"delay_ms": 30_001}}, "response.delay_ms"),
    ({"response": {"delay_ms": 1.5}}, "response.delay_ms"),
    ({"response": {"headers": ["X-A", "b"]}}, "response.headers"),
    ({"response": {"headers": {"Content-Length": "5"}}}, "response.headers.Content-Length"),
    ({"response": {"headers": {"X-A": "a\r\nX-Injected: 1"}}}, "response.headers.X-A"),
    ({"response": {"headers": {"Bad Name": "x"}}}, "response.headers.Bad Name"),
    ({"response": {"headers": {"X-A": 5}}}, "response.headers.X-A"),
    ({"response": {"headers": {"X-A\n": "v"}}}, "response.headers.X-A\n"),
    ({"response": {"headers": {"Set-Cookie": "session=1"}}}, "response.headers.Set-Cookie"),
    ({"response": {"headers": {"X-A": "caf\u20ac"}}}, "response.headers.X-A"),
    ({"response": {"body": 5}}, "response.body"),
    ({"response": {"colour": "red"}}, "response.colour"),
    ({"reject": {"bad_signature": "yes"}}, "reject"),
    ({"reject": {"other": True}}, "reject"),
    ({"max_captures": 0}, "max_captures"),
    ({"max_captures": "10"}, "max_captures"),
    ({"max_captures": 10**9}, "max_captures"),
    ({"expires_at": "tomorrow"}, "expires_at"),
    ({"expires_at": 1767225600}, "expires_at"),
    ({"expires_at": "9999-12-31T23:59:59-14:00"}, "expires_at"),
    ({"expires_at": "0001-01-01T00:00:00+01:00"}, "expires_at"),
    ({"schema": _deep({"type": "object"}, 600)}, "schema"),
    ({"schema": {"$schema": 5}}, "schema"),
    ({"schema": {"$schema": "http://example.com/not-a-draft"}}, "schema"),
    ({"schema": {"$schema": ["http://json-schema.org/draft-07/schema#"]}}, "schema"),
    ({"schema": {"pattern": "a{4294967296}"}}, "schema"),
    ({"schema": {"patternProperties": {"a{99999999999}": {}}}}, "schema"),
    ({"verify": {"scheme": "github", "secrets": ["su****"]}}, "verify.secrets"),
    ({"bogus": 1}, "bogus"),
    ({"token": "mine"}, "token"),
]


@pytest.mark.parametrize(("body", "field"), BAD_FIELDS)
async def test_bad_field_on_create_is_422_naming_the_field(client, body, field):
    response = await client.post("/api/endpoints", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in [d["field"] for d in error["details"]]
    assert error["message"].startswith(field)
    assert (await client.get("/api/endpoints")).json()["endpoints"] == []


@pytest.mark.parametrize(("body", "field"), BAD_FIELDS)
async def test_bad_field_on_patch_is_422_and_changes_nothing(client, endpoint, body, field):
    token = endpoint["token"]
    response = await client.patch(f"/api/endpoints/{token}", json=body)
    assert response.status_code == 422, response.text
    assert field in [d["field"] for d in response.json()["error"]["details"]]
    unchanged = (await client.get(f"/api/endpoints/{token}")).json()
    for key in ("name", "alias", "verify", "format", "schema", "response", "reject",
                "max_captures", "expires_at"):
        assert unchanged[key] == endpoint[key]


async def test_every_problem_is_reported_at_once(client):
    response = await client.post("/api/endpoints", json={
        "alias": "!", "max_captures": -5, "response": {"status": 42, "delay_ms": -1}})
    fields = [d["field"] for d in response.json()["error"]["details"]]
    assert sorted(fields) == ["alias", "max_captures", "response.delay_ms", "response.status"]
    assert "(and 3 more)" in response.json()["error"]["message"]


@pytest.mark.parametrize("raw", [b"{not json", b'{"name": "x"', b"\xff\xfe", b'{"a": NaN',
                                 b'{"name": NaN}', b'{"schema": {"maximum": 1e999}}',
                                 b'{"name": Infinity}', b"[" * 5000 + b"]" * 5000])
async def test_body_that_is_not_json_is_400(client, raw):
    response = await client.post("/api/endpoints", content=raw,
                                 headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"
    assert "not valid JSON" in response.json()["error"]["message"]


@pytest.mark.parametrize("raw", [b"[]", b'"text"', b"42", b"null"])
async def test_json_that_is_not_an_object_is_422(client, raw):
    response = await client.post("/api/endpoints", content=raw)
    assert response.status_code == 422
    assert "JSON object" in response.json()["error"]["message"]


async def test_bad_list_limit_is_400(client):
    for limit in ("0", "1001", "ten"):
        response = await client.get(f"/api/endpoints?limit={limit}")
        assert response.status_code == 400
        assert response.json()["error"]["details"][0]["field"] == "limit"


async def test_lone_surrogate_in_a_field_is_400_not_500(client):
    response = await client.post("/api/endpoints", content=b'{"name": "bad \\ud800"}')
    assert response.status_code == 400
    assert "surrogate" in response.json()["error"]["message"]
    assert (await client.get("/api/endpoints")).json()["endpoints"] == []


async def test_secrets_fetched_masked_and_sent_back_stay_the_real_ones(client, store):
    created = (await client.post("/api/endpoints", json={"verify": {
        "scheme": "stripe", "secrets": ["supersecret", "othersecret"],
        "tolerance_seconds": 30}})).json()
    fetched = (await client.get(f"/api/endpoints/{created['token']}")).json()
    assert fetched["verify"]["secrets"] == ["su****", "ot****"]
    # Rotation: the new secret first, the fetched (masked) ones after it.
    rotated = dict(fetched["verify"], secrets=["brand-new-secret", *fetched["verify"]["secrets"]])
    response = await client.patch(f"/api/endpoints/{created['token']}",
                                  json={"verify": rotated})
    assert response.status_code == 200
    endpoint = await store.get_endpoint(created["token"])
    assert endpoint.verify["secrets"] == ["brand-new-secret", "supersecret", "othersecret"]
    # A patch that names only some options keeps the scheme and the rest.
    await client.patch(f"/api/endpoints/{created['token']}",
                       json={"verify": {"tolerance_seconds": 60}})
    endpoint = await store.get_endpoint(created["token"])
    assert (endpoint.verify["scheme"], endpoint.verify["tolerance_seconds"]) == ("stripe", 60)
    assert endpoint.verify["secrets"] == ["brand-new-secret", "supersecret", "othersecret"]


async def test_a_mask_that_matches_no_secret_is_refused(client, store):
    created = (await client.post("/api/endpoints", json={"verify": {
        "scheme": "github", "secrets": ["supersecret"]}})).json()
    response = await client.patch(f"/api/endpoints/{created['token']}",
                                  json={"verify": {"secrets": ["new-secret", "xy****"]}})
    assert response.status_code == 422
    assert "masked secret" in response.json()["error"]["message"]
    twice = await client.patch(f"/api/endpoints/{created['token']}",
                               json={"verify": {"secrets": ["su****", "su****"]}})
    assert twice.status_code == 422  # one real secret cannot be kept twice
    assert (await store.get_endpoint(created["token"])).verify["secrets"] == ["supersecret"]


def test_masking_matches_the_contract():
    from hookscope.models import mask_secret
    assert mask_secret("s3cret") == "s3****"
    assert mask_secret("short") == "****"
