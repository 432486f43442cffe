# twitch-bi: `make demo` and `make test` work on a fresh machine (Python 3.11 and make).
.DEFAULT_GOAL := help
SHELL := /bin/sh

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
HASH := $(shell cat pyproject.toml requirements.lock requirements-dev.lock | cksum | cut -d' ' -f1)
RUNTIME := $(VENV)/.runtime-$(HASH)
DEV := $(VENV)/.dev-$(HASH)
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check
export RUNTIME__DLTHUB_TELEMETRY := false

.PHONY: help install install-dev demo test pytest lint format lock

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(RUNTIME): pyproject.toml requirements.lock requirements-dev.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "twitch-bi needs Python 3.11: make PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements.lock
	$(PIP) --no-deps -e .
	@rm -f $(VENV)/.runtime-* $(VENV)/.dev-*
	@touch $@

$(DEV): $(RUNTIME)
	$(PIP) -r requirements-dev.lock
	@touch $@

install: $(RUNTIME) ## create .venv with the pinned dependencies and twitch-bi

install-dev: $(DEV) ## install, plus the test and lint tools

demo: install ## run the whole pipeline on the built-in Twitch emulator
	$(BIN)/twitch-bi demo

test: install-dev lint pytest ## install, lint, and run the whole test suite

pytest: install-dev ## run the test suite only
	$(BIN)/pytest

lint: install-dev ## ruff, mypy, sqlfluff (dbt SQL) and hadolint (Dockerfile)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/sqlfluff lint dbt
	$(BIN)/hadolint Dockerfile

format: install-dev ## rewrite Python and SQL in the project's style
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
	$(BIN)/sqlfluff fix dbt

lock: install-dev ## re-pin dependencies after changing pyproject.toml (needs the package index)
	$(BIN)/uv pip compile pyproject.toml --python-version 3.11 -q -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 -q \
		-c requirements.lock -o requirements-dev.lock
