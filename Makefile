# Two commands on a fresh machine: `make serve` (the API on the embedded defaults) and
# `make test` (the whole suite on SQLite and PostgreSQL, in-process bus and Redis).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install serve worker test test-fast bench fuzz lint schema

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/vidgen serve

worker: $(STAMP)
	$(BIN)/vidgen worker

# Two test processes (pytest-xdist), each taking whole files: the suite mostly waits on
# sockets and subprocesses, so two share the 2 cores well. TEST_WORKERS=0 runs it in one.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

test-fast: $(STAMP)
	VIDGEN_TEST_BACKENDS=sqlite $(BIN)/pytest -x -q

bench: $(STAMP)
	$(BIN)/python -m bench

fuzz: $(STAMP)
	VIDGEN_FUZZ_EXAMPLES=2000 $(BIN)/pytest tests/fuzz -q

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

schema: $(STAMP)
	$(BIN)/vidgen export-schema
