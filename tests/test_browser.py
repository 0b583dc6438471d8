"""The pages in real Chromium (Debian's /usr/bin/chromium, driven by Playwright; no browser is
ever downloaded). Screenshots go to tests/artifacts/ (not committed)."""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.serverproc import ServerProcess

CHROMIUM = os.environ.get("HOOKSCOPE_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"
FIXTURES = Path(__file__).parent / "fixtures" / "formats"

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM}: .ci/run installs Debian's chromium",
                allow_module_level=True)

HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script>'


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("browser")
    proc = ServerProcess(folder / "browser.db", folder / "browser.log")
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.problems = []
    page.on("console", lambda m: page.problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.problems.append(str(e)))
    yield page
    context.close()


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def test_create_an_endpoint_from_the_home_page(server, page):
    page.goto(server.url + "/")
    _shot(page, "home")
    page.get_by_role("button", name="New endpoint").click()
    page.wait_for_url("**/e/*")
    url = page.locator("#capture-url").inner_text()
    assert url.startswith(server.url + "/h/")
    token = page.url.rsplit("/", 1)[1]
    assert httpx.get(f"{server.url}/api/endpoints/{token}").status_code == 200
    page.wait_for_selector("#conn[data-state='live']")
    assert page.problems == []


def test_a_capture_appears_live_and_shows_its_headers_and_body(server, page):
    token = httpx.post(server.url + "/api/endpoints", json={"name": "live test"}).json()["token"]
    page.goto(f"{server.url}/e/{token}")
    page.wait_for_selector("#conn[data-state='live']")
    httpx.post(f"{server.url}/h/{token}/orders?id=7", json={"order": {"id": 7, "total": 42}},
               headers={"X-Trace": "trace-123"})
    row = page.locator(".capture-row").first
    row.wait_for()
    assert "/orders?id=7" in row.inner_text()
    row.click()
    page.wait_for_selector(".verdicts")
    detail = page.locator("#detail")
    detail.get_by_text("trace-123").wait_for()
    assert "x-trace" in detail.inner_text()
    assert "total" in detail.locator(".tree").inner_text()
    _shot(page, "inspector")
    assert page.problems == []


def test_a_validation_error_is_shown_at_its_pointer(server, page):
    case = next(json.loads(p.read_text()) for p in sorted((FIXTURES / "flows.entity-event")
                                                          .glob("invalid-*.json"))
                if "renamed" in p.read_text())
    token = httpx.post(server.url + "/api/endpoints", json={}).json()["token"]
    httpx.post(f"{server.url}/h/{token}", json=case["body"])
    page.goto(f"{server.url}/e/{token}")
    page.wait_for_selector(".errors li")
    errors = page.locator(".errors").inner_text()
    assert "/operationType" in errors and "renamed" in errors
    marked = page.locator(".tree .has-error").first
    assert "operationType" in marked.inner_text()
    assert page.locator(".capture-row .badge.bad").first.inner_text().startswith("invalid")
    assert "null" not in page.locator("#detail").inner_text().split()
    _shot(page, "validation")
    assert page.problems == []


def test_a_verified_signature_is_shown(server, page):
    created = httpx.post(server.url + "/api/endpoints",
                         json={"verify": {"scheme": "github", "secrets": ["browser-secret"]}})
    token = created.json()["token"]
    body = b'{"ok": true}'
    signature = "sha256=" + hmac.new(b"browser-secret", body, "sha256").hexdigest()
    httpx.post(f"{server.url}/h/{token}", content=body,
               headers={"X-Hub-Signature-256": signature, "Content-Type": "application/json"})
    page.goto(f"{server.url}/e/{token}")
    page.wait_for_selector(".verdicts")
    assert "verified" in page.locator(".verdict").first.inner_text()
    assert "github" in page.locator(".verdict").first.inner_text()


def test_hostile_payloads_stay_inert(server, page):
    token = httpx.post(server.url + "/api/endpoints", json={"name": HOSTILE}).json()["token"]
    page.goto(f"{server.url}/e/{token}")
    page.wait_for_selector("#conn[data-state='live']")
    httpx.post(f"{server.url}/h/{token}/%3Cscript%3Ewindow.__pwned=1%3C%2Fscript%3E",
               content=HOSTILE.encode(), headers={"Content-Type": "text/html",
                                                  "X-Evil": HOSTILE})
    httpx.post(f"{server.url}/h/{token}", json={HOSTILE: HOSTILE, "nested": [HOSTILE]})
    # A locator wait, not wait_for_function: that evaluates a string in the page, which the
    # page's CSP rightly refuses (no unsafe-eval).
    page.locator(".capture-row").nth(1).wait_for()
    for index in range(2):
        row = page.locator(".capture-row").nth(index)
        capture_id = row.get_attribute("data-id")
        row.click()
        # The detail is this capture's (the previous one's, with other tabs, may still show).
        page.locator("#detail .kv td", has_text=capture_id).wait_for()
        for tab in page.locator(".tabs button").all():
            tab.click()
    # Checked on the inspector itself, before any navigation resets the window.
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#detail img, .capture-list img").count() == 0
    assert HOSTILE in page.locator("#endpoint-name").inner_text()
    assert page.problems == []
    page.goto(f"{server.url}/")
    page.wait_for_selector(".endpoint-card")
    assert page.evaluate("window.__pwned") is None
    assert page.locator("img[src='x']").count() == 0
    assert HOSTILE in page.locator(".endpoint-list").inner_text()  # shown, as text
    _shot(page, "hostile")


def test_pages_send_a_strict_content_security_policy(server):
    for path in ("/", "/static/hookscope.css"):
        response = httpx.get(server.url + path)
        assert response.status_code == 200
    policy = httpx.get(server.url + "/").headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert httpx.get(server.url + "/e/no-such-endpoint").status_code == 404


def test_copy_as_curl_reproduces_the_request_byte_for_byte(server, page):
    import subprocess

    token = httpx.post(server.url + "/api/endpoints", json={}).json()["token"]
    body = bytes(range(256)) * 2  # NUL bytes and every other byte value
    first = httpx.post(f"{server.url}/h/{token}/x?y={{a}}&z=[1-3]", content=body,
                       headers={"X-Empty": "", "X-Dup": "1", "x-dup": "2"})
    capture_id = first.headers["x-hookscope-capture"]
    page.goto(f"{server.url}/e/{token}")
    page.wait_for_selector(".verdicts")
    capture = httpx.get(f"{server.url}/api/captures/{capture_id}").json()
    page.get_by_role("button", name="Copy as curl").click()
    sync_api.expect(page.get_by_text("curl command copied")).to_be_visible()
    command = page.evaluate("(id) => window.HookscopeInspector.curlFor(id)", capture_id)
    subprocess.run(["bash", "-c", command], check=True, timeout=30, capture_output=True)
    listing = httpx.get(f"{server.url}/api/endpoints/{token}/captures?after=0").json()
    again = httpx.get(f"{server.url}/api/captures/{listing['captures'][1]['id']}").json()
    assert httpx.get(f"{server.url}/api/captures/{again['id']}/body").content == body
    assert (again["method"], again["path"], again["query"]) == (
        capture["method"], capture["path"], capture["query"])
    mine = [h for h in again["headers"] if h[0].startswith("x-")]
    assert mine == [h for h in capture["headers"] if h[0].startswith("x-")]
    assert again["content_type"] is None  # curl added no type of its own


def test_a_huge_json_body_does_not_freeze_the_page(server, page):
    import time

    token = httpx.post(server.url + "/api/endpoints", json={}).json()["token"]
    httpx.post(f"{server.url}/h/{token}", json=[[0] * 1000 for _ in range(1000)], timeout=30)
    started = time.monotonic()
    page.goto(f"{server.url}/e/{token}")
    page.wait_for_selector(".tree", timeout=15_000)
    assert time.monotonic() - started < 15
    assert page.locator(".tree .row").count() < 5000  # built lazily, within a budget
    page.locator(".tree details").first.locator("summary").first.click()  # built when opened
    page.locator(".tree details details").first.wait_for()
    assert page.locator(".tree details details").count() == 1000
    assert page.problems == []


def test_the_inspector_controls_work(server, page):
    created = httpx.post(server.url + "/api/endpoints",
                         json={"verify": {"scheme": "auto", "secrets": ["keep-me-secret"]}})
    token = created.json()["token"]
    page.goto(f"{server.url}/e/{token}")
    page.wait_for_selector("#conn[data-state='live']")

    # Pause holds new captures back; Resume shows them.
    page.get_by_role("button", name="Pause").click()
    httpx.post(f"{server.url}/h/{token}/one", content=b"1")
    page.locator("#paused-note").wait_for()
    sync_api.expect(page.locator(".capture-row")).to_have_count(0)
    page.get_by_role("button", name="Resume").click()
    page.locator(".capture-row").first.wait_for()

    # A filter narrows the list; clearing it brings everything back.
    httpx.put(f"{server.url}/h/{token}/two", content=b"2")
    page.locator(".capture-row").nth(1).wait_for()
    page.select_option("#filter-method", "PUT")
    expect = sync_api.expect
    expect(page.locator(".capture-row")).to_have_count(1)
    assert "/two" in page.locator(".capture-row").first.inner_text()
    page.select_option("#filter-method", "")
    page.locator(".capture-row").nth(1).wait_for()

    # j / k move the selection.
    rows = page.locator(".capture-row")
    rows.nth(0).click()
    selected = page.locator(".capture-row[aria-selected='true']")
    expect(selected).to_have_attribute("data-id", rows.nth(0).get_attribute("data-id"))
    page.locator("body").press("j")
    expect(selected).to_have_attribute("data-id", rows.nth(1).get_attribute("data-id"))
    page.locator("body").press("k")
    expect(selected).to_have_attribute("data-id", rows.nth(0).get_attribute("data-id"))

    # Delete one, then Clear all.
    page.get_by_role("button", name="Delete").click()
    page.get_by_text("Deleted.").wait_for()
    expect(page.locator(".capture-row")).to_have_count(1)
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Clear all").click()
    page.get_by_text("All captures deleted.").wait_for()
    listing = httpx.get(f"{server.url}/api/endpoints/{token}/captures").json()
    assert listing["captures"] == []

    # Settings save through PATCH and keep the auto scheme and its (masked) secret.
    page.get_by_role("button", name="Settings").click()
    page.fill("input[name='status']", "202")
    page.fill("input[name='max_bytes']", "5000")
    page.fill("input[name='rate_limit']", "2.5")
    page.get_by_role("button", name="Save settings").click()
    page.get_by_text("Settings saved").wait_for()
    endpoint = httpx.get(f"{server.url}/api/endpoints/{token}").json()
    assert endpoint["response"]["status"] == 202
    assert (endpoint["max_bytes"], endpoint["rate_limit"], endpoint["max_captures"]) == (
        5000, 2.5, 10000)
    assert endpoint["verify"]["scheme"] == "auto"
    assert endpoint["verify"]["secrets"] == ["ke****"]

    # The theme toggle flips the page and remembers it.
    page.locator("#theme-toggle").click()
    theme = page.evaluate("document.documentElement.dataset.theme")
    assert theme in ("light", "dark")
    page.reload()
    assert page.evaluate("document.documentElement.dataset.theme") == theme
    assert page.problems == []


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
        _shot(page, "login-inspector")
        page.get_by_role("button", name="Log out").click()
        page.wait_for_url("**/login")
        assert httpx.get(f"{server.url}/api/endpoints/{token}").status_code == 401
        # The console shows the expected 401 of the failed login; nothing else.
        assert [p for p in page.problems if "401" not in p] == []
    finally:
        server.stop()
