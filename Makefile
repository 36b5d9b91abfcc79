# Every target installs what it needs into .venv first, so each works on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test run bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/orb-pipeline demo

run: $(STAMP)
	$(BIN)/orb-pipeline run

test: $(STAMP)
	$(BIN)/ruff check orb_source tests benchmarks pipelines notebooks
	$(BIN)/ruff format --check orb_source tests benchmarks pipelines notebooks
	$(BIN)/mypy
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m benchmarks --results benchmarks/RESULTS.md

clean:
	rm -rf $(VENV) .pytest_cache orb_billing.duckdb orb_demo.duckdb
