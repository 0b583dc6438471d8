"""The pytest plugin, used the way a user would: test files in a fresh directory, run by pytest
in a subprocess, with the fixture coming from the installed entry point (no conftest)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import httpx
import pytest

from tests.clirun import run_pytest
from tests.serverproc import ServerProcess

TESTING_DOC = Path(__file__).resolve().parent.parent / "docs" / "testing.md"


def _docs_example() -> dict[str, str]:
    """docs/testing.md's worked example: the python blocks of its pytest section, by the file
    name in their first line."""
    section = TESTING_DOC.read_text().split("## With pytest", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    files = {}
    for block in blocks:
        name = re.match(r"# (\S+\.py):", block)
        assert name, f"a docs/testing.md example block without its file name: {block[:60]!r}"
        files[name.group(1)] = block
    return files


def test_the_docs_example_passes_as_written(tmp_path):
    files = _docs_example()
    assert set(files) == {"sender.py", "test_sender.py"}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    result = run_pytest(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_wait_filters_order_and_timeout_message(tmp_path):
    (tmp_path / "test_waits.py").write_text(textwrap.dedent('''
        import time

        import httpx
        import pytest

        from hookscope.pytest_plugin import WaitTimeout


        def test_waits_continue_after_the_previous_capture(hookscope):
            endpoint = hookscope.endpoint(name="orders")
            for i in range(3):
                httpx.post(endpoint.url + f"/n/{i}", content=f"body {i}")
            assert [endpoint.wait(timeout=5)["path"].rsplit("/", 1)[1] for _ in range(3)] == [
                "0", "1", "2"]
            assert [c["seq"] for c in endpoint.captures()] == [1, 2, 3]
            assert endpoint.captures(method="PUT") == []


        def test_wait_with_a_filter_skips_what_does_not_match(hookscope):
            endpoint = hookscope.endpoint()
            httpx.post(endpoint.url, content=b"a post")
            httpx.put(endpoint.url, content=b"\\x00\\xffbinary")
            capture = endpoint.wait(timeout=5, method="PUT")
            assert capture["method"] == "PUT"
            assert capture["body_base64"] is not None
            assert endpoint.body(capture) == b"\\x00\\xffbinary"


        def test_a_capture_that_never_comes_times_out_clearly(hookscope):
            endpoint = hookscope.endpoint()
            httpx.post(endpoint.url + "/wrong", content=b"{}")
            started = time.monotonic()
            with pytest.raises(WaitTimeout) as info:
                endpoint.wait(timeout=0.5, method="PUT")
            assert 0.5 <= time.monotonic() - started < 5
            message = str(info.value)
            expected = f"no capture matching method=PUT arrived at {endpoint.url} within 0.5 s"
            assert expected in message
            assert "(1 other did: #1 POST" in message and "/wrong" in message
            assert endpoint.inspect_url in message


        def test_bad_endpoint_fields_are_reported(hookscope):
            with pytest.raises(RuntimeError, match="422"):
                hookscope.endpoint(format="no.such-format")


        def test_an_unmet_wait_fails_the_test(hookscope):
            hookscope.endpoint().wait(timeout=0.2)
    '''))
    result = run_pytest(tmp_path, "-rf")
    assert "1 failed, 4 passed" in result.stdout, result.stdout + result.stderr
    assert "FAILED test_waits.py::test_an_unmet_wait_fails_the_test" in result.stdout
    assert "WaitTimeout: no capture arrived at http://127.0.0.1:" in result.stdout
    assert "def wait(" not in result.stdout  # the plugin's own frames are hidden


def test_hookscope_url_and_token_use_that_server_instead(tmp_path):
    (tmp_path / "test_remote.py").write_text(textwrap.dedent('''
        import httpx

        def test_capture_lands_on_the_given_server(hookscope):
            endpoint = hookscope.endpoint(alias="from-the-plugin")
            httpx.post(endpoint.url, content=b"hello")
            assert endpoint.wait(timeout=5)["body_text"] == "hello"
    '''))
    server = ServerProcess(tmp_path / "remote.db", tmp_path / "remote.log",
                           env={"HOOKSCOPE_TOKEN": "plugin-token"})
    server.start()
    try:
        result = run_pytest(tmp_path, env={"HOOKSCOPE_URL": server.url,
                                            "HOOKSCOPE_TOKEN": "plugin-token"})
        assert result.returncode == 0, result.stdout + result.stderr
        listing = httpx.get(server.url + "/api/endpoints/from-the-plugin/captures",
                            headers={"Authorization": "Bearer plugin-token"}).json()
        assert [c["body_size"] for c in listing["captures"]] == [5]
    finally:
        server.stop()


def test_the_in_process_server_removes_its_database_only_once_it_has_stopped(monkeypatch):
    import threading
    import time

    from hookscope import pytest_plugin

    server = pytest_plugin._InProcessServer()
    server.start()
    database = Path(server._tmp)
    assert (database / "hs.db").exists()
    real_thread = server.thread
    server.thread = threading.Thread(target=time.sleep, args=(0.5,))  # one that will not stop
    server.thread.start()
    monkeypatch.setattr(pytest_plugin, "STOP_TIMEOUT_S", 0.01)
    with pytest.warns(UserWarning, match="did not stop within 0.01 s; its database is left"):
        server.stop()
    assert (database / "hs.db").exists()  # still open in a running server: left alone
    server.thread = real_thread
    monkeypatch.setattr(pytest_plugin, "STOP_TIMEOUT_S", 30)
    server.stop()
    assert not real_thread.is_alive()
    assert not database.exists()
