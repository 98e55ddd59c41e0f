# Two commands for a newcomer: `make demo` and `make test`. Both set everything up first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned and installed on its own first: the CPU wheel is on this machine's disk, and an
# unpinned torch pulled in by another package would download a multi-GB CUDA build.
TORCH := torch==2.13.0
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: demo serve test test-fast lint typecheck bench bench-deps postgres browser clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e .
	touch $@

$(DEV_STAMP): pyproject.toml $(STAMP)
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(BIN)/pip install --quiet -e ".[dev]"
	touch $@

# PostgreSQL server binaries for the test suite (Debian's package); the tests start their own server.
postgres:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then :; \
	else echo "installing PostgreSQL (Debian package) for the tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; fi

# Debian's Chromium for the browser tests, driven by the playwright package (whose own browser
# download is never used: the tests launch /usr/bin/chromium).
browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	else echo "installing Chromium (Debian package) for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; fi

demo: $(STAMP)
	$(BIN)/labella demo

serve: $(STAMP)
	$(BIN)/labella serve

test: $(DEV_STAMP) postgres browser lint typecheck
	LABELLA_REQUIRE_POSTGRES=1 LABELLA_REQUIRE_BROWSER=1 HF_HUB_OFFLINE=1 $(BIN)/pytest

test-fast: $(DEV_STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/pytest -x -q -m "not slow"

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

# The peers the benchmarks compare against. --no-deps: their declared dependencies would replace
# the pinned CPU torch; what they really import at benchmark time is listed here.
bench-deps: $(DEV_STAMP)
	$(BIN)/pip install --quiet --no-deps modAL-python==0.4.2.1 scikit-activeml==1.0.1 small-text==1.4.1 skorch==1.4.0
	$(BIN)/pip install --quiet pandas makefun dill tabulate python-dateutil tzdata

bench: bench-deps
	$(BIN)/python benchmarks/import_speed.py
	$(BIN)/python benchmarks/next_batch.py
	$(BIN)/python benchmarks/query_speed.py

clean:
	rm -rf $(VENV) labella-data .pytest_cache .mypy_cache .ruff_cache
