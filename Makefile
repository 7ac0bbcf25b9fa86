# Two commands matter: `make demo` (stack up + the whole loop) and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STACK := $(PY) scripts/stack

.PHONY: help venv dev-venv demo up down status reset test chromium lint bench clean prod-up prod-down prod-status prod-demo suite

help:
	@echo "make demo   - install, start SeaweedFS + MLflow + Airflow on loopback, run the main job"
	@echo "make test   - install test tools and run the test suite on real services"
	@echo "make up     - start the stack only;  make down - stop it;  make status"
	@echo "make reset  - stop the stack and wipe its state (.stack/)"
	@echo "make lint   - ruff;  make suite - regenerate the validation suite from the configuration"
	@echo "MLOPS_CONFIG=include/config/city_bikes_daily.yaml make demo - the same loop on a daily data set"
	@echo "make prod-up - the production topology on this machine: PostgreSQL, Redis, Airflow with"
	@echo "              two Celery workers (state in .stack/prod/);  make prod-down;  make prod-status"
	@echo "make prod-demo - the main job of make demo on that topology"

# The stamp files make installs incremental: they rerun only when a requirements file changes.
$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed
dev-venv: $(VENV)/.installed-dev

up: venv
	$(STACK) up

# When this make started: demo's "install" phase runs from here to the stack's start.
MAKE_T0 := $(shell date +%s)

demo: venv
	@t1=$$(date +%s) && $(STACK) up && t2=$$(date +%s) && \
	$(PY) scripts/demo.py --timings "install=$$((t1 - $(MAKE_T0))),services up=$$((t2 - t1))"

down:
	@if [ -x $(PY) ]; then $(STACK) down; else echo "nothing to stop (no .venv)"; fi

status: venv
	$(STACK) status

reset: down
	rm -rf .stack

# The production topology (CeleryExecutor) on one machine. Installs Debian's postgresql and
# redis-server when missing (as root).
prod-up: venv
	$(STACK) --topology celery up

prod-demo: venv
	$(STACK) --topology celery up
	$(PY) scripts/demo.py --topology celery

prod-down:
	@if [ -x $(PY) ]; then $(STACK) --topology celery down; else echo "nothing to stop (no .venv)"; fi

prod-status: venv
	$(STACK) --topology celery status

test: dev-venv chromium
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# Debian's Chromium for the browser test (tests/integration/test_health_view.py) where it can be
# installed: as root with apt-get. Never fails: without it the browser test skips with the reason.
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null \
	  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || echo "chromium not installed (needs root and apt-get): the browser test will be skipped"

# Regenerate the Great Expectations suite of the configuration (MLOPS_CONFIG) from dataset.columns.
suite: venv
	PYTHONPATH=plugins $(PY) -m mlops.ingest.validation

lint: dev-venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: venv
	$(PY) bench/ingest.py
	$(PY) bench/scoring.py
	$(PY) bench/drift.py
