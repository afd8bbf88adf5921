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
	$(BIN)/python -m pytest -n 2 --durations=10 $(PYTEST_ARGS)

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
