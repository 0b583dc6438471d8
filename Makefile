# `make run` and `make test` are all a fresh machine with python3 needs. Both install the locked
# versions in requirements/ (every package pinned by version and hash); `make lock` refreshes them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install -q --disable-pip-version-check
# The lock is resolved by uv, for every platform and Python 3.11+ at once; installing needs pip only.
UV := uv==0.13.10
LOCK := $(BIN)/uv pip compile pyproject.toml --quiet --universal --generate-hashes \
	--group build --custom-compile-command "make lock"

.PHONY: run test lint docs screenshots lock lock-upgrade bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamp files: reinstall only when the lock or pyproject.toml changes. Hookscope itself goes in
# editable, without build isolation, on the locked setuptools.
$(VENV)/.run-deps: requirements/run.txt pyproject.toml | $(BIN)/python
	$(PIP) --require-hashes -r requirements/run.txt
	$(PIP) --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.test-deps: requirements/test.txt pyproject.toml | $(BIN)/python
	$(PIP) --require-hashes -r requirements/test.txt
	$(PIP) --no-deps --no-build-isolation -e .
	touch $@ $(VENV)/.run-deps

# `make run PORT=8001` when 8000 is taken.
PORT ?= 8000

run: $(VENV)/.run-deps
	mkdir -p data
	$(BIN)/hookscope serve --host 127.0.0.1 --port $(PORT) --db data/hookscope.db

# Three workers, each taking whole test files (their module servers and browsers stay theirs):
# most tests wait on real servers, browsers and databases rather than on the CPU.
TEST_WORKERS ?= 3

test: $(VENV)/.test-deps
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

# mypy checks the package by its import name: app/ is linked as hookscope/ for it (an editable
# install maps the name with an import hook, which mypy does not follow).
lint: $(VENV)/.test-deps
	$(BIN)/ruff check .
	mkdir -p $(VENV)/typecheck && ln -sfn "$(CURDIR)/app" $(VENV)/typecheck/hookscope
	MYPYPATH=$(VENV)/typecheck $(BIN)/mypy -p hookscope

# docs/cli.md's command reference is written from the argument parser (hookscope.cli.reference);
# tests/test_docs_cli.py fails while it is stale.
docs: $(VENV)/.run-deps
	$(BIN)/python -m hookscope.cli.reference docs/cli.md

# `make lock` follows a change to pyproject.toml and keeps every other pin; `make lock-upgrade`
# takes the newest releases pyproject.toml allows. run.txt takes test.txt's versions, so `make run`
# and `make test` install the same ones.
lock: | $(BIN)/python
	$(PIP) $(UV)
	$(LOCK) $(UPGRADE) --extra test -o requirements/test.txt
	$(LOCK) --constraint requirements/test.txt -o requirements/run.txt

lock-upgrade: UPGRADE := --upgrade
lock-upgrade: lock

bench: $(VENV)/.run-deps
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/instructions.py
	$(BIN)/python bench/validate.py
	$(BIN)/python bench/stream.py
	$(BIN)/python bench/steady.py
	$(BIN)/python bench/large.py

# The browser tests' screenshots of every state of the pages, into docs/screenshots/ (committed, so
# a reviewer sees the pages without running anything) rather than tests/artifacts/.
screenshots: $(VENV)/.test-deps
	HOOKSCOPE_SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest -q tests/test_inspector.py tests/test_browser.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
