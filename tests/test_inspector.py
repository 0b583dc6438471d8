"""The inspector page in real Chromium, against a real server: layout at desktop and phone sizes
in both themes, the body viewer, validation and signatures in place, the actions, history,
settings, keyboard and deep links, and an accessibility check. Each state's screenshot goes to
tests/artifacts/ (docs/screenshots/ with `make screenshots`)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browserkit import (
    DESKTOP,
    PHONE,
    accessibility_problems,
    shot,
    sync_api,
)

expect = sync_api.expect
FIXTURES = Path(__file__).parent / "fixtures" / "formats"
ORDER = {"event": "order.paid", "order": {"id": "ord_1", "total": 42.5, "paid": True,
                                          "note": None, "items": [{"sku": "A-1", "qty": 2}]}}


def _endpoint(web_server: Any, **fields: Any) -> dict[str, Any]:
    created = httpx.post(web_server.url + "/api/endpoints", json=fields)
    assert created.status_code == 201, created.text
    return created.json()


def _send(web_server: Any, token: str, body: bytes | dict[str, Any], *, path: str = "",
          headers: dict[str, str] | None = None, method: str = "POST") -> str:
    content = json.dumps(body).encode() if isinstance(body, dict) else body
    kind = {"Content-Type": "application/json"} if isinstance(body, dict) else {}
    reply = httpx.request(method, f"{web_server.url}/h/{token}{path}", content=content,
                          headers={**kind, **(headers or {})})
    return reply.headers["x-hookscope-capture"]


def _github(secret: str, body: bytes) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


def _open(page: Any, web_server: Any, token: str, fragment: str = "") -> None:
    page.goto(f"{web_server.url}/e/{token}{fragment}")
    page.wait_for_selector("#conn[data-state='live']")


def _flows_event() -> dict[str, Any]:
    """A documented Flows entity event, valid as it stands."""
    fixture = json.loads((FIXTURES / "flows.entity-event" / "packet-updated.json").read_text())
    return dict(fixture.get("body", fixture))


class Receiver:
    """A local webhook receiver on 127.0.0.1: records what it gets, answers 201."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {name.lower(): value for name, value in self.headers.items()}
                outer.requests.append((self.command, self.path, headers, body))
                answer = b'{"received": true}'
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Receiver", "local")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/hooks"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.http.shutdown()
    receiver.http.server_close()


# -- layout --------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_body_is_above_the_fold_at_desktop_size(web_server, open_page, scheme):
    page = open_page(DESKTOP, scheme)
    endpoint = _endpoint(web_server, name=f"layout {scheme}")
    _send(web_server, endpoint["token"], ORDER, path="/orders", headers={"X-Trace": "t-1"})
    _open(page, web_server, endpoint["token"])
    line = page.locator(".json .j-line").first
    line.wait_for()
    box = line.bounding_box()
    assert box is not None and box["y"] + box["height"] <= DESKTOP["height"]
    # One scroller per pane: the page itself does not scroll.
    assert page.evaluate("document.scrollingElement.scrollHeight <= innerHeight + 1")
    assert page.locator("#tab-body").get_attribute("aria-selected") == "true"
    shot(page, f"inspector-{scheme}")
    # The system's dark setting reaches the method pills too.
    pill = page.locator(".capture-row .method").first.evaluate(
        "n => getComputedStyle(n).backgroundColor")
    assert (pill == "rgb(28, 44, 77)") == (scheme == "dark")
    assert accessibility_problems(page) == []
    assert page.problems == []


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_on_a_phone_a_row_opens_the_detail_full_screen_with_back(web_server, open_page, scheme):
    page = open_page(PHONE, scheme)
    endpoint = _endpoint(web_server, name="phone", verify={"scheme": "github", "secrets": ["s"]})
    _send(web_server, endpoint["token"], ORDER, path="/a/rather/long/path/that/needs/room?x=1")
    _open(page, web_server, endpoint["token"])
    row = page.locator(".capture-row").first
    path_box = row.locator(".path").bounding_box()
    assert path_box is not None and path_box["width"] > 150  # badges wrap below, not beside it
    shot(page, f"phone-list-{scheme}")
    assert accessibility_problems(page) == []
    row.click()
    expect(page.locator(".detail-pane")).to_be_visible()
    expect(page.locator(".list-pane")).to_be_hidden()
    page.get_by_text("Body ·").first.wait_for()
    shot(page, f"phone-detail-{scheme}")
    assert accessibility_problems(page) == []
    page.get_by_role("button", name="Back").click()
    expect(page.locator(".list-pane")).to_be_visible()
    assert page.problems == []


# -- the body viewer ------------------------------------------------------------------------------


def test_pretty_json_copies_as_valid_json_and_finds_wraps_and_collapses(web_server, page):
    endpoint = _endpoint(web_server, name="viewer")
    _send(web_server, endpoint["token"], ORDER)
    _open(page, web_server, endpoint["token"])
    view = page.locator(".json")
    view.wait_for()
    selected = page.evaluate("""() => {
        const range = document.createRange();
        range.selectNodeContents(document.querySelector('.json'));
        getSelection().removeAllRanges(); getSelection().addRange(range);
        return getSelection().toString(); }""")
    assert json.loads(selected) == ORDER
    # Expanded by default (a small body), collapsible, and back.
    assert view.locator(".j-toggle[aria-expanded='false']").count() == 0
    page.get_by_role("button", name="Collapse all").click()
    expect(view.locator(".j-children").first).to_be_hidden()
    page.get_by_role("button", name="Expand all").click()
    expect(view.get_by_text('"A-1"')).to_be_visible()
    # Find marks every hit and says which one is current.
    page.get_by_placeholder("Find in body").fill("a-1")
    expect(page.locator("mark.hit")).to_have_count(1)
    expect(page.locator(".find-count")).to_have_text("1 of 1")
    page.get_by_placeholder("Find in body").fill("order")
    assert page.locator("mark.hit").count() >= 2
    page.get_by_placeholder("Find in body").fill("")
    expect(page.locator("mark.hit")).to_have_count(0)
    wrap = page.get_by_role("button", name="Wrap")
    wrap.click()
    expect(wrap).to_have_attribute("aria-pressed", "true")
    assert "wrap" in page.locator(".viewer").get_attribute("class")
    # Raw is the body as sent; Hex its bytes; copy and download are one click away.
    page.get_by_role("tab", name="Raw").click()
    assert json.loads(page.locator(".viewer .raw").inner_text()) == ORDER
    page.get_by_role("tab", name="Hex").click()
    assert page.locator(".viewer .hex").inner_text().startswith("00000000  7b 22")
    link = page.get_by_role("link", name="Download")
    assert link.get_attribute("href").endswith("/body?download=1")
    capture_id = page.locator(".capture-row").first.get_attribute("data-id")
    download = httpx.get(web_server.url + link.get_attribute("href"))
    assert download.headers["content-disposition"] == f'attachment; filename="{capture_id}.json"'
    shot(page, "viewer-hex")
    assert page.problems == []


def test_xml_is_shown_as_xml_with_its_root_element(web_server, page):
    endpoint = _endpoint(web_server, name="xml")
    body = b'<?xml version="1.0"?><order id="7"><item sku="A">2</item><note/></order>'
    _send(web_server, endpoint["token"], body, headers={"Content-Type": "application/xml"})
    _open(page, web_server, endpoint["token"])
    page.locator(".xml").wait_for()
    lines = page.locator(".xml .x-line").all_inner_texts()
    assert lines == ['<order id="7">', '  <item sku="A">2</item>', "  <note/>", "</order>"]
    assert page.problems == []


def test_a_10_mib_body_stays_fast_and_says_what_is_shown(web_server, page):
    endpoint = _endpoint(web_server, name="large")
    rows = [{"id": i, "name": f"row {i}", "tags": ["a", "b"]} for i in range(190_000)]
    body = json.dumps(rows).encode()
    assert len(body) > 9 * 1024 * 1024
    httpx.post(f"{web_server.url}/h/{endpoint['token']}", content=body,
               headers={"Content-Type": "application/json"}, timeout=60)
    started = time.monotonic()
    _open(page, web_server, endpoint["token"])
    page.locator(".viewer").wait_for(timeout=20_000)
    page.get_by_role("tab", name="Raw").click()
    expect(page.get_by_text("Showing the first 1.0 MiB")).to_be_visible()
    assert time.monotonic() - started < 20
    # The page still answers at once.
    page.get_by_role("tab", name="Headers").click()
    expect(page.locator(".tab-panel .kv")).to_be_visible(timeout=2000)
    assert page.problems == []


def test_a_large_json_value_is_built_lazily_and_opens_on_demand(web_server, page):
    endpoint = _endpoint(web_server, name="lazy")
    _send(web_server, endpoint["token"], {"rows": [[0] * 50 for _ in range(400)]})
    _open(page, web_server, endpoint["token"])
    view = page.locator(".json")
    view.wait_for()
    assert view.locator(".j-line").count() < 2000  # not all 20,000 values at first
    label = view.locator(".j-toggle[aria-expanded='false']").first.get_attribute("aria-label")
    assert label.startswith("expand /rows/")
    view.get_by_role("button", name=label).click()
    expect(view.get_by_role("button", name=label.replace("expand", "collapse"))).to_have_attribute(
        "aria-expanded", "true")
    assert page.problems == []


# -- validation and signatures in place -----------------------------------------------------------


def test_validation_errors_are_shown_at_their_fields_and_linked(web_server, page):
    endpoint = _endpoint(web_server, name="invalid", format="flows.entity-event")
    body = _flows_event()
    body.pop("entityId", None)  # a missing required key
    body["operationType"] = 5  # a wrong type
    _send(web_server, endpoint["token"], body)
    _open(page, web_server, endpoint["token"])
    note = page.locator(".j-error", has_text="is not of type")
    note.first.wait_for()
    # Inline, under the field's own line.
    field_line = note.first.locator("xpath=preceding-sibling::div[1]")
    assert '"operationType"' in field_line.inner_text()
    missing = page.locator(".j-missing", has_text='"entityId": missing')
    expect(missing).to_be_visible()
    # The strip's pointers are links that bring the field into view and flash it.
    page.get_by_role("button", name="Collapse all").click()
    page.locator(".errors a.pointer", has_text="/operationType").first.click()
    expect(page.locator(".j-line.flash", has_text="operationType")).to_be_visible()
    shot(page, "validation-inline")
    assert accessibility_problems(page) == []
    assert page.problems == []


def test_a_failed_signature_says_what_to_check_and_marks_the_header(web_server, page):
    endpoint = _endpoint(web_server, name="signed",
                         verify={"scheme": "github", "secrets": ["right"]})
    body = json.dumps(ORDER).encode()
    _send(web_server, endpoint["token"], body, headers=_github("wrong", body))
    _open(page, web_server, endpoint["token"])
    detail = page.locator("#sig-detail")
    expect(detail).to_be_visible()
    assert "does not match the secret" in detail.inner_text()
    assert "Check the secret" in detail.inner_text()
    assert "matched secret" not in detail.inner_text().lower()
    detail.get_by_role("link", name="x-hub-signature-256").click()
    marked = page.locator("tr.sig-header")
    expect(marked).to_have_count(1)
    assert "x-hub-signature-256" in marked.inner_text()
    assert "signature (failed)" in marked.inner_text()
    shot(page, "signature-failed")
    assert page.problems == []


def test_a_stale_timestamp_is_said_in_words(web_server, page):
    endpoint = _endpoint(web_server, name="stale", verify={"scheme": "slack", "secrets": ["sl"]})
    stamp = str(int(time.time()) - 3720)
    body = b"token=x&text=hello"
    base = f"v0:{stamp}:".encode() + body
    signature = "v0=" + hmac.new(b"sl", base, hashlib.sha256).hexdigest()
    _send(web_server, endpoint["token"], body, headers={
        "X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded"})
    _open(page, web_server, endpoint["token"])
    text = page.locator("#sig-detail").inner_text()
    assert "62 min old, outside the tolerance of 5 min" in text
    assert "clock" in text
    assert page.problems == []


def test_no_signature_badge_where_the_endpoint_checks_none(web_server, page):
    endpoint = _endpoint(web_server, name="unsigned")
    _send(web_server, endpoint["token"], ORDER)
    _open(page, web_server, endpoint["token"])
    page.locator(".json").wait_for()
    assert page.locator(".capture-row .badge", has_text="sig").count() == 0
    assert page.locator(".chip", has_text="Signature").count() == 0
    assert page.problems == []


# -- actions --------------------------------------------------------------------------------------


def test_replay_to_a_local_receiver_shows_its_answer_and_is_remembered(web_server, page, receiver):
    endpoint = _endpoint(web_server, name="replay")
    capture_id = _send(web_server, endpoint["token"], ORDER, headers={"X-Trace": "r-1"})
    _open(page, web_server, endpoint["token"])
    page.locator(".json").wait_for()
    page.keyboard.press("r")
    dialog = page.locator("#replay-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_label("URL").fill(receiver.url)
    dialog.get_by_role("button", name="Send").click()
    result = page.locator(".result", has_text="Replayed to")
    expect(result).to_be_visible()
    assert "201" in result.inner_text() and '{"received": true}' in result.inner_text()
    method, path, headers, body = receiver.requests[-1]
    assert (method, path, json.loads(body), headers["x-trace"]) == ("POST", "/hooks", ORDER, "r-1")
    shot(page, "replay-answer")
    # The URL is remembered for this endpoint.
    page.reload()
    page.locator(f"#row-{capture_id}").wait_for()
    page.get_by_role("button", name="Replay…").click()
    expect(page.locator("#replay-dialog").get_by_label("URL")).to_have_value(receiver.url)
    page.get_by_role("button", name="Cancel").click()
    assert page.problems == []


def test_compare_with_shows_the_diff_and_shift_click_does_too(web_server, page):
    endpoint = _endpoint(web_server, name="diff")
    first = _send(web_server, endpoint["token"], {"user": {"name": "Ada"}, "n": 1})
    second = _send(web_server, endpoint["token"], {"user": {"name": "Grace"}, "n": 1}, method="PUT")
    _open(page, web_server, endpoint["token"])
    page.locator(f"#row-{second}[aria-selected='true']").wait_for()
    page.get_by_role("button", name="Compare with…").click()
    page.locator(f"#row-{first}").click()
    diff = page.locator(".result.diff")
    expect(diff).to_be_visible()
    text = diff.inner_text()
    assert "/user/name" in text and "Grace" in text and "Ada" in text and "PUT" in text
    shot(page, "compare")
    page.get_by_role("button", name="Dismiss").click()
    page.locator(f"#row-{first}").click(modifiers=["Shift"])
    expect(page.locator(".result.diff")).to_be_visible()
    assert page.problems == []


def test_export_copy_reverify_and_delete_then_the_next_opens(web_server, page):
    endpoint = _endpoint(web_server, name="actions", verify={"scheme": "github", "secrets": ["k"]})
    body = json.dumps(ORDER).encode()
    older = _send(web_server, endpoint["token"], body, headers=_github("k", body))
    newer = _send(web_server, endpoint["token"], body, headers=_github("k", body))
    _open(page, web_server, endpoint["token"])
    page.locator(f"#row-{newer}[aria-selected='true']").wait_for()
    page.get_by_role("button", name="Export").click()
    for name, kind in (("HAR", "har"), ("JSON fixture", "json"), ("curl command", "curl")):
        link = page.get_by_role("link", name=name)
        assert link.get_attribute("href").endswith(f"/export?as={kind}")
        assert httpx.get(web_server.url + link.get_attribute("href")).status_code == 200
    page.get_by_role("button", name="Export").click()
    page.keyboard.press("c")
    expect(page.get_by_text("curl command copied")).to_be_visible()
    page.get_by_role("button", name="Re-verify").click()
    expect(page.get_by_text("Signature: verified")).to_be_visible()
    page.get_by_role("button", name="Delete").click()
    page.locator(f"#row-{older}[aria-selected='true']").wait_for()
    expect(page.locator(f"#row-{newer}")).to_have_count(0)
    assert f"#{older}" in page.url
    assert httpx.get(f"{web_server.url}/api/captures/{newer}").status_code == 404
    assert page.problems == []


# -- deliveries -----------------------------------------------------------------------------------


def _deliver(web_server: Any, capture_id: str, **fields: Any) -> dict[str, Any]:
    reply = httpx.post(f"{web_server.url}/api/captures/{capture_id}/deliveries",
                       json={"target": "http://localhost:3000/hooks/orders?a=1",
                             "by": "alice@laptop", **fields})
    assert reply.status_code == 201, reply.text
    return reply.json()


def test_each_delivery_is_a_line_under_the_verdicts_with_its_reply_one_click_away(web_server, page):
    endpoint = _endpoint(web_server, name="forwarded")
    capture_id = _send(web_server, endpoint["token"], ORDER, path="/orders?a=1")
    _deliver(web_server, capture_id, status=None, error="connection refused", elapsed_ms=2.4,
             outcome="retrying")
    _deliver(web_server, capture_id, attempt=2, status=500, elapsed_ms=12.3, outcome="failed",
             response={"headers": [["content-type", "text/plain"], ["x-request-id", "r-9"]],
                       "body_text": "boom <b>not markup</b>", "body_size": 22})
    _open(page, web_server, endpoint["token"])
    lines = page.locator(".delivery")
    expect(lines).to_have_count(2)
    expect(page.locator("#deliveries-title")).to_have_text("Deliveries · 2")
    assert lines.locator(".delivery-what").all_inner_texts() == [
        "forwarded to localhost:3000 by alice@laptop: connection refused after 2 ms",
        "forwarded to localhost:3000 by alice@laptop: 500 in 12 ms"]
    assert lines.locator(".badge").all_inner_texts() == ["retrying", "failed"]
    assert "attempt" not in lines.first.locator("summary").inner_text()
    assert "attempt 2" in lines.last.locator("summary").inner_text()
    target = lines.first.locator(".target")
    assert target.get_attribute("title") == "http://localhost:3000/hooks/orders?a=1"
    # The body still opens first, above the fold.
    box = page.locator(".json .j-line").first.bounding_box()
    assert box is not None and box["y"] + box["height"] <= DESKTOP["height"]
    # One click opens the reply: status, headers, the body as text.
    reply = lines.last.locator(".delivery-reply")
    expect(reply).to_be_hidden()
    lines.last.locator("summary").click()
    expect(reply).to_contain_text("Replied 500.")
    assert reply.locator("tr").all_inner_texts() == ["content-type\ttext/plain",
                                                     "x-request-id\tr-9"]
    expect(reply.locator(".reply-body")).to_have_text("boom <b>not markup</b>")
    assert reply.locator("b").count() == 0
    shot(page, "deliveries")
    lines.first.locator("summary").press("Enter")
    expect(lines.first.locator(".delivery-reply")).to_contain_text("No reply: connection refused.")
    assert accessibility_problems(page) == []
    page.locator("#theme-toggle").click()
    assert accessibility_problems(page) == []
    assert page.problems == []


def test_a_delivery_to_the_capture_shown_appears_live_and_its_reply_loads_on_demand(
        web_server, page):
    endpoint = _endpoint(web_server, name="forwarded live")
    shown = _send(web_server, endpoint["token"], ORDER)
    _open(page, web_server, endpoint["token"])
    page.locator(".json").wait_for()
    expect(page.locator(".deliveries")).to_be_hidden()
    other = _send(web_server, endpoint["token"], ORDER)
    page.locator(f"#row-{other}").wait_for()
    _deliver(web_server, other, status=204, outcome="delivered")
    _deliver(web_server, shown, status=None, error="timed out", elapsed_ms=10000,
             outcome="retrying")
    _deliver(web_server, shown, attempt=2, status=200, elapsed_ms=5, outcome="delivered",
             response={"headers": [], "body_base64": "/wD+AQ==", "body_size": 4})
    lines = page.locator(".delivery")
    expect(lines).to_have_count(2)
    assert lines.locator(".delivery-what").all_inner_texts() == [
        "forwarded to localhost:3000 by alice@laptop: timed out after 10.0 s",
        "forwarded to localhost:3000 by alice@laptop: 200 in 5 ms"]
    assert page.url.endswith(f"#{shown}")
    lines.last.locator("summary").click()
    expect(lines.last.locator(".reply-body")).to_have_text("(4 bytes, not text)")
    # Beyond three attempts the earlier ones fold behind a button.
    for attempt in (3, 4):
        _deliver(web_server, shown, attempt=attempt, status=503, outcome="retrying")
    expect(lines).to_have_count(4)
    expect(page.locator(".delivery:visible")).to_have_count(3)
    page.get_by_role("button", name="Show 1 earlier attempt").click()
    expect(page.locator(".delivery:visible")).to_have_count(4)
    assert page.problems == []


# -- history, states, live ------------------------------------------------------------------------


def test_history_pages_back_to_the_first_of_more_than_200(web_server, page):
    endpoint = _endpoint(web_server, name="history")
    with httpx.Client() as client:
        for i in range(230):
            client.post(f"{web_server.url}/h/{endpoint['token']}/n{i}", content=b"x")
    _open(page, web_server, endpoint["token"])
    expect(page.locator("#list-count")).to_have_text("100 of 230")
    for _ in range(10):
        if page.locator(".capture-row", has_text="/n0").count():
            break
        page.locator(".capture-row").last.scroll_into_view_if_needed()
        page.wait_for_timeout(300)
    expect(page.locator(".capture-row", has_text="/n0")).to_have_count(1)
    expect(page.locator("#list-count")).to_have_text("230 of 230")
    expect(page.locator("#list-state")).to_have_text("That is the first capture.")
    assert page.locator(".capture-row").count() == 230
    assert page.problems == []


def test_states_say_what_is_going_on(web_server, page):
    endpoint = _endpoint(web_server, name="states")
    _open(page, web_server, endpoint["token"])
    expect(page.locator("#list-state")).to_have_text("Waiting for the first request…")
    assert endpoint["url"] in page.locator(".detail-empty").inner_text()
    shot(page, "empty-endpoint")
    _send(web_server, endpoint["token"], ORDER)
    page.locator(".capture-row").first.wait_for()
    page.get_by_placeholder("Search path, headers, body").fill("no-such-text-anywhere")
    expect(page.locator("#list-state")).to_have_text("No captures match these filters.")
    page.get_by_placeholder("Search path, headers, body").fill("")
    page.locator(".capture-row").first.wait_for()
    # Paused: new captures wait, and the notice is pinned at the top of the list.
    page.get_by_role("button", name="Pause").click()
    _send(web_server, endpoint["token"], ORDER)
    note = page.locator("#paused-note")
    expect(note).to_have_text("Paused: 1 new capture waiting. Resume")
    list_box = page.locator(".list-pane").bounding_box()
    note_box = note.bounding_box()
    assert note_box["y"] < list_box["y"] + 200
    note.click()
    expect(page.locator(".capture-row")).to_have_count(2)
    assert page.problems == []


def test_a_row_arriving_does_not_move_what_is_being_read(web_server, page):
    endpoint = _endpoint(web_server, name="steady")
    for i in range(40):
        _send(web_server, endpoint["token"], b"x", path=f"/r{i}")
    _open(page, web_server, endpoint["token"])
    pane = page.locator(".list-pane")
    target = page.locator(".capture-row", has_text="/r20")
    target.scroll_into_view_if_needed()
    before = target.bounding_box()["y"]
    _send(web_server, endpoint["token"], b"x", path="/new")
    page.locator(".capture-row", has_text="/new").wait_for(state="attached")
    assert abs(target.bounding_box()["y"] - before) < 2
    assert pane.evaluate("n => n.scrollTop") > 0
    assert page.problems == []


# -- keyboard and deep links ----------------------------------------------------------------------


def test_keyboard_moves_opens_and_helps_and_the_list_is_one_tab_stop(web_server, page):
    endpoint = _endpoint(web_server, name="keys")
    ids = [_send(web_server, endpoint["token"], b"x", path=f"/k{i}") for i in range(3)]
    _open(page, web_server, endpoint["token"])
    page.locator(f"#row-{ids[2]}[aria-selected='true']").wait_for()
    assert page.locator(".capture-row[tabindex]").count() == 0  # rows are not tab stops
    page.locator("#capture-list").focus()
    page.keyboard.press("ArrowDown")
    page.locator(f"#row-{ids[1]}[aria-selected='true']").wait_for()
    assert page.locator("#capture-list").get_attribute("aria-activedescendant") == f"row-{ids[1]}"
    page.keyboard.press("j")
    page.locator(f"#row-{ids[0]}[aria-selected='true']").wait_for()
    page.keyboard.press("ArrowUp")
    page.locator(f"#row-{ids[1]}[aria-selected='true']").wait_for()
    page.keyboard.press("Enter")
    assert page.url.endswith(f"#{ids[1]}")
    page.locator("body").click(position={"x": 5, "y": 880})
    page.keyboard.press("?")
    expect(page.locator("#shortcuts-dialog")).to_be_visible()
    shot(page, "shortcuts")
    page.keyboard.press("Escape")
    expect(page.locator("#shortcuts-dialog")).to_be_hidden()
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "search"
    assert page.problems == []


def test_a_deep_link_opens_its_capture_after_a_reload(web_server, page):
    endpoint = _endpoint(web_server, name="deep")
    wanted = _send(web_server, endpoint["token"], {"which": "the old one"})
    for i in range(3):
        _send(web_server, endpoint["token"], {"which": i})
    _open(page, web_server, endpoint["token"], f"#{wanted}")
    expect(page.locator(f"#row-{wanted}")).to_have_attribute("aria-selected", "true")
    expect(page.locator(".json")).to_contain_text("the old one")
    page.reload()
    expect(page.locator(".json")).to_contain_text("the old one")
    assert page.problems == []


# -- settings -------------------------------------------------------------------------------------


def test_every_endpoint_field_is_editable_and_saved(web_server, page):
    endpoint = _endpoint(web_server, name="before", verify={"scheme": "github",
                                                        "secrets": ["old-secret"]})
    _open(page, web_server, endpoint["token"])
    page.get_by_role("button", name="Settings").click()
    sheet = page.locator("#settings-dialog")
    expect(sheet).to_be_visible()
    shot(page, "settings")
    assert accessibility_problems(page) == []
    sheet.get_by_label("Name").fill("after")
    sheet.get_by_label("Alias").fill(f"alias-{endpoint['token'][:8].lower()}")
    sheet.get_by_label("Expires").fill("2031-01-02T03:04")
    sheet.get_by_role("button", name="Add secret").click()
    sheet.locator("#secret-rows input").last.fill("new-secret")
    sheet.get_by_label("Tolerance (seconds)").fill("600")
    sheet.get_by_label("Answer 401 when the signature fails").check()
    sheet.get_by_label("Validate as").select_option("none")
    sheet.get_by_label("Answer 422 when the payload is invalid").check()
    sheet.get_by_label("Status").fill("202")
    sheet.get_by_label("Content type").fill("text/plain")
    sheet.get_by_role("button", name="Add header").click()
    sheet.get_by_label("Header name").last.fill("X-Reply")
    sheet.get_by_label("Header value").last.fill("yes")
    sheet.get_by_label("Body", exact=True).fill("thanks")
    sheet.get_by_label("Delay (ms)").fill("10")
    sheet.get_by_label("Keep captures").fill("500")
    sheet.get_by_label("Keep bytes").fill("100000")
    sheet.get_by_label("Requests per second").fill("3")
    sheet.get_by_label("Timeout per try (seconds)").fill("5")
    sheet.get_by_label("Retries").fill("1")
    # Fields the API refuses: their messages appear at the fields, and nothing is saved.
    sheet.get_by_label("Your JSON Schema").fill('{"type": "no-such-type"}')
    sheet.get_by_label("Forward to").fill("ftp://127.0.0.1/in")
    sheet.get_by_role("button", name="Save settings").click()
    error = sheet.locator(".field-error")
    expect(error).to_have_count(2)
    assert "schema" in error.first.inner_text().lower()
    assert "http://" in error.last.inner_text()
    assert sheet.get_by_label("Forward to").get_attribute("aria-invalid") == "true"
    unchanged = httpx.get(f"{web_server.url}/api/endpoints/{endpoint['token']}").json()
    assert unchanged["name"] == "before"
    sheet.get_by_label("Your JSON Schema").fill('{"type": "object", "required": ["id"]}')
    sheet.get_by_label("Forward to").fill("http://127.0.0.1:9/hooks")
    sheet.get_by_role("button", name="Save settings").click()
    expect(page.get_by_text("Settings saved")).to_be_visible()
    saved = httpx.get(f"{web_server.url}/api/endpoints/{endpoint['token']}").json()
    assert saved["name"] == "after" and saved["alias"].startswith("alias-")
    assert saved["expires_at"].startswith("2031-01-02")
    assert saved["verify"]["secrets"] == ["ol****", "ne****"]
    assert saved["verify"]["tolerance_seconds"] == 600
    assert saved["reject"] == {"bad_signature": True, "invalid_payload": True}
    assert saved["format"] == "none" and saved["schema"]["required"] == ["id"]
    assert saved["response"] == {"status": 202, "headers": {"X-Reply": "yes",
                                                            "Content-Type": "text/plain"},
                                 "body": "thanks", "delay_ms": 10}
    assert (saved["max_captures"], saved["max_bytes"], saved["rate_limit"]) == (500, 100000, 3)
    assert saved["forward"] == {"url": "http://127.0.0.1:9/hooks", "timeout": 5, "retries": 1}
    # Secrets as rows: removing one removes it. No forward URL: forwarding off.
    page.get_by_role("button", name="Settings").click()
    expect(sheet.get_by_label("Forward to")).to_have_value("http://127.0.0.1:9/hooks")
    sheet.locator("#secret-rows li").first.get_by_role("button", name="Remove").click()
    sheet.get_by_label("Forward to").fill("")
    sheet.get_by_role("button", name="Save settings").click()
    expect(page.get_by_text("Settings saved")).to_be_visible()
    saved = httpx.get(f"{web_server.url}/api/endpoints/{endpoint['token']}").json()
    assert saved["verify"]["secrets"] == ["ne****"] and saved["forward"] is None
    assert page.problems == [] or all("422" in p for p in page.problems)


def test_every_schemes_options_are_editable_and_saved(web_server, page):
    schemes = httpx.get(web_server.url + "/api/schemes").json()["schemes"]
    endpoint = _endpoint(web_server, name="schemes")
    _open(page, web_server, endpoint["token"])
    for scheme in schemes:
        page.get_by_role("button", name="Settings").click()
        sheet = page.locator("#settings-dialog")
        sheet.get_by_label("Scheme").select_option(scheme["id"])
        expected: dict[str, Any] = {}
        for option in scheme["options"]:
            field = sheet.locator(f"[name='option-{option['name']}']")
            if option.get("choices"):
                value = option["choices"][-1]
                field.select_option(value)
            else:
                value = {"header": "X-Custom-Signature", "prefix": "v1=",
                         "template": "{id}.{timestamp}.{body}", "timestamp_header": "X-Stamp",
                         "id_header": "X-Id"}.get(option["name"], "x")
                field.fill(value)
            expected[option["name"]] = value
        if not sheet.locator("#secret-rows input").count():
            sheet.get_by_role("button", name="Add secret").click()
            sheet.locator("#secret-rows input").last.fill("a-secret")
        sheet.get_by_role("button", name="Save settings").click()
        # Saved: the sheet closes; refused: an error appears beside a field.
        page.locator("#settings-dialog:not([open]), #settings-dialog .field-error").first.wait_for(
            state="attached")
        assert sheet.locator(".field-error").all_inner_texts() == [], scheme["id"]
        expect(sheet).to_be_hidden()
        verify = httpx.get(f"{web_server.url}/api/endpoints/{endpoint['token']}").json()["verify"]
        assert verify["scheme"] == scheme["id"]
        for name, value in expected.items():
            assert verify[name] == value, (scheme["id"], name)
    assert page.problems == []


def test_the_endpoint_can_be_deleted_from_its_settings(web_server, page):
    endpoint = _endpoint(web_server, name="doomed")
    _open(page, web_server, endpoint["token"])
    page.get_by_role("button", name="Settings").click()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete endpoint").click()
    page.wait_for_url(web_server.url + "/")
    assert httpx.get(f"{web_server.url}/api/endpoints/{endpoint['token']}").status_code == 404
    assert page.problems == []


def test_a_server_that_stops_answering_is_named_plainly(web_server, page, tmp_path):
    from tests.serverproc import ServerProcess

    own = ServerProcess(tmp_path / "gone.db", tmp_path / "gone.log")
    own.start()
    try:
        token = httpx.post(own.url + "/api/endpoints", json={}).json()["token"]
        page.goto(f"{own.url}/e/{token}")
        page.wait_for_selector("#conn[data-state='live']")
    finally:
        own.stop()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Clear all").click()
    expect(page.locator("#toast")).to_contain_text("Hookscope is not answering")
    expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting")
    assert all("ERR_CONNECTION_REFUSED" in p or "Failed to load" in p for p in page.problems)


def test_the_theme_toggle_overrides_the_system_and_is_remembered(web_server, open_page):
    page = open_page(DESKTOP, "light")
    endpoint = _endpoint(web_server, name="theme")
    _send(web_server, endpoint["token"], ORDER)
    _open(page, web_server, endpoint["token"])
    pill = page.locator(".capture-row .method").first

    def background() -> str:
        return str(pill.evaluate("n => getComputedStyle(n).backgroundColor"))

    light = background()
    page.locator("#theme-toggle").click()
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    assert background() == "rgb(28, 44, 77)" != light
    page.reload()
    pill.wait_for()
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    assert background() == "rgb(28, 44, 77)"
    assert accessibility_problems(page) == []
    assert page.problems == []


def test_at_200_percent_zoom_nothing_is_cut_off(web_server, open_page):
    # 200% zoom of a 1440x900 window lays the page out in 720x450 CSS pixels.
    page = open_page({"width": 720, "height": 450})
    endpoint = _endpoint(web_server, name="zoomed")
    _send(web_server, endpoint["token"], ORDER, path="/zoom")
    _open(page, web_server, endpoint["token"])
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    page.locator(".capture-row").first.click()
    page.locator(".json").wait_for()
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    for name in ("Replay…", "Compare with…", "Copy as curl", "Export", "Delete"):
        box = page.get_by_role("button", name=name).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 720, name
    shot(page, "zoom-200")
    assert accessibility_problems(page) == []
    assert page.problems == []


def test_pin_as_contract_in_the_settings(web_server, page):
    from tests.test_contracts import TRAFFIC

    endpoint = _endpoint(web_server, name="pin in the page")
    for body in TRAFFIC[:3] + TRAFFIC[-3:]:
        _send(web_server, endpoint["token"], body)
    page.goto(f"{web_server.url}/e/{endpoint['token']}")
    page.wait_for_selector("#conn[data-state='live']")
    page.locator("#settings-button").click()
    page.get_by_role("button", name="Pin as contract…").click()
    expect(page.locator("#contract-status")).to_contain_text("Inferred from 6 samples")
    assert '"pointer:/type"' in page.locator("textarea[name='schema']").input_value()
    page.locator("#contract-status").scroll_into_view_if_needed()
    shot(page, "contract-pin")
    page.get_by_role("button", name="Pin this contract").click()
    expect(page.locator("#contract-status")).to_contain_text("Pinned")
    pinned = httpx.get(f"{web_server.url}/api/endpoints/{endpoint['token']}").json()["schema"]
    assert pinned["x-hookscope"]["group_by"] == "pointer:/type"
    assert page.problems == []
