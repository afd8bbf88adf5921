# vein2vein — two commands on a fresh machine with Python 3.11+ and make:
#   make run    install, migrate, seed, print an admin key, serve on http://127.0.0.1:8000
#   make test   install dev dependencies, run the whole suite (SQLite and PostgreSQL lanes)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
PYTEST_ARGS ?=

.PHONY: run test lint bench fmt messages clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.run-deps: requirements/lock.txt pyproject.toml | $(BIN)/python
	$(PIP) install --require-hashes -r requirements/lock.txt
	$(PIP) install --no-deps -e .
	@touch $@

$(VENV)/.dev-deps: requirements/dev-lock.txt pyproject.toml | $(BIN)/python
	$(PIP) install --require-hashes -r requirements/dev-lock.txt
	$(PIP) install --no-deps -e .
	@touch $@ $(VENV)/.run-deps

run: $(VENV)/.run-deps
	$(BIN)/v2v db upgrade
	$(BIN)/v2v seed
	$(BIN)/v2v demo --cases 300 --seed 1 --if-empty
	@echo ""
	@echo "  vein2vein is starting on http://127.0.0.1:8000  (API docs: /docs)"
	@echo "  Admin API key: $$($(BIN)/v2v dev-admin)"
	@echo ""
	$(BIN)/v2v serve

test: $(VENV)/.dev-deps
	$(BIN)/python -m pytest -n 2 --dist worksteal --durations=10 $(PYTEST_ARGS)

lint: $(VENV)/.dev-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: $(VENV)/.dev-deps
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(VENV)/.dev-deps
	$(BIN)/python -m bench

# Dashboard translations: extract the messages, then merge them into each .po (translate the
# new entries by hand). The .po files are compiled in memory at start-up; no .mo is kept.
messages: $(VENV)/.run-deps
	$(BIN)/pybabel extract -F app/web/babel.cfg -k N_ --no-location --sort-output \
		--project vein2vein -o app/web/translations/messages.pot .
	$(BIN)/pybabel update -i app/web/translations/messages.pot -d app/web/translations \
		--no-fuzzy-matching --ignore-obsolete

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis

# Proof under fire (loadtest/). Each runs real uvicorn processes on 127.0.0.1 against fresh
# SQLite and PostgreSQL databases, prints its figures and exits non-zero on a missed goal.
.PHONY: fuzz chaos load

# Schemathesis over every operation on both databases: 150 examples per operation plus the
# coverage phase; loadtest.fuzzcount prints the requests sent and fails below 5,000.
fuzz: $(VENV)/.dev-deps
	V2V_FUZZ_EXAMPLES=150 V2V_FUZZ_COVERAGE=1 V2V_FUZZ_MIN_REQUESTS=5000 \
		$(BIN)/python -m pytest -n 2 -p loadtest.fuzzcount --durations=5 tests/reliability/test_fuzz.py

# Ingest and journeys while the server is SIGKILLed 20 times per database: acknowledged,
# retried, lost (must be 0) and duplicated (must be 0).
chaos: $(VENV)/.dev-deps
	$(BIN)/python -m loadtest.chaos --kills 20 --uptime 4

# The realistic mix beside the echo endpoint; scheduler failover (probe and `v2v scheduler`);
# 50 clients for 60 s on two API processes + `v2v scheduler` (SQLite) and three + three
# (PostgreSQL), dashboards polling each second; then the same with every job each second and
# dashboards polling back to back (a stress run). Fails if either concurrency run does.
load: $(VENV)/.dev-deps
	$(BIN)/python -m loadtest.load --seconds 30
	$(BIN)/python -m loadtest.failover --interval 1
	$(BIN)/python -m loadtest.failover --cli
	$(BIN)/python -m loadtest.concurrency --clients 50 --seconds 60 --dashboard-pause 1; \
	status=$$?; \
	$(BIN)/python -m loadtest.concurrency --clients 50 --seconds 60 --interval 1 || status=1; \
	exit $$status
