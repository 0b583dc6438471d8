"""`hookscope listen`: a real server, a real local receiver, and the listener as a real process.

What is checked: signed deliveries verify at the receiver with the vendors' own code, byte for
byte; filters; retries while a target is down, in order, and a target that stays down neither
holding up another nor blocking its own later captures; exactly once and in order across a
listener killed with SIGKILL and a server restarted; the deliveries in the API and the stream.
docs/cli.md ("Forwarding to your machine") says what the listener promises.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import stripe

from hookscope.cli.cursor import Cursor
from hookscope.cli.output import Console, Printer
from hookscope.models import HOP_BY_HOP
from hookscope.ops.forward import forward_url
from tests.clirun import (
    Received,
    Receiver,
    cli_env,
    hookscope,
    hookscope_process,
    unused_port_url,
)
from tests.serverproc import ServerProcess, local_tls, wait_until

NAME = "ada@laptop"


def _as_in_a_terminal() -> None:
    # A suite started in the background inherits an ignored SIGINT; Ctrl-C is what is tested.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Listener:
    """`python -m hookscope listen ...` as a process of its own."""

    def __init__(self, server_url: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hookscope", "listen", *args], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=cli_env(server_url),
            preexec_fn=_as_in_a_terminal)
        self.out = self.err = ""
        self.stopped = False

    def stop(self, sig: int = signal.SIGINT) -> int:
        """Send `sig` (SIGKILL: no code of the listener runs); its exit status."""
        if self.stopped:
            return self.proc.returncode
        self.stopped = True
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.out, self.err = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.out, self.err = self.proc.communicate()
        return self.proc.returncode


@contextmanager
def listening(server_url: str, *args: str) -> Iterator[Listener]:
    listener = Listener(server_url, *args)
    try:
        yield listener
    finally:
        listener.stop(signal.SIGKILL)


def _endpoint(url: str, **fields: object) -> dict:
    reply = httpx.post(f"{url}/api/endpoints", json=fields, verify=local_tls())
    assert reply.status_code == 201, reply.text
    return reply.json()


def _send(endpoint: dict, path: str = "", body: bytes = b"x", method: str = "POST",
          headers: list[tuple[str, str]] | None = None) -> str:
    reply = httpx.request(method, endpoint["url"] + path, content=body, headers=headers,
                          verify=local_tls())
    assert reply.status_code == 200, reply.text
    return reply.headers["x-hookscope-capture"]


def _capture(server_url: str, capture_id: str) -> dict:
    return httpx.get(f"{server_url}/api/captures/{capture_id}", verify=local_tls()).json()


def _deliveries(server_url: str, capture_id: str) -> list[dict]:
    return _capture(server_url, capture_id)["deliveries"]


def _outcomes(server_url: str, capture_id: str, target: str = "") -> list[str]:
    return [d["outcome"] for d in _deliveries(server_url, capture_id)
            if d["target"].startswith(target)]


def _until(condition, what: str, timeout: float = 15) -> None:
    assert wait_until(condition, timeout), f"timed out waiting for {what}"


def _stopped_cleanly(listener: Listener, sig: int = signal.SIGINT) -> None:
    assert listener.stop(sig) == 0, listener.err
    assert "Traceback" not in listener.err


# -- what arrives ----------------------------------------------------------------------------------


def octokit_verify(secret: str, payload: bytes, signature: str) -> bool:
    """@octokit/webhooks-methods' verify(): HMAC-SHA256 of the raw payload, as `sha256=<hex>`,
    compared in constant time with X-Hub-Signature-256."""
    expected = "sha256=" + hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.encode())


def _header(received: Received, name: str) -> str:
    return next(value for key, value in received.headers if key.lower() == name)


def test_signed_deliveries_arrive_byte_for_byte_and_verify_with_the_vendors_code(shared_server,
                                                                                 tmp_path):
    url = shared_server.url
    endpoint = _endpoint(url)
    github_body = '{"action":"opened",  "title": "naïve café ☕", "n": 1.50}\n'.encode()
    github = [("content-type", "application/json"), ("x-github-event", "pull_request"),
              ("x-hub-signature-256", "sha256=" + hmac.new(
                  b"gh-secret", github_body, hashlib.sha256).hexdigest()),
              ("x-dup", "first"), ("x-dup", "second"), ("Accept", "*/*")]
    stripe_body = json.dumps({"id": "evt_1", "object": "event", "type": "charge.succeeded",
                              "data": {"object": {"id": "ch_1", "amount": 4200}}},
                             indent=1).encode()
    stripe_signature = stripe.WebhookSignature.generate_signature_header(
        stripe_body.decode(), "whsec_test", int(time.time()))
    binary = bytes(range(256)) * 3
    with Receiver() as receiver, httpx.stream(
            "GET", f"{url}/api/endpoints/{endpoint['token']}/stream", verify=local_tls(),
            timeout=30) as stream:
        ids = [_send(endpoint, "/github/push?delivery=1&delivery=2", github_body,
                     headers=github),
               _send(endpoint, "/stripe", stripe_body,
                     headers=[("stripe-signature", stripe_signature),
                              ("content-type", "application/json")]),
               _send(endpoint, "/files/blob.bin", binary, method="PUT")]
        events = _stream_events(stream)
        assert [next(events)[0] for _ in ids] == ["capture"] * 3  # the stream is live
        with listening(url, endpoint["token"], "--forward-to", receiver.url + "/hooks?src=hs",
                       "--from", "first", "--json", "--name", NAME,
                       "--state", str(tmp_path)) as listener:
            _until(lambda: len(receiver.requests) == 3, "three deliveries")
            streamed = [next(events) for _ in ids]
            _stopped_cleanly(listener)

    pushed, charged, blob = receiver.requests
    assert octokit_verify("gh-secret", pushed.body, _header(pushed, "x-hub-signature-256"))
    event = stripe.Webhook.construct_event(charged.body, _header(charged, "stripe-signature"),
                                           "whsec_test")
    assert event.id == "evt_1" and event.data.object.amount == 4200
    assert [pushed.body, charged.body, blob.body] == [github_body, stripe_body, binary]
    assert [r.method for r in receiver.requests] == ["POST", "POST", "PUT"]
    assert [r.path for r in receiver.requests] == [
        "/hooks/github/push?src=hs&delivery=1&delivery=2", "/hooks/stripe?src=hs",
        "/hooks/files/blob.bin?src=hs"]
    for received, capture_id in zip(receiver.requests, ids, strict=True):
        captured = _capture(url, capture_id)["headers"]
        assert received.headers[0][0].lower() == "host"  # written by the HTTP client
        assert received.headers[1:] == [
            (name, value) for name, value in captured
            if name.lower() not in HOP_BY_HOP | {"host"}]
    assert [(k, v) for k, v in pushed.headers if k == "x-dup"] == [
        ("x-dup", "first"), ("x-dup", "second")]

    printed = [json.loads(line) for line in listener.out.splitlines()]
    assert [(d["capture"], d["status"], d["outcome"], d["by"]) for d in printed] == [
        (capture_id, 201, "delivered", NAME) for capture_id in ids]
    for capture_id, received in zip(ids, receiver.requests, strict=True):
        [delivery] = _deliveries(url, capture_id)
        assert delivery["target"] == receiver.url + received.path
        assert delivery["response"]["body_text"] == '{"received": true}'
        assert delivery["attempt"] == 1
    assert [(kind, data["capture"], data["outcome"]) for kind, data in streamed] == [
        ("delivery", capture_id, "delivered") for capture_id in ids]


def _stream_events(stream: httpx.Response) -> Iterator[tuple[str, dict]]:
    kind = ""
    for line in stream.iter_lines():
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            yield kind, json.loads(line[6:])


def test_a_filtered_listener_forwards_only_what_matches(shared_server, tmp_path):
    url = shared_server.url
    endpoint = _endpoint(url)
    sent = [("POST", "/github/push"), ("PUT", "/github/push"), ("POST", "/stripe"),
            ("POST", "/github/a/b"), ("POST", ""), ("POST", "/exact")]
    ids = [_send(endpoint, path, f"{method} {path}".encode(), method) for method, path in sent]
    with Receiver() as receiver, listening(
            url, endpoint["url"], "--forward-to", receiver.url, "--from", "first",
            "--method", "post", "--path", "/github/*", "--path", "/exact",
            "--state", str(tmp_path)) as listener:
        _until(lambda: len(receiver.requests) == 3, "three matching captures")
        # The last one sent matched: had anything else been forwarded, it would be here now.
        _stopped_cleanly(listener)
    assert receiver.bodies() == [b"POST /github/push", b"POST /github/a/b", b"POST /exact"]
    assert [bool(_deliveries(url, capture_id)) for capture_id in ids] == [
        True, False, False, True, False, True]
    assert "after #6" in listener.err  # where the cursor stands: past what was left out
    lines = listener.out.splitlines()
    assert len(lines) == 3
    assert re.fullmatch(rf"\d\d:\d\d:\d\d\.\d{{3}}\s+#1\s+POST\s+/github/push\s+-> "
                        rf"{receiver.url[7:]}/\s+201\s+\d+\.\d ms", lines[0]), lines[0]
    assert len({line.index("->") for line in lines}) == 1  # the columns line up


# -- a target that is down -------------------------------------------------------------------------


def test_a_target_down_then_up_gets_its_captures_after_retries_in_order(shared_server,
                                                                         tmp_path):
    url = shared_server.url
    endpoint = _endpoint(url)
    with Receiver(status=503) as receiver, listening(
            url, endpoint["token"], "--forward-to", receiver.url, "--retry-on", "5xx",
            "--from", "first", "--state", str(tmp_path)) as listener:
        ids = [_send(endpoint, body=str(n).encode()) for n in (1, 2, 3)]
        _until(lambda: _outcomes(url, ids[0]) == ["retrying"], "a first try answered 503")
        receiver.status = 201
        _until(lambda: len(receiver.bodies(201)) == 3, "all three, once the target is up")
        _stopped_cleanly(listener)
    assert receiver.bodies(201) == [b"1", b"2", b"3"]
    assert receiver.bodies(503) == [b"1"]
    first = _deliveries(url, ids[0])
    assert [(d["attempt"], d["status"], d["outcome"]) for d in first] == [
        (1, 503, "retrying"), (2, 201, "delivered")]
    assert [_outcomes(url, capture_id) for capture_id in ids[1:]] == [["delivered"]] * 2
    assert "503" in listener.out and "try 2 of 5 in 1 s" in listener.out


def test_a_target_that_stays_down_holds_up_neither_another_nor_its_own_next(shared_server,
                                                                           tmp_path):
    url = shared_server.url
    endpoint = _endpoint(url)
    down = unused_port_url()
    with Receiver() as up, listening(
            url, endpoint["token"], "--forward-to", down, "--forward-to", up.url,
            "--max-tries", "2", "--from", "first", "--state", str(tmp_path)) as listener:
        ids = [_send(endpoint, body=str(n).encode()) for n in (1, 2)]
        _until(lambda: up.bodies() == [b"1", b"2"], "the target that is up")
        _until(lambda: _outcomes(url, ids[1], down) == ["retrying", "failed"],
               "the second capture given up on")
        _stopped_cleanly(listener, signal.SIGTERM)
    assert _outcomes(url, ids[0], down) == ["retrying", "failed"]
    failed = _deliveries(url, ids[0])[-1]
    assert failed["error"].endswith("connection refused") and failed["status"] is None
    delivered_second = next(d for d in _deliveries(url, ids[1]) if d["target"].startswith(up.url))
    assert delivered_second["at"] < failed["at"]  # the target that is up did not wait
    assert "failed after 2 tries" in listener.out
    assert sorted(json.loads(p.read_text())["seq"] for p in tmp_path.glob("*.json")) == [2, 2]


# -- nothing lost, nothing twice -------------------------------------------------------------------


def test_a_killed_listener_and_a_restarted_server_deliver_each_capture_once_in_order(tmp_path):
    server = ServerProcess(tmp_path / "hooks.db", tmp_path / "server.log")
    url = server.start()
    state = str(tmp_path / "state")
    target = unused_port_url()
    args = ("--forward-to", target, "--max-tries", "10", "--name", NAME, "--state", state)
    try:
        endpoint = _endpoint(url, alias="killed-listener")
        ids = [_send(endpoint, body=str(n).encode()) for n in (1, 2, 3)]
        # The target is down: the first capture is being retried when the listener is killed.
        with listening(url, "killed-listener", *args, "--from", "first") as first:
            _until(lambda: _outcomes(url, ids[0]) == ["retrying"], "a refused first try")
            assert first.stop(signal.SIGKILL) == -signal.SIGKILL
        ids.append(_send(endpoint, body=b"4"))
        with Receiver(port=int(target.rsplit(":", 1)[1]), delay=0.1) as receiver, listening(
                url, "killed-listener", *args) as second:
            _until(lambda: len(receiver.requests) == 4, "the captures sent before, and while "
                   "no listener ran")
            ids += [_send(endpoint, body=str(n).encode()) for n in (5, 6, 7, 8)]
            # Stopped while the listener still has captures to forward (each takes 100 ms).
            assert len(receiver.requests) < 8
            server.stop()
            server = ServerProcess(server.db, tmp_path / "restarted.log",
                                   args=("--port", url.rsplit(":", 1)[1]))
            server.start()
            _until(lambda: len(receiver.requests) == 8, "the rest, after the restart")
            _stopped_cleanly(second)
        assert receiver.bodies() == [str(n).encode() for n in range(1, 9)]
        for capture_id in ids:
            delivered = [d for d in _deliveries(url, capture_id) if d["outcome"] == "delivered"]
            assert [(d["by"], d["status"]) for d in delivered] == [(NAME, 201)]
        first_tries = _deliveries(url, ids[0])
        assert [(d["attempt"], d["outcome"]) for d in first_tries] == [
            (1, "retrying"), (2, "delivered")]  # the killed listener's try counted
        assert "where it stopped" in second.err
        assert f"cannot reach {url}" in second.err  # it noticed the restart, and said so
    finally:
        server.stop()


def test_a_capture_recorded_before_the_cursor_moved_is_not_sent_again(shared_server, tmp_path):
    """A listener killed after recording a delivery and before saving its cursor: the record
    on the server keeps the restarted one from sending that capture twice. --from overrides
    both the cursor and the records."""
    url = shared_server.url
    endpoint = _endpoint(url)
    ids = [_send(endpoint, "/a?x=1", b"1"), _send(endpoint, "/b", b"2")]
    with Receiver() as receiver:
        Cursor(tmp_path, url, endpoint["token"], receiver.url).save(0)
        httpx.post(f"{url}/api/captures/{ids[0]}/deliveries", verify=local_tls(), json={
            "target": forward_url(receiver.url, "/h/x/a", "x=1"), "by": NAME, "status": 200,
            "outcome": "delivered"}).raise_for_status()
        args = ("--forward-to", receiver.url, "--name", NAME, "--state", str(tmp_path))
        with listening(url, endpoint["token"], *args) as listener:
            _until(lambda: receiver.bodies() == [b"2"], "the capture after the delivered one")
            second = hookscope_process("listen", endpoint["token"], *args, server_url=url)
            assert second.returncode == 2
            assert f"another listener (process {listener.proc.pid})" in second.stderr
            _stopped_cleanly(listener)
        assert f"#1 was delivered to {receiver.url[7:]}/ before (by {NAME})" in listener.err
        with listening(url, endpoint["token"], *args, "--from", "first") as again:
            _until(lambda: receiver.bodies() == [b"2", b"1", b"2"], "both, sent again")
            _stopped_cleanly(again)


# -- usage -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "message"), [
    (["--forward-to", "ftp://127.0.0.1/x"], "--forward-to 'ftp://127.0.0.1/x': must start "
                                             "with http:// or https://, not ftp://"),
    (["--forward-to", "http://127.0.0.1:99999/"], "port must be from 1 to 65535"),
    (["--forward-to", "http://127.0.0.1:1/", "--from", "soon"], "now, first or a sequence"),
    (["--forward-to", "http://127.0.0.1:1/", "--max-tries", "0"], "from 1 to 100"),
    (["--forward-to", "http://127.0.0.1:1/", "--timeout", "61"], "at most 60"),
    ([], "--forward-to"),
])
def test_bad_usage_exits_2_naming_it(args, message):
    result = hookscope("listen", "k", *args)
    assert result.code == 2
    assert message in result.err


def test_an_unknown_endpoint_exits_2_and_an_unreachable_server_4(shared_server, tmp_path):
    args = ("--forward-to", "http://127.0.0.1:1/", "--state", str(tmp_path))
    unknown = hookscope("--server", shared_server.url, "listen", "no-such-endpoint", *args)
    assert unknown.code == 2
    assert "no endpoint with token or alias 'no-such-endpoint'" in unknown.err
    server = unused_port_url()
    unreachable = hookscope("--server", server, "listen", "k", *args)
    assert unreachable.code == 4
    assert unreachable.err.startswith(f"hookscope: cannot reach {server}: ")


def test_the_cursor_names_what_it_is_for_and_is_replaced_whole(tmp_path):
    cursor = Cursor(tmp_path, "http://127.0.0.1:8000", "tok", "http://localhost:3000/")
    assert cursor.load() is None
    cursor.save(41)
    cursor.save(42)
    assert json.loads(cursor.path.read_text()) == {
        "server": "http://127.0.0.1:8000", "endpoint": "tok", "target": "http://localhost:3000/",
        "seq": 42}
    assert [p.name for p in tmp_path.iterdir()] == [cursor.path.name]
    assert Cursor(tmp_path, "http://127.0.0.1:8000", "tok", "http://localhost:4000/").load() is None
    cursor.path.write_text("{")
    with pytest.raises(Exception, match="is not a listener's cursor"):
        cursor.load()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_status_line_makes_way_for_each_delivery(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    terminal, out = _Terminal(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", terminal)
    console = Console(Printer(stream=out))
    console.status("localhost:3000/", "waiting for captures after #3")
    console.delivery("#4 delivered", {})
    console.close()
    waiting = "\r\x1b[K\x1b[2mwaiting for captures after #3\x1b[0m"
    assert terminal.getvalue() == waiting + "\r\x1b[K" + waiting + "\r\x1b[K"
    assert out.getvalue() == "#4 delivered\n"
