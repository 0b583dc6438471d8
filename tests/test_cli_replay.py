"""`hookscope replay` and `hookscope export` against a real server and a local receiver."""

from __future__ import annotations

import json
import subprocess

import httpx

from tests.clirun import Receiver, hookscope, unused_port_url
from tests.serverproc import local_tls

BODY = b'{"event": "order.created", "id": 7}'


def _capture(server_url: str) -> tuple[dict, str]:
    with httpx.Client(verify=local_tls()) as client:
        endpoint = client.post(f"{server_url}/api/endpoints", json={}).json()
        response = client.post(endpoint["url"] + "/orders?x=1", content=BODY, headers=[
            ("content-type", "application/json"), ("x-dup", "1"), ("x-dup", "2"),
            ("user-agent", "sender/1.0")])
    assert response.status_code == 200
    return endpoint, response.headers["x-hookscope-capture"]


def _sent_headers(received) -> list[tuple[str, str]]:
    return [(k.lower(), v) for k, v in received.headers]


def test_replay_sends_the_capture_to_the_url_and_prints_the_answer(shared_server):
    _, capture_id = _capture(shared_server.url)
    with Receiver(status=201) as receiver:
        result = hookscope("--server", shared_server.url, "replay", capture_id,
                           "--to", receiver.url + "/hook?y=2")
    assert result.code == 0, result.err
    [received] = receiver.requests
    assert (received.method, received.path, received.body) == ("POST", "/hook?y=2", BODY)
    headers = _sent_headers(received)
    assert [v for k, v in headers if k == "x-dup"] == ["1", "2"]
    assert ("user-agent", "sender/1.0") in headers
    first = result.out.splitlines()[0]
    assert first.startswith(f"POST {receiver.url}/hook?y=2 -> 201 in ")
    assert first.endswith(" ms")
    assert '{"received": true}' in result.out


def test_replay_overrides_and_removes_headers_and_prints_json(shared_server):
    _, capture_id = _capture(shared_server.url)
    with Receiver() as receiver:
        result = hookscope("--server", shared_server.url, "replay", capture_id, "--to",
                           receiver.url, "--header", "X-Extra: yes", "--header",
                           "User-Agent: replayer", "--remove-header", "x-dup", "--json")
    assert result.code == 0, result.err
    headers = _sent_headers(receiver.requests[0])
    assert ("x-extra", "yes") in headers and ("user-agent", "replayer") in headers
    assert not [k for k, _ in headers if k == "x-dup"]
    reply = json.loads(result.out)
    assert reply["capture"] == capture_id
    assert reply["response"]["status"] == 201
    assert reply["response"]["body_text"] == '{"received": true}'


def test_replay_to_a_target_answering_500_exits_1_saying_so(shared_server):
    _, capture_id = _capture(shared_server.url)
    with Receiver(status=500, body=b"boom") as receiver:
        result = hookscope("--server", shared_server.url, "replay", capture_id,
                           "--to", receiver.url)
    assert result.code == 1
    assert "-> 500 in" in result.out and "boom" in result.out
    assert "the target answered 500, not 2xx" in result.err


def test_replay_to_an_unreachable_target_exits_1_with_the_servers_message(shared_server):
    _, capture_id = _capture(shared_server.url)
    target = unused_port_url()
    result = hookscope("--server", shared_server.url, "replay", capture_id, "--to", target)
    assert result.code == 1
    assert f"could not reach {target}" in result.err and "502" in result.err


def test_replay_of_an_unknown_capture_exits_2(shared_server):
    result = hookscope("--server", shared_server.url, "replay", "c_" + "0" * 32,
                       "--to", "http://127.0.0.1:9/")
    assert result.code == 2
    assert "no capture with id" in result.err


def test_replay_to_a_url_that_is_not_http_exits_2():
    result = hookscope("--server", unused_port_url(), "replay", "c_x", "--to",
                       "ftp://example.com/", "--timeout", "61")
    assert result.code == 2  # checked before anything is sent: no server needed to say so
    assert result.err == ("hookscope: url must start with http:// or https://, not ftp://; such "
                          "as http://127.0.0.1:9000/hook; timeout must be a number of seconds, "
                          "more than 0 and at most 60\n")


def _fixture(tmp_path, body: bytes = BODY) -> str:
    fixture = {"hookscope_fixture": 1, "id": "c_fixture", "method": "PUT", "path": "/h/k/x",
               "query": "", "headers": [["host", "old.example"], ["content-type",
                                                                  "application/json"],
                                        ["x-dup", "1"], ["x-dup", "2"],
                                        ["content-length", "999"], ["connection", "close"]],
               "content_type": "application/json", "body_size": len(body),
               "body_text": body.decode(), "body_base64": None}
    path = tmp_path / "c_fixture.json"
    path.write_text(json.dumps(fixture))
    return str(path)


def test_replay_of_an_exported_file_sends_it_from_the_cli_without_a_server(tmp_path):
    with Receiver(status=202) as receiver:
        result = hookscope("--server", unused_port_url(), "replay", _fixture(tmp_path),
                           "--to", receiver.url + "/in", "--header", "X-Extra: 1")
    assert result.code == 0, result.err
    [received] = receiver.requests
    assert (received.method, received.path, received.body) == ("PUT", "/in", BODY)
    headers = _sent_headers(received)
    host = receiver.url.removeprefix("http://")
    # Recorded headers in order, minus per-connection ones (Content-Length restated for the
    # body); the override last; nothing of httpx's own.
    assert headers == [("host", host), ("content-type", "application/json"), ("x-dup", "1"),
                       ("x-dup", "2"), ("content-length", str(len(BODY))), ("x-extra", "1")]
    assert result.out.startswith(f"PUT {receiver.url}/in -> 202 in ")


def test_replay_of_an_exported_file_to_nowhere_exits_1(tmp_path):
    target = unused_port_url()
    result = hookscope("replay", _fixture(tmp_path), "--to", target)
    assert result.code == 1
    assert f"could not reach {target}" in result.err


def test_replay_of_a_file_that_is_not_an_export_exits_2(tmp_path):
    path = tmp_path / "payload.json"
    path.write_text("{}")
    result = hookscope("replay", str(path), "--to", "http://127.0.0.1:9/")
    assert result.code == 2
    assert "is not a Hookscope export" in result.err


# -- export ----------------------------------------------------------------------------------------


def test_export_as_curl_prints_a_command_that_sends_the_capture_again(shared_server):
    endpoint, capture_id = _capture(shared_server.url)
    result = hookscope("--server", shared_server.url, "export", capture_id, "--as", "curl")
    assert result.code == 0, result.err
    command = result.out
    assert command.startswith("curl ")
    assert f"{endpoint['url']}/orders?x=1" in command
    rerun = subprocess.run(["sh", "-c", command], capture_output=True, timeout=30)
    assert rerun.returncode == 0, rerun.stderr
    listing = httpx.get(f"{shared_server.url}/api/endpoints/{endpoint['token']}/captures").json()
    again = httpx.get(f"{shared_server.url}/api/captures/{listing['captures'][0]['id']}").json()
    assert again["body_text"] == BODY.decode()
    assert [h for h in again["headers"] if h[0] == "x-dup"] == [["x-dup", "1"], ["x-dup", "2"]]


def test_export_as_har_prints_a_har_log(shared_server):
    _, capture_id = _capture(shared_server.url)
    result = hookscope("--server", shared_server.url, "export", capture_id, "--as", "har")
    assert result.code == 0, result.err
    har = json.loads(result.out)
    assert har["log"]["version"] == "1.2"
    [entry] = har["log"]["entries"]
    assert entry["request"]["method"] == "POST"
    assert entry["request"]["postData"]["text"] == BODY.decode()


def test_export_as_json_to_a_file_gives_a_fixture_validate_and_replay_accept(shared_server,
                                                                              tmp_path):
    _, capture_id = _capture(shared_server.url)
    target = tmp_path / "capture.json"
    result = hookscope("--server", shared_server.url, "export", capture_id, "--as", "json",
                       "-o", str(target))
    assert result.code == 0, result.err
    assert result.out == ""
    assert f"to {target}" in result.err
    fixture = json.loads(target.read_text())
    assert (fixture["hookscope_fixture"], fixture["id"]) == (1, capture_id)
    assert hookscope("validate", str(target)).code == 1  # a body no format recognises
    with Receiver() as receiver:
        replayed = hookscope("replay", str(target), "--to", receiver.url)
    assert replayed.code == 0, replayed.err
    assert receiver.requests[0].body == BODY


def test_export_of_an_unknown_capture_exits_2(shared_server):
    result = hookscope("--server", shared_server.url, "export", "c_" + "0" * 32, "--as", "json")
    assert result.code == 2
    assert "no capture with id" in result.err
