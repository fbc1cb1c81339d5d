# Tenantry — the README's commands. Each target creates the virtual environment when missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: run test check schema docs bench bench-quick lint format migrations clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)  ## the API with GraphiQL on embedded defaults (SQLite file under ./data, demo data)
	$(BIN)/tenantry serve

test: $(STAMP)  ## the whole suite (embedded defaults; PostgreSQL/Redis when TENANTRY_TEST_* are set)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

check: $(STAMP)  ## lint, format, types, schema.graphql and README drift (fast)
	$(BIN)/ruff check app workers tests
	$(BIN)/ruff format --check app workers tests
	$(BIN)/mypy app workers
	$(BIN)/tenantry export-schema | diff -u schema.graphql - || (echo "schema.graphql is stale: run 'make schema'" && exit 1)
	$(BIN)/python -m app.authz.docs --check
	$(BIN)/tenantry makemigrations --check

schema: $(STAMP)  ## rewrite schema.graphql from the code
	$(BIN)/tenantry export-schema --output schema.graphql

docs: $(STAMP)  ## rewrite the README's permission tables from app/authz/matrix.json
	$(BIN)/python -m app.authz.docs

format: $(STAMP)
	$(BIN)/ruff check --fix app workers tests
	$(BIN)/ruff format app workers tests

migrations: $(STAMP)  ## after a model change: write the next migration
	$(BIN)/tortoise -c app.db.TORTOISE_ORM makemigrations

bench: $(STAMP)  ## figures on the machine's PostgreSQL (see tests/bench/README.md)
	$(BIN)/python -m tests.bench.run

bench-quick: $(STAMP)
	$(BIN)/python -m tests.bench.run --quick

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
