# The two set-up-and-go commands (README): `make run` and `make test`. Everything else is a helper target.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test lint bench clean-cache

$(STAMP): pyproject.toml scripts/setup.sh scripts/setup_assistant.sh
	PYTHON=$(PYTHON) bash scripts/setup.sh
	touch $(STAMP)

setup: $(STAMP)
	@# the assistant's dictionaries and model follow the KB and training data; a no-op when nothing changed
	bash scripts/setup_assistant.sh

## Install everything, build the offline model and the index, then run the main job on the embedded default:
## evaluate routing on the development set and route the sample complaints.
run: setup
	$(BIN)/hotline kb validate
	$(BIN)/hotline index build
	$(BIN)/hotline eval --input training_data/dev/routing_dev.jsonl --report out/eval-dev.json
	$(BIN)/hotline route --input training_data/samples/complaints.jsonl --output out/routed.jsonl
	@echo "routed samples: out/routed.jsonl · evaluation report: out/eval-dev.json"
	@echo "starting the service (Ctrl-C stops it, Rasa included)…"
	$(BIN)/hotline serve

## Run the whole test suite, database tests on SQLite and on a throwaway PostgreSQL (started by scripts/test_postgres.sh).
test: setup lint
	HOTLINE_TEST_DATABASE_URL=$${HOTLINE_TEST_DATABASE_URL:-$$(bash scripts/test_postgres.sh || true)} $(BIN)/python -m pytest -q

## Style (ruff) and the one-way layers (import-linter contracts in pyproject.toml); part of `make test`.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports

bench: setup
	$(BIN)/python benchmarks/routing_bench.py

clean-cache:
	rm -rf $${HOTLINE_CACHE_DIR:-$$HOME/.cache/hotline}
