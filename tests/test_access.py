"""Access control: HOOKSCOPE_TOKEN (Bearer or login cookie) and the cross-site refusal."""

from __future__ import annotations

import threading
import time
from contextlib import asynccontextmanager

import httpx
import pytest

from hookscope.cli import startup_warning
from hookscope.main import create_app
from hookscope.routes.access import COOKIE, session_value, valid_session
from hookscope.settings import Settings
from hookscope.storage import StorageSettings, build_store
from tests.conftest import BASE
from tests.serverproc import ServerProcess

pytestmark = pytest.mark.anyio
TOKEN = "correct-horse-battery-staple"


@asynccontextmanager
async def _client(database: str, **overrides):
    settings = Settings(**{"db": database, "allowed_hosts": "hookscope.test", **overrides})
    store = build_store(StorageSettings.of(settings))
    await store.open()
    try:
        app = create_app(settings, store=store)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE,
                                     follow_redirects=False) as client:
            yield client
    finally:
        await store.close()


# -- cross-site refusal (always on) --------------------------------------------------------------

@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"},
    {"Origin": "null"},
    {"Origin": "http://hookscope.test.evil.example"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site", "Origin": "http://hookscope.test:3000"},
])
async def test_a_cross_site_browser_request_cannot_change_anything(client, endpoint, headers):
    token = endpoint["token"]
    for method, url, kwargs in (("POST", "/api/endpoints", {"json": {}}),
                                ("PATCH", f"/api/endpoints/{token}", {"json": {"name": "x"}}),
                                ("DELETE", f"/api/endpoints/{token}", {})):
        response = await client.request(method, url, headers=headers, **kwargs)
        assert response.status_code == 403, (method, url)
        assert response.json()["error"]["code"] == "forbidden"
    assert (await client.get(f"/api/endpoints/{token}")).json()["name"] == "test"
    assert len((await client.get("/api/endpoints")).json()["endpoints"]) == 1


async def test_same_origin_reads_and_capture_urls_are_not_refused(client, endpoint):
    token = endpoint["token"]
    same = {"Origin": BASE, "Sec-Fetch-Site": "same-origin"}
    assert (await client.patch(f"/api/endpoints/{token}", json={"name": "renamed"},
                               headers=same)).status_code == 200
    evil = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
    assert (await client.get(f"/api/endpoints/{token}", headers=evil)).json()["name"] == "renamed"
    # A capture URL takes anything from anywhere: senders can be browsers too.
    assert (await client.post(f"/h/{token}", content=b"from a page", headers=evil)
            ).status_code == 200


async def test_the_browser_saying_same_origin_is_believed_even_with_a_null_origin(client):
    # A form POST from a page with Referrer-Policy: no-referrer carries Origin: null.
    headers = {"Origin": "null", "Sec-Fetch-Site": "same-origin"}
    assert (await client.post("/api/endpoints", json={}, headers=headers)).status_code == 201


async def test_the_public_url_counts_as_this_server(database):
    async with _client(database, public_url="https://hooks.example.com") as client:
        response = await client.post("/api/endpoints", json={},
                                     headers={"Origin": "https://hooks.example.com"})
        assert response.status_code == 201


# -- HOOKSCOPE_TOKEN ----------------------------------------------------------------------------

async def test_without_the_token_the_api_is_401_and_pages_go_to_login(database):
    async with _client(database, token=TOKEN) as client:
        for method, path in (("GET", "/api/endpoints"), ("POST", "/api/endpoints"),
                             ("GET", "/api/formats"), ("GET", "/api/endpoints/x/stream")):
            response = await client.request(method, path)
            assert response.status_code == 401, path
            assert response.json()["error"]["code"] == "unauthorized"
            assert response.headers["www-authenticate"] == 'Bearer realm="hookscope"'
        wrong = await client.get("/api/endpoints", headers={"Authorization": f"Bearer {TOKEN}x"})
        assert wrong.status_code == 401
        page = await client.get("/e/some-key?tab=body")
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=%2Fe%2Fsome-key%3Ftab%3Dbody"
        assert (await client.get("/")).headers["location"] == "/login?next=%2F"
        # Open: health, static files, the login page.
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/static/hookscope.css")).status_code == 200
        login = await client.get("/login?next=/e/k")
        assert login.status_code == 200 and 'value="/e/k"' in login.text


async def test_bearer_token_opens_the_api_and_capture_urls_stay_open(database):
    async with _client(database, token=TOKEN) as client:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        token = (await client.post("/api/endpoints", json={}, headers=auth)).json()["token"]
        assert (await client.post(f"/h/{token}", content=b"no token needed")).status_code == 200
        listing = (await client.get(f"/api/endpoints/{token}/captures", headers=auth)).json()
        assert [c["body_size"] for c in listing["captures"]] == [15]
        assert (await client.get("/", headers=auth)).status_code == 200


async def test_login_sets_a_cookie_that_is_not_the_token_and_logout_ends_it(database):
    async with _client(database, token=TOKEN) as client:
        refused = await client.post("/login", content=b"token=guess&next=%2F",
                                    headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert refused.status_code == 401 and "That is not the token." in refused.text
        assert COOKIE not in refused.headers.get("set-cookie", "")

        response = await client.post(
            "/login", content=f"token={TOKEN}&next=%2Fe%2Fabc".encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": BASE})
        assert response.status_code == 303
        assert response.headers["location"] == "/e/abc"
        cookie = response.headers["set-cookie"]
        value = cookie.split(";", 1)[0].removeprefix(f"{COOKIE}=")
        assert valid_session(TOKEN, value) and not valid_session("another-token", value)
        assert TOKEN not in cookie
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
        assert "Secure" not in cookie  # plain http here; https or an https public URL sets it

        assert (await client.get("/api/endpoints")).status_code == 200  # the cookie is sent
        assert (await client.get("/")).status_code == 200
        out = await client.post("/logout", headers={"Origin": BASE})
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert (await client.get("/api/endpoints")).status_code == 401


async def test_logout_revokes_the_session_so_a_copy_of_its_cookie_signs_in_no_more(database):
    async with _client(database, token=TOKEN) as client:
        response = await client.post(
            "/login", content=f"token={TOKEN}&next=%2F".encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": BASE})
        copied = {"Cookie": response.headers["set-cookie"].split(";", 1)[0]}
        other_browser = {"Cookie": f"{COOKIE}={session_value(TOKEN)}"}
        assert (await client.get("/api/endpoints", headers=copied)).status_code == 200
        out = await client.post("/logout", headers={"Origin": BASE})
        assert out.status_code == 303
        refused = await client.get("/api/endpoints", headers=copied)
        assert refused.status_code == 401
        assert refused.headers["set-cookie"].startswith(f"{COOKIE}=; Max-Age=0")
        page = await client.get("/", headers=copied)
        assert page.status_code == 303 and page.headers["location"] == "/login?next=%2F"
        assert (await client.get("/api/endpoints", headers=other_browser)).status_code == 200


async def test_a_forged_or_stale_cookie_is_no_session(database):
    async with _client(database, token=TOKEN) as client:
        month_ago = int(time.time()) - 31 * 24 * 3600
        for value in (TOKEN, session_value("an-old-token"), session_value(TOKEN, month_ago),
                      session_value(TOKEN, int(time.time()) + 3600), "", '"unbalanced',
                      "1." + "0" * 64, "x" * 5000):
            client.cookies.clear()
            response = await client.get("/api/endpoints", headers={"Cookie": f"{COOKIE}={value}"})
            assert response.status_code == 401, value


async def test_wrong_tokens_from_one_address_are_throttled(database):
    async with _client(database, token=TOKEN) as client:
        throttle = client._transport.app.state.auth_throttle
        clock = [1000.0]
        throttle._clock = lambda: clock[0]
        for _ in range(20):  # no credentials at all: a visit, not a guess
            assert (await client.get("/api/endpoints")).status_code == 401
        for i in range(10):
            wrong = await client.get("/api/endpoints", headers={"Authorization": f"Bearer {i}"})
            assert wrong.status_code == 401, i
        right = {"Authorization": f"Bearer {TOKEN}"}
        refused = await client.get("/api/endpoints", headers=right)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"
        assert "too many failed attempts" in refused.json()["error"]["message"]
        assert refused.headers["retry-after"] == "6"
        page = await client.get("/", headers=right)  # a page: to the login form, which says why
        assert page.status_code == 303 and page.headers["location"].startswith("/login")
        form = {"Content-Type": "application/x-www-form-urlencoded", "Origin": BASE}
        login = await client.post("/login", content=f"token={TOKEN}".encode(), headers=form)
        assert login.status_code == 429 and "Too many wrong tokens" in login.text
        assert COOKIE not in login.headers.get("set-cookie", "")
        clock[0] += 6  # one more try has come back
        assert (await client.get("/api/endpoints", headers=right)).status_code == 200
        assert (await client.post("/login", content=b"token=guess", headers=form)
                ).status_code == 401
        assert (await client.get("/api/endpoints", headers=right)).status_code == 429


async def test_only_guesses_count_and_a_stale_cookie_is_cleared(database):
    async with _client(database, token=TOKEN) as client:
        throttle = client._transport.app.state.auth_throttle
        throttle._clock = lambda: 1000.0  # no refill while this runs
        for _ in range(20):  # another scheme's credentials (an auth proxy's, say): no guess
            basic = await client.get("/api/endpoints", headers={"Authorization": "Basic eDp5"})
            assert basic.status_code == 401
        assert not throttle.blocked("127.0.0.1")
        stale = {"Cookie": f"{COOKIE}={session_value('the-old-token')}"}
        response = await client.get("/api/endpoints", headers=stale)
        assert response.status_code == 401
        assert response.headers["set-cookie"].startswith(f"{COOKIE}=; Max-Age=0; Path=/")
        page = await client.get("/e/abc", headers=stale)
        assert page.status_code == 303 and f"{COOKIE}=; Max-Age=0" in page.headers["set-cookie"]
        assert throttle._buckets["127.0.0.1"].tokens == 8  # each counted once: a forgery looks
        fresh = {"Cookie": f"{COOKIE}={session_value(TOKEN)}"}  # the same
        assert (await client.get("/api/endpoints", headers=fresh)).status_code == 200


async def test_websockets_are_refused(tmp_path):
    app = create_app(Settings(db=str(tmp_path / "ws.db"), allowed_hosts="hookscope.test"))
    sent = []

    async def receive():
        return {"type": "websocket.connect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "websocket", "path": "/api/endpoints", "raw_path": b"/api/endpoints",
             "query_string": b"", "headers": [(b"host", b"hookscope.test")], "scheme": "ws",
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000), "subprotocols": [],
             "asgi": {"version": "3.0"}, "app": app}
    await app(scope, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008}]


@pytest.mark.parametrize(("target", "landing"), [
    ("//evil.example/", "/"), ("https://evil.example/", "/"), ("/\\evil.example", "/"),
    ("/e/ok?x=1", "/e/ok?x=1"),
])
async def test_login_only_returns_to_a_page_of_this_server(database, target, landing):
    async with _client(database, token=TOKEN) as client:
        response = await client.post(
            "/login", data={"token": TOKEN, "next": target})
        assert response.headers["location"] == landing


def test_binding_beyond_loopback_without_a_token_warns():
    assert startup_warning(Settings(host="127.0.0.1")) is None
    assert startup_warning(Settings(host="::1")) is None
    assert startup_warning(Settings(host="localhost")) is None
    assert startup_warning(Settings(host="0.0.0.0", token="t")) is None
    warning = startup_warning(Settings(host="0.0.0.0"))
    assert warning and "without HOOKSCOPE_TOKEN" in warning and "0.0.0.0" in warning


@pytest.mark.sqlite_only("the token guards the stream before any storage: one backend is enough")
def test_the_stream_needs_the_token_on_a_real_server(server_database, tmp_path):
    server = ServerProcess(server_database, tmp_path / "s.log", env={"HOOKSCOPE_TOKEN": TOKEN})
    server.start()
    try:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        token = httpx.post(server.url + "/api/endpoints", json={}, headers=auth).json()["token"]
        stream = f"{server.url}/api/endpoints/{token}/stream"
        assert httpx.get(stream).status_code == 401
        lines: list[str] = []

        def listen() -> None:
            # From the start (Last-Event-ID 0): the capture comes whether it is sent before
            # or after the stream is open.
            with httpx.stream("GET", stream, headers={**auth, "Last-Event-ID": "0"},
                              timeout=10) as response:
                for line in response.iter_lines():
                    lines.append(line)
                    if line.startswith("data:"):
                        return

        listener = threading.Thread(target=listen)
        listener.start()
        httpx.post(f"{server.url}/h/{token}", content=b"live")
        listener.join(10)
        assert any(line.startswith("data:") for line in lines)
    finally:
        server.stop()


async def test_without_a_token_only_known_hosts_reach_the_api(database):
    async with _client(database) as client:  # allowed_hosts: hookscope.test
        for host in ("evil.example", "evil.example:8000", "localhost.evil.example"):
            response = await client.get("/api/endpoints", headers={"Host": host})
            assert response.status_code == 403, host
            assert "HOOKSCOPE_ALLOWED_HOSTS" in response.json()["error"]["message"]
        for host in ("localhost:8000", "127.0.0.1:8000", "[::1]:8000", "10.1.2.3",
                     "hookscope.test"):
            assert (await client.get("/api/endpoints", headers={"Host": host})
                    ).status_code == 200, host
        token = (await client.post("/api/endpoints", json={})).json()["token"]
        # Capture URLs and health answer to any host: senders use whatever name they were given.
        assert (await client.post(f"/h/{token}", headers={"Host": "evil.example"})
                ).status_code == 200
        assert (await client.get("/healthz", headers={"Host": "evil.example"})).status_code == 200
    async with _client(database, allowed_hosts="*") as client:
        assert (await client.get("/api/endpoints", headers={"Host": "anything.example"})
                ).status_code == 200


async def test_another_apps_odd_cookie_does_not_hide_the_session(database):
    async with _client(database, token=TOKEN) as client:
        for other in ("theme=dark mode", 'prefs={"a":1}', "x=\"unbalanced"):
            header = f"{other}; {COOKIE}={session_value(TOKEN)}"
            response = await client.get("/api/endpoints", headers={"Cookie": header})
            assert response.status_code == 200, other


@pytest.mark.parametrize("token", ["pässwort", " padded", "with space", "tab\there"])
def test_a_token_that_cannot_travel_in_a_header_is_refused_at_start(token):
    from hookscope.settings import SettingsError

    with pytest.raises(SettingsError, match="printable ASCII"):
        Settings.from_env({"HOOKSCOPE_TOKEN": token})
