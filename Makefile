# The two commands: `make run` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app app

.PHONY: run check test test-fast bench bench-big test-tools clean lock

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Every package at the version and hashes the lock files name (`make lock` writes them anew from
# pyproject.toml), then the app itself on top, without its dependencies.
PIP := $(BIN)/pip install --quiet --disable-pip-version-check

$(VENV)/.installed: requirements.lock pyproject.toml | $(BIN)/python
	$(PIP) --require-hashes -r requirements.lock
	$(PIP) --no-deps -e .
	touch $@

$(VENV)/.installed-test: requirements-test.lock pyproject.toml | $(BIN)/python
	$(PIP) --require-hashes -r requirements-test.lock
	$(PIP) --no-deps -e .
	touch $@ $(VENV)/.installed

lock: | $(BIN)/python
	$(PIP) pip-tools
	CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile --quiet --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links \
	  --output-file requirements.lock pyproject.toml
	CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile --quiet --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links \
	  --extra test --output-file requirements-test.lock pyproject.toml

run: $(VENV)/.installed
	$(FLASK) init-db
	$(FLASK) local-secret
	@echo "Serving on http://$${BIND:-127.0.0.1:5000} (Ctrl-C stops)"
	$(BIN)/python -m app.server

# Lint and formatting (ruff), types (mypy, configured in pyproject.toml) and the layering of app/
# (import-linter's contracts): `make test` runs these first, and fails on any finding.
check: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: check test-tools
	$(BIN)/python -m pytest -n auto $(PYTEST_ARGS)

# The quick loop while coding: SQLite only, without the browser and the real-server load and crash
# tests (the aim: under 3 minutes on 2 cores). `make test` before a commit runs everything.
test-fast: $(VENV)/.installed-test
	TEST_DATABASES=sqlite $(BIN)/python -m pytest -n auto -m "not slow and not browser" $(PYTEST_ARGS)

# Debian's Chromium for the browser tests (with an emoji font for their screenshots) and
# LibreOffice Calc (no GUI) for the spreadsheet tests, where we may install them (root with apt).
test-tools:
	@missing=; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	[ -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || missing="$$missing fonts-noto-color-emoji"; \
	command -v soffice >/dev/null 2>&1 || missing="$$missing libreoffice-calc-nogui"; \
	[ -z "$$missing" ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	  else echo "Not installed and cannot be installed here:$$missing; their tests will skip."; fi; }

bench: $(VENV)/.installed-test
	$(BIN)/python -m bench $(BENCH_ARGS)

# Not in CI: the inbox reads and exports at 10^7 messages from 500,000 senders (7.7 GB of disk,
# about 7.5 minutes on 2 cores); `make bench` measures 10^4 to 10^6.
bench-big: $(VENV)/.installed-test
	$(BIN)/python -m bench --only inbox --sizes 10000000 --senders-per-million 50000 $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis test-output
