# The two commands a new user needs: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
PIP_VERSION := 26.3
# Every install takes its versions from constraints.txt, which pins every transitive dependency (`make constraints`).
INSTALL := $(BIN)/pip install --quiet -c constraints.txt -e '.[dev,demo]'

.PHONY: demo test check check-wheel bench bench-peers constraints clean

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet pip==$(PIP_VERSION)
	$(INSTALL)
	touch $@

demo: $(BIN)/.installed
	$(BIN)/lccm demo

# The README's test command (and CI's): lint and types first, then the suite (its 15 slowest tests listed, to keep it
# well under 15 minutes). The suite runs on one pytest-xdist worker per core: most of its time is tests waiting on
# PostgreSQL, brokers and subprocesses, and every test has its own database, topic root and free ports. Whole files
# go to one worker (--dist loadfile), so a module's shared fixtures are built once. TEST_WORKERS=0: one process.
TEST_WORKERS ?= auto
test: check
	$(BIN)/pytest -q --durations=15 -n $(TEST_WORKERS) --dist loadfile

check: $(BIN)/.installed
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy -p lccm -p tests -p deploy

# The product as deployed: the wheel alone in a fresh venv, run as docker-compose.yml runs it (deploy/check_wheel.py;
# needs PostgreSQL on 127.0.0.1:5432 and the mosquitto binaries, like `make test`).
check-wheel: $(BIN)/.installed
	$(BIN)/python -m deploy.check_wheel

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/ingest.py

# The benchmarks' peers that are not Python: Node-RED and node-postgres at the versions of
# benchmarks/nodered/package-lock.json, from the npm registry (needs node and npm; no install scripts run).
bench-peers:
	cd benchmarks/nodered && npm ci --ignore-scripts --no-audit --no-fund

# Re-resolve constraints.txt after a change to pyproject.toml's dependencies: keeps the versions already pinned where
# they still fit, takes the newest that fit for what is new (from PyPI, for Python 3.11 on x86-64 Linux, as the
# Docker image), then brings .venv in line.
constraints: $(BIN)/.installed
	$(BIN)/uv pip compile pyproject.toml --all-extras --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
		--custom-compile-command 'make constraints' --quiet --output-file constraints.txt
	$(INSTALL)
	touch $(BIN)/.installed

clean:
	rm -rf $(VENV) .lccm
