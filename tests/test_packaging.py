"""What `pip install hookscope` puts into an environment: the import package `hookscope` (from the
source folder app/), its templates, static files and format schemas, the `hookscope` command and
the pytest plugin, and no top-level `app` to collide with a user's own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.serverproc import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the sources (a build writes build/ and *.egg-info beside
    them), with the setuptools the lock installed."""
    source = tmp_path_factory.mktemp("source")
    for name in ("app", "templates", "static"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-c", "import sys; from setuptools import build_meta; "
                    "build_meta.build_wheel(sys.argv[1])", str(out)],
                   cwd=source, check=True, capture_output=True, timeout=120)
    (built,) = out.glob("hookscope-*.whl")
    return built


def test_the_wheel_holds_the_hookscope_package_and_nothing_else(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    tops = {name.split("/")[0] for name in names}
    assert tops == {"hookscope", f"{wheel.name.split('-py3')[0]}.dist-info"}
    modules = {f"hookscope/{path.relative_to(ROOT / 'app').as_posix()}"
               for path in (ROOT / "app").rglob("*.py")}
    assert modules <= names, f"missing from the wheel: {sorted(modules - names)}"
    for folder, pattern in (("templates", "*.html"), ("static", "**/*.*"),
                            ("app/formats/schemas", "*.json")):
        files = [path for path in (ROOT / folder).glob(pattern) if path.is_file()]
        assert files
        inside = folder.replace("app/", "")
        expected = {f"hookscope/{inside}/{path.relative_to(ROOT / folder).as_posix()}"
                    for path in files}
        assert expected <= names, f"{folder}: missing {sorted(expected - names)}"


def test_the_wheel_names_the_command_and_the_plugin_by_hookscope(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        (entry_points,) = [n for n in archive.namelist() if n.endswith("entry_points.txt")]
        text = archive.read(entry_points).decode()
    assert "hookscope = hookscope.cli:main" in text
    assert "hookscope = hookscope.pytest_plugin" in text
    assert "app." not in text


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new environment with the wheel installed by pip. Its dependencies come from this test
    environment's site-packages, added as a plain path (so the editable Hookscope there, a path
    hook its own .pth file installs, is not seen)."""
    env = tmp_path_factory.mktemp("env")
    venv.create(env, with_pip=False)
    python = env / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                              "['purelib'])"], capture_output=True, text=True, check=True
                             ).stdout.strip()
    Path(purelib, "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
                    "--no-deps", "--no-index", str(wheel)], check=True, capture_output=True,
                   timeout=120)
    return env


def _run(env: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run([str(env / "bin" / "python"), *args], capture_output=True, text=True,
                          cwd=cwd, env=clean, timeout=60)


def test_an_install_imports_hookscope_from_itself_and_has_no_app(installed: Path,
                                                                 tmp_path: Path):
    found = _run(installed, "-c", "import hookscope; print(hookscope.__file__)", cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    assert Path(found.stdout.strip()).is_relative_to(installed)
    assert not Path(found.stdout.strip()).is_relative_to(ROOT)
    missing = _run(installed, "-c", "import app", cwd=tmp_path)
    assert "No module named 'app'" in missing.stderr


@pytest.fixture(params=["hookscope", "python -m hookscope"])
def installed_server(request: pytest.FixtureRequest, installed: Path,
                     tmp_path: Path) -> Iterator[ServerProcess]:
    command = ((str(installed / "bin" / "hookscope"),) if request.param == "hookscope"
               else (str(installed / "bin" / "python"), "-m", "hookscope"))
    server = ServerProcess(tmp_path / "installed.db", tmp_path / "installed.log",
                           command=command, cwd=tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_an_installed_hookscope_serves_its_pages_and_captures(installed_server: ServerProcess):
    url = installed_server.url
    endpoint = httpx.post(url + "/api/endpoints", json={"alias": "from-the-wheel"}).json()
    assert httpx.post(endpoint["url"], content=b"hello").status_code == 200
    page = httpx.get(url + "/e/from-the-wheel")
    assert page.status_code == 200 and "/static/inspector/main.js" in page.text
    for name in ("main.js", "body.js", "detail.js", "list.js", "settings.js"):
        script = httpx.get(f"{url}/static/inspector/{name}")
        assert script.status_code == 200
        assert script.text == (ROOT / "static" / "inspector" / name).read_text()
    captures = httpx.get(url + "/api/endpoints/from-the-wheel/captures").json()["captures"]
    assert [c["body_size"] for c in captures] == [5]


USER_PROJECT = {
    "app/__init__.py": "GREETING = 'the user project'\n",
    "conftest.py": "import app\n\nassert app.GREETING == 'the user project'\n",
    "test_sender.py": """
import httpx

import app


def test_the_users_app_and_hookscope_side_by_side(hookscope):
    endpoint = hookscope.endpoint()
    httpx.post(endpoint.url, content=app.GREETING.encode())
    capture = endpoint.wait(timeout=10)
    assert endpoint.body(capture) == b'the user project'
""",
}


def test_the_plugin_works_in_a_project_with_its_own_app_package(tmp_path: Path):
    for name, text in USER_PROJECT.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    clean = {k: v for k, v in os.environ.items()
             if k not in ("PYTHONPATH", "HOOKSCOPE_URL", "HOOKSCOPE_TOKEN")}
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"],
                            cwd=tmp_path, env=clean, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
