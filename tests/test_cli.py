"""The `hookscope` client commands against a real server: output, --json and exit codes.

Most tests run the CLI in this process (tests/clirun.py); `tail` and the environment variable
go through a real subprocess. validate: test_cli_validate.py; replay, export: test_cli_replay.py.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from hookscope.cli import captures
from hookscope.cli.captures import endpoint_key
from hookscope.cli.client import Unreachable, server_url
from hookscope.cli.endpoints import OPTIONS
from hookscope.cli.output import Printer, safe
from hookscope.formats import load_formats
from hookscope.routes.fields import _CHECKERS as ENDPOINT_FIELDS
from hookscope.verify import SCHEME_IDS
from tests.clirun import cli_env, hookscope, hookscope_process, unused_port_url
from tests.serverproc import ServerProcess, local_tls

FIXTURES = Path(__file__).parent / "fixtures" / "formats"


def _endpoint(url: str, **fields) -> dict:
    response = httpx.post(f"{url}/api/endpoints", json=fields, verify=local_tls())
    assert response.status_code == 201, response.text
    return response.json()


def _send(endpoint: dict, body: bytes = b'{"n": 1}', path: str = "", **kwargs) -> str:
    response = httpx.post(endpoint["url"] + path, content=body, verify=local_tls(), **kwargs)
    assert response.status_code < 300, response.text
    return response.headers["x-hookscope-capture"]


def _github(secret: str, body: bytes) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"x-hub-signature-256": f"sha256={digest}", "content-type": "application/json"}


def _fixture_body(name: str) -> bytes:
    case = json.loads((FIXTURES / name).read_text())
    return case["body_text"].encode() if "body_text" in case else json.dumps(case["body"]).encode()


# -- new, list, show, formats ---------------------------------------------------------------------


def test_new_prints_only_the_capture_url(shared_server):
    result = hookscope("--server", shared_server.url, "new")
    assert result.code == 0, result.err
    url = result.out.strip()
    assert re.fullmatch(re.escape(shared_server.url) + r"/h/[A-Za-z0-9_-]{24}", url)
    assert httpx.post(url, content=b"hi").status_code == 200


def test_new_sends_every_endpoint_option(shared_server, tmp_path):
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": "object", "required": ["id"]}))
    result = hookscope(
        "new", "--server", shared_server.url + "/", "--json", "--name", "orders",
        "--alias", "cli-every-option", "--verify", "hmac", "--secret", "new-key",
        "--secret", "old-key", "--tolerance", "60", "--verify-option", "header=x-sig",
        "--verify-option", "algorithm=sha512", "--format", "none", "--schema", str(schema),
        "--response-status", "202", "--response-header", "X-Team: payments",
        "--response-body", "thanks", "--delay-ms", "5", "--reject-bad-signature",
        "--reject-invalid-payload", "--forward", "http://127.0.0.1:9/in",
        "--forward-timeout", "2.5", "--forward-retries", "1", "--max-captures", "50",
        "--max-bytes", "4096", "--rate-limit", "0.5", "--expires-at", "2099-01-01T00:00:00Z")
    assert result.code == 0, result.err
    endpoint = json.loads(result.out)
    assert (endpoint["name"], endpoint["alias"], endpoint["format"]) == (
        "orders", "cli-every-option", "none")
    assert endpoint["verify"] == {"scheme": "hmac", "secrets": ["ne****", "ol****"],
                                  "tolerance_seconds": 60, "header": "x-sig",
                                  "algorithm": "sha512"}
    assert endpoint["schema"] == {"type": "object", "required": ["id"]}
    assert endpoint["response"] == {"status": 202, "headers": {"X-Team": "payments"},
                                    "body": "thanks", "delay_ms": 5}
    assert endpoint["reject"] == {"bad_signature": True, "invalid_payload": True}
    assert endpoint["forward"] == {"url": "http://127.0.0.1:9/in", "timeout": 2.5, "retries": 1}
    assert (endpoint["max_captures"], endpoint["max_bytes"], endpoint["rate_limit"]) == (
        50, 4096, 0.5)
    assert endpoint["expires_at"] == "2099-01-01T00:00:00.000000Z"
    assert endpoint["url"].startswith(shared_server.url + "/h/")  # no double slash
    reply = httpx.post(endpoint["alias_url"], content=b"{}")
    # Unsigned: refused with the error shape, naming the header the options chose.
    assert reply.status_code == 401
    assert reply.json() == {"error": {"code": "bad_signature", "details": [],
                                      "message": "signature missing (hmac): no x-sig header"}}


def test_new_has_an_option_for_every_endpoint_field_the_api_takes():
    fields = {option.field.split(".")[0] for option in OPTIONS}
    assert fields == set(ENDPOINT_FIELDS)


def test_new_with_a_field_the_server_refuses_exits_2_naming_it(shared_server):
    result = hookscope("new", "--server", shared_server.url, "--alias", "Not A Slug",
                       "--response-status", "99")
    assert result.code == 2
    assert "alias" in result.err and "response.status" in result.err
    assert result.out == ""


def test_new_with_a_malformed_header_option_exits_2(shared_server):
    result = hookscope("new", "--server", shared_server.url, "--response-header", "no colon")
    assert result.code == 2
    assert "'Name: value'" in result.err


def test_list_prints_an_aligned_table_of_endpoints(shared_server):
    first = _endpoint(shared_server.url, name="first one", alias="cli-list-first")
    second = _endpoint(shared_server.url, verify={"scheme": "github", "secrets": ["k"]})
    _send(first)
    result = hookscope("list", "--server", shared_server.url)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].split() == ["TOKEN", "ALIAS", "NAME", "CAPTURES", "LAST", "CAPTURE",
                                "CHECKS"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert "cli-list-first" in rows[first["token"]]
    assert "verify github" in rows[second["token"]]
    # Aligned: every row's alias column starts where its heading does.
    column = lines[0].index("ALIAS")
    assert rows[first["token"]][column:].startswith("cli-list-first")
    assert rows[first["token"]][lines[0].index("CAPTURES"):].startswith("1 ")
    assert list(rows).index(second["token"]) < list(rows).index(first["token"])  # newest first
    as_json = json.loads(hookscope("list", "--json", "--server", shared_server.url).out)
    assert {first["token"], second["token"]} <= {e["token"] for e in as_json["endpoints"]}


def test_show_prints_overview_headers_and_pretty_body(shared_server):
    endpoint = _endpoint(shared_server.url)
    capture_id = _send(endpoint, b'{"event":"order.created","n":[1,2]}', "/orders?x=1",
                       headers=[("content-type", "application/json"), ("x-dup", "a"),
                                ("x-dup", "b")])
    result = hookscope("--server", shared_server.url, "show", capture_id)
    assert result.code == 0, result.err
    out = result.out
    assert out.splitlines()[0] == f"POST /h/{endpoint['token']}/orders?x=1"
    assert re.search(rf"^  id\s+{capture_id}$", out, re.M)
    assert re.search(r"^  signature\s+unchecked$", out, re.M)
    assert "  x-dup: a\n  x-dup: b\n" in out
    assert 'Body (json)\n{\n  "event": "order.created",\n  "n": [\n    1,' in out
    assert "\x1b[" not in out  # not a terminal: no colour
    as_json = json.loads(hookscope("--server", shared_server.url, "show", capture_id,
                                   "--json").out)
    assert as_json == httpx.get(f"{shared_server.url}/api/captures/{capture_id}").json()


def test_show_escapes_control_characters_of_a_hostile_body(shared_server):
    endpoint = _endpoint(shared_server.url)
    capture_id = _send(endpoint, b"before\x1b]0;owned\x07\x1b[2Jafter\r\nline two",
                       headers={"content-type": "text/plain"})
    out = hookscope("--server", shared_server.url, "show", capture_id).out
    assert "before\\x1b]0;owned\\x07\\x1b[2Jafter\\x0d\nline two" in out
    assert "\x1b" not in out and "\x07" not in out


def test_show_prints_a_binary_body_as_a_hex_dump(shared_server):
    endpoint = _endpoint(shared_server.url)
    capture_id = _send(endpoint, bytes(range(256)) + b"tail",
                       headers={"content-type": "application/octet-stream"})
    out = hookscope("--server", shared_server.url, "show", capture_id).out
    body = out[out.index("Body (binary)\n"):].splitlines()
    assert body[1] == ("  00000000  00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f  "
                       "................")
    assert body[3] == ("  00000020  20 21 22 23 24 25 26 27 28 29 2a 2b 2c 2d 2e 2f   "
                       "!\"#$%&'()*+,-./")
    assert body[-1] == "  ... 4 more bytes"


def test_show_of_an_unknown_capture_exits_2(shared_server):
    result = hookscope("--server", shared_server.url, "show", "c_" + "0" * 32)
    assert result.code == 2
    assert "no capture with id" in result.err and "404" in result.err


def test_diff_lists_what_changed_and_exits_1_or_0_when_identical(shared_server):
    endpoint = _endpoint(shared_server.url)
    a = _send(endpoint, b'{"order": {"id": 1, "items": [1, 2]}, "gone": true}', "?v=1",
              headers={"content-type": "application/json", "x-run": "a"})
    b = _send(endpoint, b'{"order": {"id": 2, "items": [1, 2, 3]}, "new": "x"}', "?v=2",
              headers={"content-type": "application/json", "x-run": "b"})
    result = hookscope("--server", shared_server.url, "diff", a, b)
    assert result.code == 1, result.err
    lines = result.out.splitlines()
    assert "~ query v: 1 -> 2" in lines
    assert "~ headers x-run: a -> b" in lines
    assert "- body /gone: true" in lines
    assert '+ body /new: "x"' in lines
    assert "+ body /order/items/2: 3" in lines
    assert "~ body /order/id: 1 -> 2" in lines
    same = hookscope("--server", shared_server.url, "diff", a, a)
    assert (same.code, same.out) == (0, "identical\n")
    as_json = json.loads(hookscope("--server", shared_server.url, "diff", a, b, "--json").out)
    assert as_json["identical"] is False and as_json["a"] == a
    missing = hookscope("--server", shared_server.url, "diff", a, "c_" + "0" * 32)
    assert missing.code == 2 and "no capture" in missing.err


def test_formats_lists_every_format_with_vendor_and_title(shared_server):
    result = hookscope("--server", shared_server.url, "formats")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].split() == ["ID", "VENDOR", "TITLE"]
    registry = load_formats()
    assert sorted(line.split()[0] for line in lines[1:]) == registry.ids
    ping = next(line for line in lines if line.startswith("virtuoso.ping "))
    assert ping.split(None, 2)[1:] == ["Virtuoso", registry.get("virtuoso.ping").title]
    as_json = json.loads(hookscope("--server", shared_server.url, "formats", "--json").out)
    assert len(as_json["formats"]) == len(registry.ids)


# -- tail ------------------------------------------------------------------------------------------


def _read_lines(proc: subprocess.Popen[str], count: int, timeout: float = 15) -> list[str]:
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout.readline()  # type: ignore
                                                          for _ in range(count)), daemon=True)
    reader.start()
    reader.join(timeout)
    stderr = proc.stderr.read() if proc.poll() is not None else ""  # type: ignore[union-attr]
    assert len(lines) == count, f"got {lines!r}; stderr: {stderr}"
    return lines


def _as_in_a_terminal() -> None:
    # A suite started in the background of a script (`make test &`) inherits an ignored SIGINT,
    # and so would `tail`: Ctrl-C is what a terminal sends, so the child gets the default.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _tail(server_url: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "hookscope", "tail", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cli_env(server_url), preexec_fn=_as_in_a_terminal)


def _stop(proc: subprocess.Popen[str]) -> int:
    """Ctrl-C, then the exit status (the pipes are drained and closed)."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
    return proc.returncode


def test_tail_prints_one_aligned_line_per_capture_until_ctrl_c(shared_server):
    endpoint = _endpoint(shared_server.url, alias="cli-tail",
                         verify={"scheme": "github", "secrets": ["k"]})
    _send(endpoint, b"old")  # before tail started: not shown
    proc = _tail(shared_server.url, "cli-tail")
    try:
        time.sleep(1.0)  # let it connect (a capture sent before would still come: resume)
        body = _fixture_body("flows.entity-event/seed-example.json")
        _send(endpoint, body, "/flows?a=1", headers=_github("k", body))
        httpx.put(endpoint["url"] + "/second", content=b"x" * 2048, headers=_github("bad", b""))
        first, second = _read_lines(proc, 2)
    finally:
        code = _stop(proc)
    assert code == 0
    assert re.match(r"\d\d:\d\d:\d\d\.\d{3}\s+#2\s+POST\s+/flows\?a=1\s+\S+ K?B\s+verified"
                    r"\s+valid flows\.entity-event$", first.rstrip("\n")), first
    assert re.match(r"\d\d:\d\d:\d\d\.\d{3}\s+#3\s+PUT\s+/second\s+2\.0 KB\s+failed\s+unknown$",
                    second.rstrip("\n")), second
    assert first.index("#2") == second.index("#3")  # fixed-width columns line up
    assert first.index("verified") == second.index("failed")


def test_tail_json_prints_one_summary_per_line_from_after(shared_server):
    endpoint = _endpoint(shared_server.url)
    ids = [_send(endpoint, str(i).encode()) for i in range(3)]
    proc = _tail(shared_server.url, endpoint["token"], "--json", "--after", "1")
    try:
        lines = _read_lines(proc, 2)
        ids.append(_send(endpoint, b"live"))
        lines += _read_lines(proc, 1)
    finally:
        assert _stop(proc) == 0
    summaries = [json.loads(line) for line in lines]
    assert [s["id"] for s in summaries] == ids[1:]
    assert [s["seq"] for s in summaries] == [2, 3, 4]
    assert "body_text" not in summaries[0]


def test_tail_resumes_after_a_dropped_stream_with_last_event_id(monkeypatch):
    calls: list[int | None] = []

    def events(self, path, last_event_id):
        calls.append(last_event_id)
        if len(calls) == 1:
            yield "capture", "5", json.dumps(_summary(5))
            raise Unreachable(self.base_url, httpx.ReadError("connection reset"))
        if len(calls) == 2:
            yield "capture", "6", json.dumps(_summary(6))
            return  # the server ended the stream (shutting down, or we were too slow)
        raise KeyboardInterrupt

    monkeypatch.setattr("hookscope.cli.client.Client.events", events)
    monkeypatch.setattr(captures.time, "sleep", lambda s: None)
    result = hookscope("--server", "http://127.0.0.1:9", "tail", "k", "--after", "4")
    assert result.code == 0
    assert calls == [4, 5, 6]
    assert [line.split()[1] for line in result.out.splitlines()] == ["#5", "#6"]
    assert "connection reset; reconnecting" in result.err


def _summary(seq: int) -> dict:
    return {"id": f"c_{seq}", "seq": seq, "received_at": "2026-11-22T10:00:00.123456Z",
            "method": "POST", "path": "/h/k/x", "query": "", "body_size": 1,
            "signature": {"status": "unchecked"}, "validation": {"status": "unknown"}}


# -- wait ------------------------------------------------------------------------------------------


def test_wait_returns_a_capture_that_arrived_before_it_began(shared_server):
    endpoint = _endpoint(shared_server.url)
    capture_id = _send(endpoint, b'{"early": true}', "/early")
    result = hookscope("--server", shared_server.url, "wait", endpoint["token"], "--timeout", "5")
    assert result.code == 0, result.err
    assert re.search(r"#1\s+POST\s+/early\s", result.out)
    as_json = hookscope("--server", shared_server.url, "wait", endpoint["token"], "--json")
    assert as_json.code == 0
    full = json.loads(as_json.out)
    assert (full["id"], full["body_text"]) == (capture_id, '{"early": true}')


def test_wait_holds_until_a_capture_arrives_and_after_skips_seen_ones(shared_server):
    endpoint = _endpoint(shared_server.url)
    _send(endpoint, b"first")
    timer = threading.Timer(0.7, _send, args=(endpoint, b"second", "/late"))
    timer.start()
    try:
        started = time.monotonic()
        result = hookscope("--server", shared_server.url, "wait", endpoint["token"],
                           "--after", "1", "--timeout", "20")
    finally:
        timer.join()
    assert result.code == 0, result.err
    assert re.search(r"#2\s+POST\s+/late\s", result.out)
    assert 0.5 < time.monotonic() - started < 10


def test_wait_with_nothing_arriving_exits_3_after_the_timeout(shared_server):
    endpoint = _endpoint(shared_server.url)
    started = time.monotonic()
    result = hookscope("--server", shared_server.url, "wait", endpoint["token"], "--timeout", "1")
    elapsed = time.monotonic() - started
    assert result.code == 3, result.err
    assert f"nothing arrived at {endpoint['token']} within 1 s" in result.err
    assert result.out == ""
    assert 0.9 < elapsed < 5


def test_wait_expectations_met_exit_0(shared_server):
    endpoint = _endpoint(shared_server.url, verify={"scheme": "github", "secrets": ["k"]})
    body = _fixture_body("webengage.event/system-email-open.json")
    _send(endpoint, body, headers=_github("k", body))
    result = hookscope("--server", shared_server.url, "wait", endpoint["token"],
                       "--expect-verified", "--expect-valid", "--expect-format",
                       "webengage.event")
    assert result.code == 0, result.err
    assert result.err == ""


def test_wait_with_a_wrong_signature_exits_1_naming_the_field(shared_server):
    endpoint = _endpoint(shared_server.url, verify={"scheme": "github", "secrets": ["k"]})
    _send(endpoint, b"{}", headers=_github("wrong", b"{}"))
    result = hookscope("--server", shared_server.url, "wait", endpoint["token"],
                       "--expect-verified")
    assert result.code == 1
    assert re.search(r"#1\s+POST\s", result.out)  # the capture is still shown
    assert "expectation failed: signature.status is 'failed', expected 'verified'" in result.err
    assert "scheme 'github'" in result.err


def test_wait_with_an_invalid_payload_exits_1_listing_each_error_path(shared_server):
    endpoint = _endpoint(shared_server.url)
    _send(endpoint, _fixture_body("avo.ndjson/invalid-event-type-enum.json"))
    result = hookscope("--server", shared_server.url, "wait", endpoint["token"],
                       "--expect-valid", "--expect-format", "flows.entity-event")
    assert result.code == 1
    assert "validation.status is 'invalid', expected 'valid' (format 'avo.ndjson')" in result.err
    assert "\n  /events/0/event_type: 'renamed'" in result.err
    assert "validation.format is 'avo.ndjson', expected 'flows.entity-event'" in result.err


def test_wait_expect_valid_with_nothing_recognised_says_so(shared_server):
    endpoint = _endpoint(shared_server.url)
    _send(endpoint, b"plain text")
    result = hookscope("--server", shared_server.url, "wait", endpoint["token"], "--expect-valid")
    assert result.code == 1
    assert "validation.status is 'unknown', expected 'valid'" in result.err


def test_wait_takes_the_capture_url_and_a_token_that_starts_with_a_dash(shared_server):
    endpoint = _endpoint(shared_server.url)
    _send(endpoint)
    by_url = hookscope("--server", shared_server.url, "wait", endpoint["url"], "--timeout", "5")
    assert by_url.code == 0, by_url.err
    dashed = hookscope("--server", shared_server.url, "wait", "-Ab3_x", "--timeout", "1")
    assert dashed.code == 2
    assert "no endpoint with token or alias '-Ab3_x'" in dashed.err  # a KEY, not an option
    typo = hookscope("--server", shared_server.url, "wait", "k", "--expct-valid")
    assert typo.code == 2
    assert "unrecognized arguments: --expct-valid" in typo.err


def test_endpoint_key_from_a_token_an_alias_or_a_capture_url():
    assert endpoint_key("my-hook") == "my-hook"
    assert endpoint_key("-Ab3") == "-Ab3"
    assert endpoint_key("https://hooks.example.com/h/Tok3n") == "Tok3n"
    assert endpoint_key("http://127.0.0.1:8000/h/my-hook/orders?x=1") == "my-hook"
    assert endpoint_key("a/b c") == "a%2Fb%20c"


def test_wait_on_an_unknown_endpoint_exits_2(shared_server):
    result = hookscope("--server", shared_server.url, "wait", "no-such-endpoint", "--timeout", "1")
    assert result.code == 2
    assert "no endpoint with token or alias 'no-such-endpoint'" in result.err


# -- the server, exit codes, help ------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["new"], ["list"], ["show", "c_x"], ["formats"], ["tail", "k"], ["wait", "k"],
    ["replay", "c_x", "--to", "http://127.0.0.1:9/"], ["export", "c_x", "--as", "curl"],
])
def test_an_unreachable_server_exits_4(args):
    url = unused_port_url()
    result = hookscope("--server", url, *args)
    assert result.code == 4
    assert result.err.startswith(f"hookscope: cannot reach {url}: ")
    assert "Traceback" not in result.err


def test_hookscope_url_names_the_server_and_the_flag_wins(shared_server):
    from_env = hookscope_process("list", "--json", server_url=shared_server.url + "/")
    assert from_env.returncode == 0, from_env.stderr
    assert "endpoints" in json.loads(from_env.stdout)
    flag_wins = hookscope_process("list", "--server", shared_server.url,
                                  server_url=unused_port_url())
    assert flag_wins.returncode == 0, flag_wins.stderr


def test_the_token_of_a_server_that_needs_one_comes_from_hookscope_token(server_database,
                                                                          tmp_path, monkeypatch):
    proc = ServerProcess(server_database, tmp_path / "t.log",
                         env={"HOOKSCOPE_TOKEN": "cli-token"})
    proc.start()
    try:
        monkeypatch.delenv("HOOKSCOPE_TOKEN", raising=False)
        refused = hookscope("--server", proc.url, "list")
        assert refused.code == 2
        assert "401 unauthorized" in refused.err
        assert "this server needs its token: HOOKSCOPE_TOKEN is not set" in refused.err
        monkeypatch.setenv("HOOKSCOPE_TOKEN", "cli-token")
        url = hookscope("--server", proc.url, "new").out.strip()
        httpx.post(url, content=b"{}")  # capture URLs stay open
        token = url.rsplit("/", 1)[1]
        waited = hookscope("--server", proc.url, "wait", token, "--timeout", "5")
        assert waited.code == 0, waited.err
        monkeypatch.setenv("HOOKSCOPE_TOKEN", "wrong")
        assert "HOOKSCOPE_TOKEN is wrong" in hookscope("--server", proc.url, "list").err
    finally:
        proc.stop()


def test_server_url_defaults_to_localhost_8000_and_drops_a_trailing_slash():
    assert server_url(None, {}) == "http://127.0.0.1:8000"
    assert server_url(None, {"HOOKSCOPE_URL": "https://hooks.example.com/"}) == (
        "https://hooks.example.com")
    assert server_url("http://a:1//", {"HOOKSCOPE_URL": "http://b:2"}) == "http://a:1"


@pytest.mark.parametrize("args", [
    [], ["frobnicate"], ["wait"], ["wait", "k", "--timeout", "soon"], ["show"],
    ["export", "c_x"], ["export", "c_x", "--as", "pdf"], ["replay", "c_x"],
    ["new", "--max-captures", "many"], ["validate"], ["copy-data", "--from", "hookscope.db"],
])
def test_bad_usage_exits_2_with_the_usage(args):
    result = hookscope(*args)
    assert result.code == 2
    assert "usage: hookscope" in result.err


@pytest.mark.parametrize("command", ["new", "list", "show", "tail", "wait", "validate",
                                     "replay", "export", "diff", "formats", "serve",
                                     "copy-data", "listen"])
def test_every_command_has_help(command):
    result = hookscope(command, "--help")
    assert result.code == 0
    assert f"usage: hookscope {command}" in result.out
    assert len(result.out.splitlines()) > 4


def test_top_level_help_lists_commands_and_exit_codes():
    result = hookscope("--help")
    assert result.code == 0
    for command in ("serve", "new", "list", "show", "tail", "wait", "validate", "replay",
                    "export", "formats", "copy-data", "listen"):
        assert re.search(rf"^    {command}\s", result.out, re.M), command
    assert "4 server unreachable" in " ".join(result.out.split())


def test_new_help_names_every_signature_scheme():
    help_text = " ".join(hookscope("new", "--help").out.split())
    for scheme in SCHEME_IDS:
        assert scheme in help_text, scheme


# -- output ----------------------------------------------------------------------------------------


class _Terminal:
    def __init__(self) -> None:
        self.text = ""

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass


def test_colour_only_on_a_terminal_without_no_color_and_never_for_json(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    terminal = _Terminal()
    Printer(stream=terminal).line(Printer(stream=terminal).paint("verified", "green"))
    assert terminal.text == "\x1b[32mverified\x1b[0m\n"
    assert Printer(stream=_Terminal(), as_json=True).paint("x", "green") == "x"
    monkeypatch.setenv("NO_COLOR", "1")
    assert Printer(stream=_Terminal()).paint("x", "green") == "x"


def test_coloured_table_cells_still_line_up(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    terminal = _Terminal()
    out = Printer(stream=terminal)
    out.table(["A", "B"], [[out.paint("long cell", "red"), "x"], ["s", "y"]])
    plain_lines = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in terminal.text.splitlines()]
    assert [line.index(cell) for line, cell in zip(plain_lines, "Bxy", strict=True)] == [11] * 3


def test_safe_escapes_terminal_controls_but_keeps_tabs_newlines_and_text():
    assert safe("a\tb\nc\x1b[31md\x9be\u00e9\u2603") == "a\tb\nc\\x1b[31md\\x9be\u00e9\u2603"
