"""The rooms of app/ and who may import whom (docs/architecture.md draws the same map).

Read from the source with ast, so a new module is held to the rules without being listed here.
An import inside a function counts as much as one at the top, except where a rule says so.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parent.parent / "app"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(APP).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["hookscope", *parts])


def _imports() -> dict[str, list[tuple[str, bool]]]:
    """Each module's imports: (imported module, whether the import is at module level)."""
    found: dict[str, list[tuple[str, bool]]] = {}
    for path in sorted(APP.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        top = {id(node) for node in tree.body}
        top |= {id(child) for node in tree.body if isinstance(node, ast.If)  # TYPE_CHECKING
                for child in node.body}
        names: list[tuple[str, bool]] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.extend((alias.name, id(node) in top) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.append((node.module, id(node) in top))
                names.extend((f"{node.module}.{alias.name}", id(node) in top)
                             for alias in node.names)
        found[_module_name(path)] = names
    return found


IMPORTS = _imports()


def _within(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def _offenders(importers: tuple[str, ...], forbidden: tuple[str, ...], *,
               except_in: tuple[str, ...] = (), top_level_only: bool = False) -> list[str]:
    return sorted(f"{module} imports {name}"
                  for module, names in IMPORTS.items()
                  if _within(module, *importers) and not _within(module, *except_in)
                  for name, at_top in names
                  if _within(name, *forbidden) and (at_top or not top_level_only))


def test_the_map_finds_every_room():
    rooms = {".".join(m.split(".")[:2]) for m in IMPORTS}
    assert {"hookscope.storage", "hookscope.live", "hookscope.ingest", "hookscope.routes",
            "hookscope.ops", "hookscope.cli", "hookscope.verify",
            "hookscope.formats"} <= rooms


def test_only_the_sqlite_store_imports_sqlite():
    everything = tuple(IMPORTS)
    assert _offenders(everything, ("sqlite3", "aiosqlite", "fcntl"),
                      except_in=("hookscope.storage.sqlite",)) == []


def test_only_the_postgresql_store_imports_its_driver():
    assert _offenders(tuple(IMPORTS), ("asyncpg",),
                      except_in=("hookscope.storage.postgres",)) == []


def test_nothing_outside_storage_reaches_into_a_backend():
    """Callers see the Store protocol (hookscope.storage), never a backend."""
    assert _offenders(tuple(IMPORTS), ("hookscope.storage.sqlite", "hookscope.storage.postgres"),
                      except_in=("hookscope.storage",)) == []


def test_routes_use_the_hub_protocol_not_a_hub():
    assert _offenders(("hookscope.routes",), ("hookscope.live.local",)) == []


def test_the_cli_never_loads_the_server_at_import():
    """`hookscope serve` loads the server when it runs (its function imports it); every other
    command is a client of the API and must not pay for, or depend on, the server's code."""
    server_side = ("hookscope.routes", "hookscope.main", "hookscope.server",
                   "hookscope.storage", "hookscope.live", "hookscope.cluster",
                   "starlette", "uvicorn", "aiosqlite")
    assert _offenders(("hookscope.cli",), server_side, top_level_only=True) == []
    # Below the top level, only serve may: the commands that check input offline use the
    # server's own checks from ops/, formats/ and ingest/, never its routes.
    assert _offenders(("hookscope.cli",), ("hookscope.routes",)) == []


def test_the_cli_and_its_reference_load_no_server_module():
    """Importing the CLI, building its parser and rendering docs/cli.md's reference."""
    code = ("import sys, hookscope.cli.reference as r; from hookscope.cli import build_parser; "
            "r.render(build_parser()); "
            "print(' '.join(m for m in sys.modules if m.split('.')[0] in "
            "('starlette', 'uvicorn', 'aiosqlite', 'sqlite3', 'asyncpg') "
            "or m.startswith(('hookscope.routes', 'hookscope.storage', 'hookscope.live'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.split()
    assert loaded == []


@pytest.mark.parametrize("lower", ["hookscope.ingest", "hookscope.verify", "hookscope.formats",
                                   "hookscope.ops", "hookscope.models", "hookscope.settings",
                                   "hookscope.errors", "hookscope.live"])
def test_lower_rooms_never_import_the_ones_above(lower):
    """Request handling, checks and tools are usable on their own (the CLI uses them offline);
    only the routes, main and the server put them together with storage."""
    above = ("hookscope.routes", "hookscope.main", "hookscope.server", "hookscope.storage",
             "hookscope.cluster", "hookscope.cli")
    assert _offenders((lower,), above) == []
