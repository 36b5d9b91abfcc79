# Every target installs what it needs into .venv first, so each works on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-airflow run bench lint clean postgres report

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test,postgres,report,lakehouse]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/orb-pipeline demo

run: $(STAMP)
	$(BIN)/orb-pipeline run

test: $(STAMP) postgres
	$(BIN)/ruff check orb_source tests benchmarks pipelines notebooks
	$(BIN)/ruff format --check orb_source tests benchmarks pipelines notebooks
	$(BIN)/mypy
	$(BIN)/pytest

# The Airflow DAG's test, in a venv of its own (Airflow brings many packages): `make test`
# skips that test and stays free of Airflow.
AIRFLOW_VENV := .venv-airflow
test-airflow: postgres
	test -x $(AIRFLOW_VENV)/bin/python || $(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/pip install --quiet --upgrade pip
	$(AIRFLOW_VENV)/bin/pip install --quiet -e ".[test,postgres]" "apache-airflow>=3.1,<4"
	$(AIRFLOW_VENV)/bin/pytest -m airflow tests/test_deploy.py

bench: $(STAMP)
	$(BIN)/python -m benchmarks --results benchmarks/RESULTS.md

# Runs the notebooks headless on the demo's DuckDB file (or ORB_REPORT_DATABASE) and writes
# reports/revenue.html and reports/credits.html, charts embedded.
report: $(STAMP)
	$(BIN)/jupyter nbconvert --to html --execute --no-input --output-dir reports \
	  notebooks/revenue.ipynb notebooks/credits.ipynb

# The tests start and stop a throwaway PostgreSQL server of their own (tests/postgres.py);
# this only makes sure its binaries are installed, from Debian's packages.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql >/dev/null; }

clean:
	rm -rf $(VENV) $(AIRFLOW_VENV) .pytest_cache orb_billing.duckdb orb_demo.duckdb reports
