# twitch-bi. `make demo` and `make test` need Python 3.11 and make; the deploy targets
# (up, down, logs, ps, status, reprocess, rebuild) need Docker Compose. `make help` lists all.
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

# Compose v2 (`docker compose`), else the older standalone `docker-compose`.
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
# The image's user owns ./data on the host (numeric ids, read the same way on Linux and macOS),
# so the files the services write there are yours, even when make runs under sudo.
HOST_UID ?= $(shell ls -nd data 2>/dev/null | awk '{print $$3}')
HOST_GID ?= $(shell ls -nd data 2>/dev/null | awk '{print $$4}')
# `make logs`: how many past lines to show first, and which service (both if empty).
TAIL ?= 50
SERVICE ?=
# One line per JSON log event: time, level, service, event, then key=value; other lines as is.
LOG_JQ := (try (fromjson | select(type == "object") | "\(.timestamp // "-") \(.level // "-" | ascii_upcase) \(.service // "-") \(.event // "-") \(del(.timestamp, .level, .service, .event) | to_entries | map("\(.key)=\(.value | if type == "string" then . else tojson end)") | join(" "))") catch null) // .

.PHONY: help install install-dev demo docs test pytest lint format lock \
	up down logs ps status reprocess rebuild serve-docs bench

help: ## list the targets
	@echo "usage: make TARGET [VARIABLE=value]"
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# --- on this machine: Python 3.11 and make --------------------------------------------

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

# The dbt docs site, for the data folder the services use (DATA_DIR).
DATA_DIR ?= data
DOCS_BUILD := $(DATA_DIR)/state/dbt/docs
DBT_DOCS = DATA_DIR=$(abspath $(DATA_DIR)) $(BIN)/dbt docs generate --static --quiet \
	--no-send-anonymous-usage-stats --project-dir dbt --profiles-dir dbt \
	--target-path $(abspath $(DOCS_BUILD)) --log-path $(abspath $(DOCS_BUILD))/logs

docs: install ## build the dbt docs as one static page in data/docs/ (DATA_DIR=...)
	@mkdir -p $(DOCS_BUILD) $(DATA_DIR)/docs
	@# Column types come from the warehouse when it exists and no transformer holds it.
	@if test -f $(DATA_DIR)/warehouse/twitch.duckdb && \
		$(DBT_DOCS) > $(DOCS_BUILD)/generate.log 2>&1; then :; else \
		echo "docs: warehouse missing or in use, building without column types"; \
		$(DBT_DOCS) --target docs; fi
	cp $(DOCS_BUILD)/static_index.html $(DATA_DIR)/docs/index.html
	@echo "docs: open $(DATA_DIR)/docs/index.html"

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

bench: install-dev ## benchmarks on 100,000-stream snapshots (~30 min); writes bench/RESULTS.md
	RUNTIME__DLTHUB_TELEMETRY=false $(BIN)/python -m bench.run

# --- deployed: Docker Compose, from this folder -----------------------------------------

.env:
	@echo "no .env here yet: cp .env.example .env, then fill in TWITCH_CLIENT_ID and TWITCH_CLIENT_SECRET" >&2
	@exit 1

data:
	mkdir -p data

up: .env data ## build the image and start both services in the background (again after git pull)
	HOST_UID=$(HOST_UID) HOST_GID=$(HOST_GID) $(COMPOSE) up --detach --build
	@$(COMPOSE) ps

down: ## stop and remove both containers (data/ stays as it is)
	$(COMPOSE) down

logs: ## follow both services' logs, one line per event (SERVICE=extractor, TAIL=200)
	@if command -v jq >/dev/null 2>&1; then \
		$(COMPOSE) logs --follow --no-color --no-log-prefix --tail=$(TAIL) $(SERVICE) \
			| jq --unbuffered --raw-input --raw-output '$(LOG_JQ)'; \
	else \
		echo "(install jq for one readable line per event)" >&2; \
		$(COMPOSE) logs --follow --no-color --tail=$(TAIL) $(SERVICE); \
	fi

ps: ## both containers, their state and health
	$(COMPOSE) ps

status: ## processed, pending and quarantined files, lag, last error (JSON=1 for JSON)
	$(COMPOSE) exec -T transformer twitch-bi status $(if $(JSON),--json)

reprocess: ## queue landed files again: FILE=streams_....parquet (several: FILE="a b") or SINCE=YYYY-MM-DD
	@if [ -z "$(FILE)$(SINCE)" ]; then \
		echo "usage: make reprocess FILE=streams_20260301T120000Z.parquet, or SINCE=2026-03-01" >&2; \
		exit 2; \
	fi
	$(COMPOSE) exec -T transformer twitch-bi reprocess $(FILE) $(if $(SINCE),--since $(SINCE))

rebuild: ## rebuild warehouse and reporting from every landed file (the running transformer does it)
	$(COMPOSE) exec -T transformer twitch-bi rebuild

serve-docs: .env data ## serve data/docs/ (from make docs) on http://127.0.0.1:8080 (DOCS_PORT in .env)
	@test -f data/docs/index.html || { echo "serve-docs: no data/docs/index.html; run make docs first" >&2; exit 1; }
	HOST_UID=$(HOST_UID) HOST_GID=$(HOST_GID) $(COMPOSE) --profile docs up --detach --build docs
