# The two commands of the README: `make demo` and `make test`. Both install what is needed first.
PYTHON ?= python3
export PYTHON

.PHONY: install demo test test-fast lint typecheck bench

install:
	@bash scripts/install.sh

demo: install
	$(PYTHON) -m cryowarp demo

# The whole suite: lint, types, layering, tests (slow ones included). This is what CI runs.
test: install lint typecheck
	$(PYTHON) -m pytest -q -p no:cacheprovider

# Quicker loop while developing.
test-fast: install
	$(PYTHON) -m pytest -q -m "not slow" -p no:cacheprovider

lint: install
	$(PYTHON) -m ruff check src tests benchmarks
	$(PYTHON) -m ruff format --check src tests benchmarks

typecheck: install
	$(PYTHON) -m mypy

bench: install
	$(PYTHON) -m benchmarks
