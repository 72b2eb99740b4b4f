# Set-up is part of every target: the first run creates .venv and installs rxinvest with its test and
# dev extras; later runs reuse it until pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("rxinvest needs Python 3.11 or newer" if sys.version_info < (3, 11) else 0)'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/rxinvest demo

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check rxinvest tests benchmarks
	$(BIN)/ruff format --check rxinvest tests benchmarks
	$(BIN)/mypy --strict rxinvest
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python benchmarks/decode.py
	$(BIN)/python benchmarks/sim_burst.py
	$(BIN)/python benchmarks/e2e.py
	$(BIN)/python benchmarks/ops.py
	$(BIN)/python benchmarks/replay.py
	$(BIN)/python benchmarks/bus.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
