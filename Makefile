# sluice: two commands on a fresh machine (Python 3.11, Java 17, make):
#   make demo   set everything up and run the demo end to end
#   make test   set everything up and run lint, types and every test tier
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
UV_VERSION ?= 0.13.8
UV_ON_PATH := $(shell command -v uv 2>/dev/null)
UV := $(or $(UV_ON_PATH),$(CURDIR)/.tools/bin/uv)
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(PYTHON)
# The embedded Airflow home lives in the project; `./sluice env` prints the rest.
export SLUICE_PROJECT_DIR := $(CURDIR)
RUN := $(UV) run --frozen

.PHONY: help setup uv-path s3a-jars demo demo-production production-up production-down demo-mlflow-ui docs docs-generate docs-serve test test-fast test-unit test-integration test-e2e production-stack-test lint airflow mlflow-ui bench bench-quick clean

help:
	@echo "make demo | demo-production | production-up | production-down | test | s3a-jars | test-unit | test-integration | test-e2e | lint | airflow | mlflow-ui | bench | bench-quick | clean | uv-path | demo-mlflow-ui"
	@echo "your own production shape: ./sluice production init FOLDER, then ./sluice production up|status|down --env FOLDER/production.env (docs/production-kit.md)"

$(CURDIR)/.tools/bin/uv:
	$(PYTHON) -m venv $(CURDIR)/.tools
	$(CURDIR)/.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

# Installed packages come with their bytecode: every Airflow task is a fresh process, and
# without .pyc files (or where PYTHONDONTWRITEBYTECODE is set) each one compiled MLflow,
# Airflow and scikit-learn from source again, seconds per task (bench/overhead.py). Only
# here: as an exported UV_COMPILE_BYTECODE, every `uv run` would check them again (~2 s).
.venv/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --compile-bytecode
	@touch $@

setup: .venv/.synced
	$(RUN) sluice bootstrap
	@$(MAKE) --no-print-directory uv-path
	@echo "sluice: ./sluice COMMAND runs the sluice CLI in the locked environment (no PATH set-up), e.g."
	@echo "  ./sluice status dags/flights_delay.pipeline.yaml"
	@echo "  ./sluice exec airflow dags trigger flights_delay__train"

# Where uv is, and how to call it for the README's `uv run ...` commands. When make installed
# it, .tools/path/ holds uv alone (.tools/bin also has the tools' own python and pip).
uv-path: | $(UV)
ifeq ($(UV_ON_PATH),)
	@mkdir -p .tools/path && ln -sf ../bin/uv .tools/path/uv && ln -sf ../bin/uvx .tools/path/uvx
	@echo "uv: $(UV) (installed here by make; it is not on your PATH)."
	@echo "For the README's 'uv run ...' commands, put it on PATH in your shell:"
	@echo '  export PATH="$(CURDIR)/.tools/path:$$PATH"'
else
	@echo "uv: $(UV_ON_PATH)"
endif

# The S3A jars (hadoop-aws + AWS SDK v2, pinned in include/sluice/services/s3a/) that Spark
# needs for an s3:// storage root, into .jars/s3a/ with Maven. Checksums only when already
# there (under a second). `make test` needs them; `make demo` (local storage) does not.
s3a-jars: .venv/.synced
	@command -v mvn >/dev/null || { echo "mvn missing: installing Debian's maven"; \
		apt-get install -y -q maven >/dev/null 2>&1 || { apt-get update -q && apt-get install -y -q maven; }; }
	$(RUN) sluice fetch-jars

demo: setup
	$(RUN) python include/demo/run_demo.py $(DEMO_ARGS)

# The same demo in the production shape (issue 11): PostgreSQL, Redis, an S3 server, an MLflow
# server, a Spark cluster and Airflow on Celery (two workers) as real processes on free ports
# in a temporary folder, all stopped and removed at the end (include/demo/run_production.py).
# It passes when it did what the months asked for allow (`DEMO_ARGS='--months 1 --beside ""'`
# is a quick one). `DEMO_ARGS=--keep` runs it on the production kit instead and leaves it up.
demo-production: .venv/.synced s3a-jars
	$(RUN) python include/demo/run_production.py $(DEMO_ARGS)

# The demo on the production kit (`sluice production`, docs/production-kit.md), left running
# on free ports in $(PRODUCTION_DEMO) to look around: it ends with a "where to look" table (Airflow
# and its admin password, MLflow, S3 and its keys, the Spark UI, Flower, the model servers).
# `make production-down` stops every part. A new production-up replaces a kept one.
PRODUCTION_DEMO ?= $(CURDIR)/.sluice/production-demo
production-up: .venv/.synced s3a-jars
	$(RUN) python include/demo/run_production.py --keep --folder $(PRODUCTION_DEMO) $(DEMO_ARGS)

production-down: .venv/.synced
	$(RUN) sluice production down --env $(PRODUCTION_DEMO)/production.env

# ruff, mypy, then the layer contracts of [tool.importlinter] in pyproject.toml (under 1 s: no cache).
lint: .venv/.synced
	$(RUN) ruff check include dags plugins tests bench tools
	$(RUN) ruff format --check include dags plugins tests bench tools
	$(RUN) mypy
	PYTHONPATH=include $(RUN) lint-imports --no-cache --no-logo

# The docs site (docs/, mkdocs.yml): its generated blocks must be current (spec reference,
# ports, settings, the performance table), then a strict build (a broken link or anchor fails).
export NO_MKDOCS_2_WARNING := 1
docs: .venv/.synced
	$(RUN) python tools/docs_blocks.py --check
	$(RUN) python bench/report.py --check
	$(RUN) mkdocs build --strict --quiet

# Rewrite the generated blocks of docs/ from the code and bench/results.json.
docs-generate: .venv/.synced
	$(RUN) python tools/docs_blocks.py
	$(RUN) python bench/report.py

# The docs site on http://127.0.0.1:8000, rebuilt on every save.
docs-serve: .venv/.synced
	$(RUN) mkdocs serve

# Two workers: the end-to-end and fault tests one after the other on one, the production-shape
# tests (one stack for all of them) on the other, every other test wherever there is room
# (tests/conftest.py puts them in xdist groups).
PYTEST_WORKERS ?= 2
test: setup lint docs s3a-jars
	$(RUN) pytest -n $(PYTEST_WORKERS) --dist loadgroup

# The fast tier (under 2 minutes): spec, plan, rendering, records, settings and docs checks; no
# Airflow, no Spark JVM, no subprocess (tests/conftest.py FAST_TIER says which files).
test-fast: .venv/.synced
	$(RUN) pytest -m fast -n $(PYTEST_WORKERS) -p no:cacheprovider -q

test-unit: .venv/.synced
	$(RUN) pytest -m "not integration and not e2e and not production"

test-integration: setup s3a-jars
	$(RUN) pytest -m integration

test-e2e: setup
	$(RUN) pytest -m e2e

# The production-shape tests alone (also part of `make test`): PostgreSQL, Redis, S3, an MLflow
# server, Airflow on Celery and a Spark cluster as real processes, one stack for all of them.
production-stack-test: .venv/.synced s3a-jars
	$(RUN) pytest tests/production -m production -s

# The Airflow UI on the embedded default (scheduler, DAG processor, triggerer, API server) on
# $SLUICE_AIRFLOW_PORT (8080). A supervisor stops every component on Ctrl-C or SIGTERM.
airflow: setup
	$(RUN) sluice airflow

# The MLflow UI of the embedded store on $SLUICE_MLFLOW_UI_PORT (5000).
mlflow-ui: .venv/.synced
	env="$$($(RUN) sluice env --check-free SLUICE_MLFLOW_UI_PORT)" && eval "$$env" && \
	exec $(RUN) mlflow ui --backend-store-uri "$$MLFLOW_TRACKING_URI" --port "$$SLUICE_MLFLOW_UI_PORT"

# The demo's own MLflow store (make demo never touches .sluice/mlflow.db), same port setting.
demo-mlflow-ui: .venv/.synced
	env="$$($(RUN) sluice env --check-free SLUICE_MLFLOW_UI_PORT)" && eval "$$env" && \
	exec $(RUN) mlflow ui --backend-store-uri "sqlite:///$(CURDIR)/.sluice/demo/mlflow.db" --port "$$SLUICE_MLFLOW_UI_PORT"

# Every bench of bench/run.py (ratios against a baseline in the same run, under 25 minutes on
# 2 cores), merged into bench/results.json; then the README's performance table from it.
bench: setup
	$(RUN) python bench/run.py
	$(RUN) python bench/report.py

# The same with fewer repetitions and smaller sizes (entries marked "quick": true).
bench-quick: setup
	$(RUN) python bench/run.py --quick
	$(RUN) python bench/report.py

clean:
	rm -rf .airflow .sluice data .pytest_cache .mypy_cache .ruff_cache
