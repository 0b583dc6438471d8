"""docs/cli.md against the argument parser: its reference block is what `make docs` writes from
the parser, and every command and option is documented. docs/testing.md's CI shell step, which
uses only the CLI, runs as written."""

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
from hookscope.cli.reference import BEGIN, END, current_block, main, render, subcommands
from tests.clirun import unused_port_url

ROOT = Path(__file__).resolve().parent.parent
CLI_DOC = (ROOT / "docs" / "cli.md").read_text()
TESTING_DOC = (ROOT / "docs" / "testing.md").read_text()


def test_the_reference_in_docs_cli_is_the_parsers_own():
    assert current_block(CLI_DOC) == render(build_parser()), (
        "docs/cli.md's command reference is stale: run `make docs`")


def test_make_docs_rewrites_only_the_reference(tmp_path):
    stale = CLI_DOC.replace(current_block(CLI_DOC), "| `old` | a command that went |\n")
    page = tmp_path / "cli.md"
    page.write_text(stale)
    assert main([str(page)]) == 0
    assert page.read_text() == CLI_DOC
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^docs:.*\n\t.*-m hookscope\.cli\.reference docs/cli\.md$", makefile, re.M)


def test_a_page_without_the_markers_is_refused(tmp_path):
    page = tmp_path / "cli.md"
    page.write_text("# Command line\n")
    assert main([str(page)]) == 1
    assert page.read_text() == "# Command line\n"
    assert BEGIN in CLI_DOC and END in CLI_DOC


def _commands() -> dict[str, argparse.ArgumentParser]:
    """Every command, and every command of a command (`schema infer`)."""
    found = {}
    for name, parser in subcommands(build_parser()).items():
        found[name] = parser
        found.update({f"{name} {inner}": sub for inner, sub in subcommands(parser).items()})
    return found


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_command_and_option_is_in_docs_cli(name):
    assert re.search(rf"^\| `{name}[ `]", CLI_DOC, re.M), f"{name} is not in a command table"
    assert f"### `hookscope {name}`" in CLI_DOC
    for action in _commands()[name]._actions:
        for flag in action.option_strings:
            if flag.startswith("--") and flag != "--help":
                assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", CLI_DOC), (
                    f"{name} {flag} is not in docs/cli.md")


def _shell_step() -> str:
    block = TESTING_DOC[TESTING_DOC.index("## In a shell step"):]
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


def test_the_docs_shell_step_passes_for_a_correct_sender(tmp_path):
    result = _run_shell_step(tmp_path, "whsec-test")
    assert result.returncode == 0, result.stderr
    assert re.search(r"#1\s+POST\s+/\s+.*verified\s+valid webengage\.event", result.stdout)


def test_the_docs_shell_step_fails_for_a_wrong_signature_naming_it(tmp_path):
    result = _run_shell_step(tmp_path, "not-the-secret")
    assert result.returncode == 1, result.stderr
    assert "expectation failed: signature.status is 'failed', expected 'verified'" in (
        result.stderr)
