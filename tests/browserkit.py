"""A pytest plugin (tests/conftest.py loads it) of what the browser tests share: a real server,
Debian's Chromium driven by Playwright (no browser is ever downloaded), pages at a desktop or
phone size in either theme that collect console errors, screenshots, and an accessibility check
with axe-core (tests/vendor/).

Screenshots go to tests/artifacts/ (not committed); `make screenshots` writes them to
docs/screenshots/ instead (HOOKSCOPE_SCREENSHOTS), where the README points reviewers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright import sync_api

from tests.serverproc import ServerProcess

CHROMIUM = os.environ.get("HOOKSCOPE_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(os.environ.get("HOOKSCOPE_SCREENSHOTS") or Path(__file__).parent / "artifacts")
AXE = Path(__file__).parent / "vendor" / "axe-core-4.14.1" / "axe.min.js"
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}





@pytest.fixture(scope="module")
def web_server(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[ServerProcess]:
    """A server of the browser tests' module (asking for the browser first, so a machine without
    Chromium skips rather than starts a server for nothing)."""
    folder = tmp_path_factory.mktemp("browser")
    proc = ServerProcess(folder / "browser.db", folder / "browser.log")
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: .ci/run installs Debian's chromium")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"])
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser: Any) -> Iterator[Callable[..., Any]]:
    """A new page at `viewport` in `scheme` (light or dark). `page.problems` collects console
    errors and uncaught exceptions; a test asserts it is empty."""
    contexts: list[Any] = []

    def open_(viewport: dict[str, int] = DESKTOP, scheme: str = "light",
              **options: Any) -> Any:
        context = browser.new_context(viewport=viewport, color_scheme=scheme, **options)
        contexts.append(context)
        page = context.new_page()
        page.problems = []
        page.on("console", lambda m: page.problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: page.problems.append(str(e)))
        return page

    yield open_
    for context in contexts:
        context.close()


@pytest.fixture
def page(open_page: Callable[..., Any]) -> Any:
    return open_page()


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def accessibility_problems(page: Any) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now (WCAG 2 A and AA,
    colour contrast included). Evaluated through the debugger, which the page's CSP does not
    govern, so the page itself keeps its policy."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text() + "\n;0")
    result = page.evaluate("""async () => {
        const r = await axe.run(document, {runOnly: {type: "tag",
            values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}});
        return r.violations.filter((v) => v.impact === "serious" || v.impact === "critical")
            .map((v) => `${v.id}: ${v.help} (${v.nodes.length}): ` +
                 v.nodes.slice(0, 3).map((n) => n.target.join(" ") + " " + (n.failureSummary || ""))
                   .join(" | "));
    }""")
    return list(result)
