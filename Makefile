# One command surface: make demo, make test, make lint, make bench.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: demo test lint typecheck unit scan bench prereqs clean install install-dev

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

install: $(UV)  ## runtime dependencies only, exactly as locked
	$(UV) sync --frozen --no-dev

install-dev: $(UV)  ## runtime + test/lint dependencies, exactly as locked
	$(UV) sync --frozen

# --inexact: install what Aegis needs and remove nothing, so a dev checkout keeps its test tools
demo: $(UV)  ## run all of Aegis on this machine with embedded defaults
	$(UV) sync --frozen --no-dev --inexact
	$(VENV)/bin/aegis up

prereqs:  ## PostgreSQL/Redis checks, Prometheus/Alertmanager/Chromium installed when root
	@bash scripts/ci/prereqs.sh

lint: install-dev
	$(VENV)/bin/ruff check src tests scripts bench
	$(VENV)/bin/ruff format --check src tests scripts bench
	$(VENV)/bin/mypy

scan: install-dev
	$(VENV)/bin/aegis scan sdk --strict src

test: install-dev prereqs lint scan  ## the whole suite
	$(VENV)/bin/pytest -n 2 --dist loadgroup

bench: install-dev
	$(VENV)/bin/python -m bench

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
