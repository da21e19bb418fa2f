# Two entry points (see README): `make run` and `make test`. Everything else is a step of theirs.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test setup bench cluster clean

CONSOLE := src/shop/console

$(STAMP): pyproject.toml $(CONSOLE)/package-lock.json
	@test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@command -v npm >/dev/null || { echo "npm (Node.js 18+) is needed: the console's chart library comes from npm" >&2; exit 1; }
	cd $(CONSOLE) && npm ci --no-audit --no-fund --loglevel=error
	@touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/shop run --demo

test: $(STAMP)
	@bash scripts/test-services.sh
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -p no:cacheprovider -rs

# The distributed mode: one process per service on the local PostgreSQL, RabbitMQ and Zookeeper.
cluster: $(STAMP)
	$(BIN)/shop cluster up --demo

bench: $(STAMP)
	$(BIN)/python bench/standard.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache $(CONSOLE)/node_modules
