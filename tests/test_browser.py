"""The home page, the login, and what holds on every page: a strict CSP, hostile payloads inert,
Copy as curl byte for byte. The inspector's own features are in test_inspector.py."""

from __future__ import annotations

import subprocess

import httpx

from tests.browserkit import (
    accessibility_problems,
    shot,
    sync_api,
)
from tests.serverproc import ServerProcess

HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script>'


def test_the_home_page_creates_and_deletes_endpoints(web_server, page):
    page.goto(web_server.url + "/")
    shot(page, "home")
    page.get_by_role("button", name="New endpoint").click()
    page.wait_for_url("**/e/*")
    url = page.locator("#capture-url").inner_text()
    assert url.startswith(web_server.url + "/h/")
    token = page.url.rsplit("/", 1)[1]
    assert httpx.get(f"{web_server.url}/api/endpoints/{token}").status_code == 200
    page.wait_for_selector("#conn[data-state='live']")

    # Back home, the endpoint is listed and can be deleted there, after a confirmation.
    httpx.patch(f"{web_server.url}/api/endpoints/{token}", json={"name": "delete me"})
    page.goto(web_server.url + "/")
    card = page.locator(".endpoint-item", has_text="delete me")
    card.wait_for()
    assert accessibility_problems(page) == []
    page.once("dialog", lambda dialog: dialog.accept())
    card.get_by_role("button", name="Delete delete me").click()
    sync_api.expect(card).to_have_count(0)
    assert httpx.get(f"{web_server.url}/api/endpoints/{token}").status_code == 404
    assert page.problems == []


def test_hostile_payloads_stay_inert(web_server, page):
    token = httpx.post(web_server.url + "/api/endpoints", json={"name": HOSTILE}).json()["token"]
    page.goto(f"{web_server.url}/e/{token}")
    page.wait_for_selector("#conn[data-state='live']")
    httpx.post(f"{web_server.url}/h/{token}/%3Cscript%3Ewindow.__pwned=1%3C%2Fscript%3E",
               content=HOSTILE.encode(), headers={"Content-Type": "text/html",
                                                  "X-Evil": HOSTILE})
    httpx.post(f"{web_server.url}/h/{token}", json={HOSTILE: HOSTILE, "nested": [HOSTILE]})
    # A locator wait, not wait_for_function: that evaluates a string in the page, which the
    # page's CSP rightly refuses (no unsafe-eval).
    page.locator(".capture-row").nth(1).wait_for()
    for index in range(2):
        row = page.locator(".capture-row").nth(index)
        capture_id = row.get_attribute("data-id")
        row.click()
        # Every tab and body view of this capture, hostile text in each.
        page.locator(f".detail-bar:has-text('#{2 - index} ')").wait_for()  # newest first
        for tab in ("Headers", "Query", "Details", "Body"):
            page.get_by_role("tab", name=tab).click()
        for view in page.locator(".view-tabs button").all():
            view.click()
        page.get_by_role("tab", name="Details").click()
        page.locator("#detail .kv td", has_text=capture_id).wait_for()
    # Checked on the inspector itself, before any navigation resets the window.
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#detail img, .capture-list img").count() == 0
    assert HOSTILE in page.locator("#endpoint-name").inner_text()
    assert page.problems == []
    page.goto(f"{web_server.url}/")
    page.wait_for_selector(".endpoint-card")
    assert page.evaluate("window.__pwned") is None
    assert page.locator("img[src='x']").count() == 0
    assert HOSTILE in page.locator(".endpoint-list").inner_text()  # shown, as text
    shot(page, "hostile")


def test_pages_send_a_strict_content_security_policy(web_server):
    for path in ("/", "/static/hookscope.css"):
        response = httpx.get(web_server.url + path)
        assert response.status_code == 200
    policy = httpx.get(web_server.url + "/").headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert httpx.get(web_server.url + "/e/no-such-endpoint").status_code == 404


def test_copy_as_curl_reproduces_the_request_byte_for_byte(web_server, page):
    token = httpx.post(web_server.url + "/api/endpoints", json={}).json()["token"]
    body = bytes(range(256)) * 2  # NUL bytes and every other byte value
    first = httpx.post(f"{web_server.url}/h/{token}/x?y={{a}}&z=[1-3]", content=body,
                       headers={"X-Empty": "", "X-Dup": "1", "x-dup": "2"})
    capture_id = first.headers["x-hookscope-capture"]
    page.goto(f"{web_server.url}/e/{token}")
    page.wait_for_selector(".detail-bar")
    capture = httpx.get(f"{web_server.url}/api/captures/{capture_id}").json()
    page.get_by_role("button", name="Copy as curl").click()
    sync_api.expect(page.get_by_text("curl command copied")).to_be_visible()
    command = page.evaluate("(id) => window.HookscopeInspector.curlFor(id)", capture_id)
    subprocess.run(["bash", "-c", command], check=True, timeout=30, capture_output=True)
    listing = httpx.get(f"{web_server.url}/api/endpoints/{token}/captures?after=0").json()
    again = httpx.get(f"{web_server.url}/api/captures/{listing['captures'][1]['id']}").json()
    assert httpx.get(f"{web_server.url}/api/captures/{again['id']}/body").content == body
    assert (again["method"], again["path"], again["query"]) == (
        capture["method"], capture["path"], capture["query"])
    mine = [h for h in again["headers"] if h[0].startswith("x-")]
    assert mine == [h for h in capture["headers"] if h[0].startswith("x-")]
    assert again["content_type"] is None  # curl added no type of its own


def test_with_a_token_the_browser_logs_in_and_works_through_its_cookie(tmp_path, page):
    server = ServerProcess(tmp_path / "token.db", tmp_path / "token.log",
                           env={"HOOKSCOPE_TOKEN": "browser-secret-token"})
    server.start()
    try:
        page.goto(server.url + "/")
        page.wait_for_url("**/login?next=%2F")
        page.fill("input[name='token']", "not it")
        page.get_by_role("button", name="Log in").click()
        sync_api.expect(page.get_by_text("That is not the token.")).to_be_visible()
        page.fill("input[name='token']", "browser-secret-token")
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(server.url + "/")
        page.get_by_role("button", name="New endpoint").click()
        page.wait_for_url("**/e/*")
        page.wait_for_selector("#conn[data-state='live']")  # the stream works with the cookie
        token = page.url.rsplit("/", 1)[1]
        httpx.post(f"{server.url}/h/{token}", content=b'{"via": "token"}')
        sync_api.expect(page.locator(".capture-row")).to_have_count(1)
        shot(page, "login-inspector")
        page.get_by_role("button", name="Log out").click()
        page.wait_for_url("**/login")
        assert httpx.get(f"{server.url}/api/endpoints/{token}").status_code == 401
        # The console shows the expected 401 of the failed login; nothing else.
        assert [p for p in page.problems if "401" not in p] == []
    finally:
        server.stop()
