# cryptostock: `make run` starts the product, `make test` runs the checks and tests.
.DEFAULT_GOAL := help
SHELL := /bin/bash

VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
SPEED ?= 60

help:
	@echo "make run    - set up everything and run the product at http://$(HOST):$(PORT) (Ctrl-C stops)"
	@echo "make test   - ruff + mypy + the test suite (DATABASE_URL / REDIS_URL select the services)"
	@echo "make bench  - benchmarks (needs DATABASE_URL=postgres://...)"
	@echo "make lint   - ruff and mypy only"

# The virtualenv is rebuilt when the pinned requirements change.
$(VENV)/.installed: requirements.txt requirements-dev.txt
	@python=$$(scripts/find-python) || exit 1; \
	  [ -x $(PY) ] || $$python -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

run: venv
	DEBUG=$${DEBUG:-1} $(PY) manage.py migrate --no-input -v0
	DEBUG=$${DEBUG:-1} $(PY) manage.py load_sample_data
	DEBUG=$${DEBUG:-1} $(PY) manage.py ensure_demo_user
	@echo "Dashboard: http://$(HOST):$(PORT)/   API: http://$(HOST):$(PORT)/api/docs/   Admin: http://$(HOST):$(PORT)/admin/"
	DEBUG=$${DEBUG:-1} exec $(PY) manage.py serve --host $(HOST) --port $(PORT) --collect replay --speed $(SPEED)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	SECRET_KEY=$${SECRET_KEY:-type-checking-only} $(VENV)/bin/mypy .

test: lint pytest

pytest: venv
	$(VENV)/bin/pytest $(PYTEST_ARGS)

bench: venv
	$(PY) -m bench.run $(BENCH)

.PHONY: help venv run lint test pytest bench
