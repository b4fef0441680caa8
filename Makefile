# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Both create .venv and install the pinned dependencies (.ci/constraints.txt).

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROTO_DIR := collectors/proto

.PHONY: help venv proto proto-check lint test test-fast bench demo clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

$(STAMP): pyproject.toml .ci/constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c .ci/constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)  ## create .venv with every pinned dependency

proto: $(STAMP)  ## regenerate the gRPC stubs from collectors/proto/**/*.proto
	$(BIN)/python -m collectors.proto.generate

proto-check: $(STAMP)  ## fail when the checked-in stubs are stale
	$(BIN)/python -m collectors.proto.generate --check

lint: $(STAMP)  ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(STAMP)  ## run the whole test suite against real PostgreSQL, gRPC, dbt, Airflow and GX
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(STAMP)  ## run the benchmarks, print ratios and write bench-results.json
	$(BIN)/python -m tests.bench

demo: $(STAMP)  ## the main job: simulate a week, run the DAGs over it, print where the results are
	$(BIN)/python -m collectors.demo

clean:  ## remove the venv and local state
	rm -rf $(VENV) .state bench-results.json
