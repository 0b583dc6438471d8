"""The README's command-line section: every command and option documented, and the CI shell
step run as written."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hookscope.cli import build_parser
from tests.clirun import unused_port_url

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
SECTION = README[README.index("## Command line"):README.index("## Contract tests in CI")]


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: sub for name, sub in action.choices.items() if name != "serve"}


@pytest.mark.parametrize("name", sorted(_subcommands()))
def test_every_command_and_option_is_in_the_readme(name):
    assert re.search(rf"^\| `{name}[ `]", SECTION, re.M), f"{name} is not in the command table"
    for action in _subcommands()[name]._actions:
        for flag in action.option_strings:
            if flag.startswith("--") and flag != "--help":
                assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", SECTION), (
                    f"{name} {flag} is not in the README")


def _shell_step() -> str:
    block = README[README.index("### In a shell step"):]
    return block[block.index("```sh\n") + 6:block.index("```\n", block.index("```sh"))]


SENDER = """#!{python}
# Posts a WebEngage event, signed the way GitHub signs webhooks, with the secret given.
import hashlib, hmac, json, sys
import httpx
body = json.dumps({event}).encode()
digest = hmac.new({secret!r}.encode(), body, hashlib.sha256).hexdigest()
httpx.post(sys.argv[1], content=body, headers={{
    "content-type": "application/json", "x-hub-signature-256": "sha256=" + digest,
}}).raise_for_status()
"""


def _run_shell_step(tmp_path: Path, secret: str) -> subprocess.CompletedProcess[str]:
    fixture = Path(__file__).parent / "fixtures/formats/webengage.event/system-email-open.json"
    event = json.loads(fixture.read_text())["body"]
    sender = tmp_path / "send-test-webhook"
    sender.write_text(SENDER.format(python=sys.executable, event=event, secret=secret))
    sender.chmod(0o755)
    port = unused_port_url().rsplit(":", 1)[1]
    script = tmp_path / "ci-webhook-check.sh"
    script.write_text(_shell_step().replace("8000", port))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKSCOPE_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["RUNNER_TEMP"] = str(tmp_path)
    return subprocess.run(["sh", str(script)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=90)


def test_the_readme_shell_step_passes_for_a_correct_sender(tmp_path):
    result = _run_shell_step(tmp_path, "whsec-test")
    assert result.returncode == 0, result.stderr
    assert re.search(r"#1\s+POST\s+/\s+.*verified\s+valid webengage\.event", result.stdout)


def test_the_readme_shell_step_fails_for_a_wrong_signature_naming_it(tmp_path):
    result = _run_shell_step(tmp_path, "not-the-secret")
    assert result.returncode == 1, result.stderr
    assert "expectation failed: signature.status is 'failed', expected 'verified'" in (
        result.stderr)
