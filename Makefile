# `make run` and `make test` are all a fresh machine with python3 needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Stamp files: reinstall only when pyproject.toml changes.
$(VENV)/.run-deps: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.test-deps: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@ $(VENV)/.run-deps

run: $(VENV)/.run-deps
	mkdir -p data
	$(BIN)/hookscope serve --host 127.0.0.1 --port 8000 --db data/hookscope.db

test: $(VENV)/.test-deps
	$(BIN)/python -m pytest

lint: $(VENV)/.test-deps
	$(BIN)/ruff check .

bench: $(VENV)/.run-deps
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/instructions.py
	$(BIN)/python bench/validate.py
	$(BIN)/python bench/stream.py
	$(BIN)/python bench/steady.py
	$(BIN)/python bench/large.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
