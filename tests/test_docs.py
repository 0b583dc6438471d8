"""README.md and docs/ hold together: a short README that links every page, and no link, image or
heading anchor that leads nowhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 200

_FENCED = re.compile(r"^```.*?^```", re.M | re.S)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def _prose(text: str) -> str:
    """The text outside code: fenced blocks, indented blocks and inline code spans removed."""
    text = _FENCED.sub("", text)
    text = "\n".join(line for line in text.splitlines() if not line.startswith("    "))
    return _INLINE_CODE.sub("", text)


def _anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the page's headings."""
    seen: dict[str, int] = {}
    anchors = set()
    for heading in _HEADING.findall(_FENCED.sub("", page.read_text())):
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _relative_links(page: Path) -> list[str]:
    return [target for target in _LINK.findall(_prose(page.read_text()))
            if not re.match(r"[a-z][a-z0-9+.-]*:", target)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_points_at_a_file_and_heading_that_exist(page):
    broken = []
    for target in _relative_links(page):
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {resolved.name}")
    assert broken == []


def test_the_readme_is_short_and_links_every_docs_page():
    readme = ROOT / "README.md"
    lines = readme.read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail into docs/"
    linked = {(readme.parent / target.partition("#")[0]).resolve()
              for target in _relative_links(readme)}
    unlinked = [page.name for page in PAGES[1:] if page.resolve() not in linked]
    assert unlinked == []


def test_nothing_points_at_files_outside_the_repository():
    """The API contract, the formats' notes and the benchmarks live in docs/, not beside the
    repository."""
    absent = ("../shared", "API.md", "FORMATS.md", "BENCHMARKS.md")
    files = [*PAGES, ROOT / "Makefile", ROOT / "pyproject.toml",
             *(ROOT / "app").rglob("*.py"), *(ROOT / "bench").rglob("*.py")]
    found = [f"{path.relative_to(ROOT)}: {name}" for path in files
             for name in absent if name in path.read_text()]
    assert found == []
