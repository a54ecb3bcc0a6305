# Every target builds .venv at the repository root first when it is missing or stale.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint typecheck check bench notebooks audit lock sandbox clean

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e . || $(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/invoice-sync demo

test: venv
	$(BIN)/python -m pytest -q -n auto

lint: venv
	$(BIN)/ruff check invoice_source pipelines tests benchmarks notebooks
	$(BIN)/ruff format --check invoice_source pipelines tests benchmarks notebooks

typecheck: venv
	$(BIN)/mypy

check: lint typecheck test

bench: venv
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

notebooks: venv
	test -f invoice_sync.duckdb || $(BIN)/invoice-sync demo --quiet
	$(BIN)/marimo edit notebooks

# --strict: a pin whose vulnerability data cannot be fetched fails the audit instead of passing it.
audit: venv
	$(BIN)/pip-audit --strict -r requirements.lock --disable-pip --no-deps

sandbox: venv
	$(BIN)/invoice-sync sandbox

# Re-pin requirements.lock from pyproject.toml (dev extras included).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install -q --upgrade pip
	.lock-venv/bin/python -m pip install -q -e ".[dev]"
	.lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^invoice-sync' > requirements.lock
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
