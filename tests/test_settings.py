"""Settings: one table, documented in full, with env vars and flags layered over defaults."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hookscope.settings import SETTINGS, Settings, SettingsError

RUNNING = (Path(__file__).resolve().parent.parent / "docs" / "running.md").read_text()


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda f: f.name)
def test_every_setting_is_documented_in_docs_running(setting):
    row = next((line for line in RUNNING.splitlines()
                if f"`{setting.metadata['env']}`" in line and line.startswith("|")), None)
    assert row is not None, f"{setting.metadata['env']} is missing from the docs/running.md table"
    if setting.metadata["cli"]:
        assert f"`{setting.metadata['cli']}`" in row
    default = setting.default
    shown = str(default).lower() if isinstance(default, bool) else str(default)
    assert (f"`{shown}`" in row) or (shown == "" and "empty" in row)


def test_environment_overrides_defaults_and_flags_override_environment():
    env = {"HOOKSCOPE_PORT": "9001", "HOOKSCOPE_MAX_BODY_BYTES": "2_048",
           "HOOKSCOPE_ACCESS_LOG": "yes", "HOOKSCOPE_DB": "elsewhere/x.db"}
    settings = Settings.from_env(env, port=9002)
    assert settings.port == 9002
    assert settings.max_body_bytes == 2048
    assert settings.access_log is True
    assert settings.db == "elsewhere/x.db"
    assert Settings.from_env({}).port == 8000


@pytest.mark.parametrize(("env", "message"), [
    ({"HOOKSCOPE_PORT": "eighty"}, "HOOKSCOPE_PORT must be a whole number"),
    ({"HOOKSCOPE_PORT": "70000"}, "port must be 0..65535"),
    ({"HOOKSCOPE_ACCESS_LOG": "maybe"}, "HOOKSCOPE_ACCESS_LOG must be true or false"),
    ({"HOOKSCOPE_MAX_BODY_BYTES": "0"}, "HOOKSCOPE_MAX_BODY_BYTES must be at least 1"),
    ({"HOOKSCOPE_HTTP": "h2"}, "HOOKSCOPE_HTTP must be httptools or h11"),
    ({"HOOKSCOPE_SYNCHRONOUS": "FULL"}, "HOOKSCOPE_SYNCHRONOUS must be normal or full"),
    ({"HOOKSCOPE_PUBLIC_URL": "hooks.example.com"}, "must start with http"),
    ({"HOOKSCOPE_WORKERS": "2"}, "an SQLite file is served by one process; several processes "
                                 "need a PostgreSQL --db"),
    ({"HOOKSCOPE_WORKERS": "2", "HOOKSCOPE_DB": "postgresql://db.example/hooks"},
     "on PostgreSQL, start each process on its own: run `hookscope serve --reuse-port`"),
    ({"HOOKSCOPE_DB_POOL": "0"}, "HOOKSCOPE_DB_POOL must be 1..1000, got 0"),
])
def test_bad_settings_are_refused_with_the_variable_named(env, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hookscope", *args], capture_output=True,
                          text=True, timeout=60, env=env)


def test_cli_without_a_command_prints_help_and_exits_2():
    result = _cli()
    assert result.returncode == 2
    assert "serve" in result.stderr


def test_cli_version():
    result = _cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("hookscope 0.")


def test_serve_help_lists_every_flag_with_its_variable():
    result = _cli("serve", "--help")
    assert result.returncode == 0
    for setting in SETTINGS:
        if setting.metadata["cli"]:
            assert setting.metadata["cli"] in result.stdout
            assert setting.metadata["env"] in result.stdout


def test_serve_with_a_bad_setting_exits_1_with_a_message(tmp_path):
    result = _cli("serve", "--db", str(tmp_path / "x.db"),
                  env={"HOOKSCOPE_MAX_BODY_BYTES": "lots", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 1
    assert "HOOKSCOPE_MAX_BODY_BYTES must be a whole number" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_on_a_port_in_use_exits_1_naming_it(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = _cli("serve", "--port", str(port), "--db", str(tmp_path / "x.db"),
                      env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 1
    assert f"hookscope: cannot listen on 127.0.0.1:{port}: " in result.stderr
    assert "Address already in use" in result.stderr and "Traceback" not in result.stderr
