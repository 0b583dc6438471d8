"""Captures API: listing, paging, filters, full views, raw bodies, delete and clear."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.anyio


async def _send(client, token: str, n: int, **kwargs) -> list[str]:
    return [(await client.post(f"/h/{token}", content=f"body {i}".encode(), **kwargs)
             ).headers["x-hookscope-capture"] for i in range(n)]


async def test_list_is_newest_first_with_summaries(client, endpoint):
    ids = await _send(client, endpoint["token"], 3)
    listing = (await client.get(f"/api/endpoints/{endpoint['token']}/captures")).json()
    assert [c["id"] for c in listing["captures"]] == list(reversed(ids))
    assert [c["seq"] for c in listing["captures"]] == [3, 2, 1]
    assert listing["next_after"] == 3
    assert listing["next_before"] == 1
    assert listing["total"] == 3
    assert listing["endpoint"] == endpoint["token"]
    summary = listing["captures"][0]
    assert "body_text" not in summary and "body_base64" not in summary
    assert summary["parsed"] == {"kind": "text", "error": None}
    assert summary["body_size"] == len(b"body 2")


async def test_after_walks_forward_oldest_first_until_empty(client, endpoint):
    token = endpoint["token"]
    ids = await _send(client, token, 7)
    seen, after = [], 0
    while True:
        page = (await client.get(f"/api/endpoints/{token}/captures",
                                 params={"after": after, "limit": 3})).json()
        if not page["captures"]:
            assert page["next_after"] == after
            break
        seen.extend(c["id"] for c in page["captures"])
        after = page["next_after"]
    assert seen == ids


async def test_empty_list_has_next_after_zero(client, endpoint):
    listing = (await client.get(f"/api/endpoints/{endpoint['token']}/captures")).json()
    assert listing == {"endpoint": endpoint["token"], "captures": [], "next_after": 0,
                       "next_before": None, "total": 0}


async def test_before_pages_backwards(client, endpoint):
    token = endpoint["token"]
    await _send(client, token, 5)
    page = (await client.get(f"/api/endpoints/{token}/captures?before=4&limit=2")).json()
    assert [c["seq"] for c in page["captures"]] == [3, 2]
    assert page["next_before"] == 2


async def test_filter_by_method(client, endpoint):
    token = endpoint["token"]
    await client.post(f"/h/{token}")
    await client.put(f"/h/{token}")
    await client.post(f"/h/{token}")
    listing = (await client.get(f"/api/endpoints/{token}/captures?method=put")).json()
    assert [c["method"] for c in listing["captures"]] == ["PUT"]


async def test_q_searches_path_headers_and_body(client, endpoint):
    token = endpoint["token"]
    await client.post(f"/h/{token}/orders/created", content=b"{}")
    await client.post(f"/h/{token}", headers={"X-Event": "invoice.paid"}, content=b"{}")
    await client.post(f"/h/{token}", content=b'{"customer": "Ada Lovelace"}')
    await client.post(f"/h/{token}", content=b"100%_literal")

    async def found(q: str) -> list[int]:
        page = (await client.get(f"/api/endpoints/{token}/captures", params={"q": q})).json()
        return [c["seq"] for c in page["captures"]]

    assert await found("orders/created") == [1]
    assert await found("invoice.paid") == [2]
    assert await found("ada lovelace") == [3]  # case-insensitive for ASCII
    assert await found("%_") == [4]  # LIKE wildcards are matched literally
    assert await found("nowhere") == []


async def test_filters_by_signature_and_validation_status(client, endpoint):
    token = endpoint["token"]
    await _send(client, token, 2)
    unchecked = (await client.get(f"/api/endpoints/{token}/captures?signature=unchecked")).json()
    assert len(unchecked["captures"]) == 2
    verified = (await client.get(f"/api/endpoints/{token}/captures?signature=verified")).json()
    assert verified["captures"] == []
    unknown = (await client.get(f"/api/endpoints/{token}/captures?validation=unknown")).json()
    assert len(unknown["captures"]) == 2


@pytest.mark.parametrize(("query", "field"), [
    ("limit=0", "limit"), ("limit=1001", "limit"), ("limit=x", "limit"),
    ("after=-1", "after"), ("after=one", "after"), ("before=1.5", "before"),
    ("after=99999999999999999999", "after"), ("before=9223372036854775808", "before"),
    ("signature=great", "signature"), ("validation=maybe", "validation"),
    ("colour=red", "colour"),
])
async def test_bad_list_parameters_are_400_naming_the_parameter(client, endpoint, query, field):
    response = await client.get(f"/api/endpoints/{endpoint['token']}/captures?{query}")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "bad_request"
    assert error["details"][0]["field"] == field


async def test_list_of_unknown_endpoint_is_404(client):
    response = await client.get("/api/endpoints/ghost/captures")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_capture_in_full(client, endpoint):
    response = await client.post(f"/h/{endpoint['token']}/deep/path?x=1",
                                 json={"event": "ping", "n": [1, 2]})
    capture = (await client.get(f"/api/captures/{response.headers['x-hookscope-capture']}")
               ).json()
    assert capture["endpoint"] == endpoint["token"]
    assert capture["path"] == f"/h/{endpoint['token']}/deep/path"
    assert capture["query"] == "x=1"
    assert capture["body_text"] == '{"event":"ping","n":[1,2]}'
    assert capture["body_base64"] is None
    assert capture["parsed"] == {"kind": "json", "value": {"event": "ping", "n": [1, 2]},
                                 "error": None}
    assert capture["signature"] == {"scheme": None, "status": "unchecked", "reason": None,
                                    "secret_index": None}
    assert capture["validation"] == {"format": None, "detected": False, "status": "unknown",
                                     "errors": []}
    assert capture["response"] == {"status": 200}


async def test_invalid_json_body_is_reported_not_raised(client, endpoint):
    response = await client.post(f"/h/{endpoint['token']}", content=b'{"a": NaN, ',
                                 headers={"Content-Type": "application/json"})
    capture = (await client.get(f"/api/captures/{response.headers['x-hookscope-capture']}")
               ).json()
    assert capture["parsed"]["kind"] == "json"
    assert capture["parsed"]["value"] is None
    assert capture["parsed"]["error"].startswith("invalid JSON")
    assert capture["body_text"] == '{"a": NaN, '


async def test_raw_body_keeps_content_type_but_cannot_run_as_a_page(client, endpoint):
    html = b"<script>window.pwned = 1</script>"
    response = await client.post(f"/h/{endpoint['token']}", content=html,
                                 headers={"Content-Type": "text/html"})
    capture_id = response.headers["x-hookscope-capture"]
    raw = await client.get(f"/api/captures/{capture_id}/body")
    assert raw.content == html
    assert raw.headers["content-type"] == "text/html"
    assert raw.headers["x-content-type-options"] == "nosniff"
    assert raw.headers["content-security-policy"].startswith("sandbox")
    download = await client.get(f"/api/captures/{capture_id}/body?download=1")
    assert download.headers["content-disposition"] == f'attachment; filename="{capture_id}.html"'


@pytest.mark.parametrize(("content_type", "extension"), [
    ("application/json; charset=utf-8", "json"), ("application/vnd.api+json", "json"),
    ("application/xml", "xml"), ("application/atom+xml", "xml"), ("text/plain", "txt"),
    ("application/x-www-form-urlencoded", "txt"), ("application/x-ndjson", "ndjson"),
    ("image/png", "png"), ("application/octet-stream", "bin"), (None, "bin")])
async def test_a_downloaded_body_is_named_by_its_content_type(client, endpoint, content_type,
                                                              extension):
    headers = {"Content-Type": content_type} if content_type else {}
    response = await client.post(f"/h/{endpoint['token']}", content=b"<x/>", headers=headers)
    capture_id = response.headers["x-hookscope-capture"]
    download = await client.get(f"/api/captures/{capture_id}/body?download=1")
    assert download.content == b"<x/>"
    assert download.headers["content-disposition"] == (
        f'attachment; filename="{capture_id}.{extension}"')


@pytest.mark.parametrize("destination", ["script", "style", "worker", "serviceworker"])
async def test_raw_body_is_refused_where_a_browser_would_run_it(client, endpoint, destination):
    response = await client.post(f"/h/{endpoint['token']}", content=b"window.pwned = 1",
                                 headers={"Content-Type": "application/javascript"})
    capture_id = response.headers["x-hookscope-capture"]
    refused = await client.get(f"/api/captures/{capture_id}/body",
                               headers={"Sec-Fetch-Dest": destination})
    assert refused.status_code == 403
    assert refused.json()["error"]["message"].startswith(
        f"a captured body is not served as a {destination}")
    shown = await client.get(f"/api/captures/{capture_id}/body",
                             headers={"Sec-Fetch-Dest": "document"})
    assert shown.content == b"window.pwned = 1"


@pytest.mark.parametrize("content_type", [
    "application/javascript", "text/javascript; charset=utf-8", "application/x-ecmascript",
    "text/css", "application/wasm", "application/xslt+xml", "TEXT/JAVASCRIPT"])
async def test_raw_body_of_a_runnable_type_is_served_as_plain_text(client, endpoint,
                                                                   content_type):
    response = await client.post(f"/h/{endpoint['token']}", content=b"x",
                                 headers={"Content-Type": content_type})
    raw = await client.get(f"/api/captures/{response.headers['x-hookscope-capture']}/body")
    assert (raw.content, raw.headers["content-type"]) == (b"x", "text/plain; charset=utf-8")


async def test_unknown_capture_is_404(client):
    for path in ("/api/captures/c_nope", "/api/captures/c_nope/body"):
        response = await client.get(path)
        assert response.status_code == 404
        assert response.json()["error"]["message"] == "no capture with id 'c_nope'"
    assert (await client.delete("/api/captures/c_nope")).status_code == 404


async def test_delete_one_capture(client, endpoint):
    token = endpoint["token"]
    ids = await _send(client, token, 3)
    response = await client.delete(f"/api/captures/{ids[1]}")
    assert response.json() == {"ok": True, "id": ids[1]}
    assert (await client.get(f"/api/captures/{ids[1]}")).status_code == 404
    listing = (await client.get(f"/api/endpoints/{token}/captures")).json()
    assert [c["id"] for c in listing["captures"]] == [ids[2], ids[0]]
    assert listing["total"] == 2


async def test_clear_all_captures_keeps_the_endpoint(client, endpoint):
    token = endpoint["token"]
    await _send(client, token, 4)
    response = await client.delete(f"/api/endpoints/{token}/captures")
    assert response.json() == {"ok": True, "captures_deleted": 4}
    listing = (await client.get(f"/api/endpoints/{token}/captures")).json()
    assert listing["captures"] == [] and listing["total"] == 0
    fetched = (await client.get(f"/api/endpoints/{token}")).json()
    assert fetched["capture_count"] == 0 and fetched["last_seq"] == 4


async def test_endpoint_counters_follow_captures(client, endpoint):
    token = endpoint["token"]
    await _send(client, token, 2)
    fetched = (await client.get(f"/api/endpoints/{token}")).json()
    assert fetched["capture_count"] == 2
    assert fetched["last_seq"] == 2
    assert fetched["last_capture_at"].endswith("Z")


async def test_captures_of_other_endpoints_are_not_listed(client, endpoint):
    other = (await client.post("/api/endpoints")).json()
    await _send(client, other["token"], 2)
    await _send(client, endpoint["token"], 1)
    listing = (await client.get(f"/api/endpoints/{endpoint['token']}/captures")).json()
    assert len(listing["captures"]) == 1
    assert listing["captures"][0]["seq"] == 1
