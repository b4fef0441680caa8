# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Both create .venv and install the pinned dependencies (.ci/constraints.txt).

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROTO_DIR := collectors/proto

.PHONY: help venv browser promtool proto proto-check lint test test-fast bench demo clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

$(STAMP): pyproject.toml .ci/constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# uv installs the same pinned tree as pip in about 35 s instead of 100. Bytecode is compiled here, once: left
	@# to first imports, every test worker and Airflow process compiles the same modules again (4 CPU-minutes)
	$(BIN)/pip install --quiet --disable-pip-version-check -c .ci/constraints.txt uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -c .ci/constraints.txt -e '.[all,dev]'
	touch $(STAMP)

venv: $(STAMP)  ## create .venv with every pinned dependency

proto: $(STAMP)  ## regenerate the gRPC stubs from collectors/proto/**/*.proto
	$(BIN)/python -m collectors.proto.generate

proto-check: $(STAMP)  ## fail when the checked-in stubs are stale
	$(BIN)/python -m collectors.proto.generate --check

lint: $(STAMP)  ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The data-quality report's browser test drives Debian's chromium (headless); installed when missing.
browser:  ## install Debian's chromium for the browser test (apt-get, as root) unless it is there
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "error: chromium is missing and installing it needs root: run 'sudo make browser'" \
	      "(or 'sudo apt-get install chromium')" >&2; exit 1; \
	  fi; \
	  echo "installing chromium (Debian package) for the browser test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; \
	}
	@chromium --version

# The monitoring tests check the Prometheus config and rules with Debian's promtool and scrape a receiver with its
# prometheus; installed when missing. Where systemd runs, the package's own service is stopped and disabled again:
# the tests start the server themselves, and nothing else here needs one listening on :9090.
promtool:  ## install Debian's prometheus (promtool and the server, for tests/monitoring) unless it is there
	@{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "error: promtool is missing and installing it needs root: run 'sudo make promtool'" \
	      "(or 'sudo apt-get install prometheus')" >&2; exit 1; \
	  fi; \
	  echo "installing prometheus (Debian package: promtool and the server) for the monitoring tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; \
	  if [ -d /run/systemd/system ]; then systemctl disable --now prometheus.service >/dev/null 2>&1 || true; fi; \
	}
	@promtool --version 2>&1 | head -n 1

# Two pytest-xdist workers, each handed whole modules, longest first (tests/conftest.py): the suite waits on
# PostgreSQL, Airflow's services and the receivers as much as it computes. TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
XDIST = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder)

test: $(STAMP) browser promtool  ## run the whole test suite against real PostgreSQL, gRPC, dbt, Airflow and GX
	$(BIN)/pytest $(XDIST) --durations=25 $(PYTEST_ARGS)

# Quick feedback while working: everything but the Airflow end-to-end runs and the long suites (fault, load, fuzz,
# and the tests marked slow), with the fuzzers on few examples; `make test` runs them all.
test-fast: $(STAMP) promtool  ## the suite without the Airflow end-to-end, fault, load, fuzz and slow tests (a few minutes)
	TELEMETRY_FUZZ_EXAMPLES=20 $(BIN)/pytest $(XDIST) -m "not e2e and not slow and not fault and not load and not fuzz" $(PYTEST_ARGS)

bench: $(STAMP)  ## run the benchmarks, print ratios and write bench-results.json
	$(BIN)/python -m tests.bench

demo: $(STAMP)  ## the main job: simulate a week, run the DAGs over it, print where the results are
	$(BIN)/python -m collectors.dev.demo $(ARGS)

# Exports for notebooks: every mart for the last EXPORT_DAYS whole UTC days, refreshed in place (files replaced
# whole, inventory.json rewritten). E.g. make telemetry-etl EXPORT_DAYS=28 EXPORT_FORMAT=jsonl ARGS=--raw-events
EXPORT_DIR    ?= .state/exports
EXPORT_DAYS   ?= 7
EXPORT_FORMAT ?= parquet
.PHONY: telemetry-etl
telemetry-etl: $(STAMP)  ## refresh EXPORT_DIR: every mart of the last EXPORT_DAYS days as EXPORT_FORMAT (+ ARGS)
	$(BIN)/python -m collectors.export --all-marts --last-days $(EXPORT_DAYS) --format $(EXPORT_FORMAT) \
	  --out $(EXPORT_DIR) $(ARGS)

clean:  ## remove the venv and local state
	rm -rf $(VENV) .state bench-results.json
