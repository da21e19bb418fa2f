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

# The tests in two phases. The bulk runs on TEST_WORKERS pytest-xdist workers: most of a test's time
# is spent waiting on processes, servers and clocks, and tests/conftest.py keeps each shared cluster's
# and each file's tests on one worker. Then the tests marked `exclusive` run alone: they restart a
# server (RabbitMQ, a database, Zookeeper) that every other test uses. Both phases always run, and
# the target fails if either failed.
TEST_WORKERS ?= 3
PYTEST := $(BIN)/python -m pytest -q -p no:cacheprovider -rs

test: $(STAMP)
	@bash scripts/test-services.sh
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	status=0; \
	$(PYTEST) -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder -m "not exclusive" || status=$$?; \
	$(PYTEST) -m exclusive || status=$$?; \
	exit $$status

# The distributed mode: one process per service on the local PostgreSQL, RabbitMQ and Zookeeper.
cluster: $(STAMP)
	$(BIN)/shop cluster up --demo

bench: $(STAMP)
	$(BIN)/python bench/standard.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache $(CONSOLE)/node_modules
