# One virtualenv per checkout; every target creates it on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test check fmt lint types bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("notifier needs Python >= 3.11") if sys.version_info < (3, 11) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/notifier demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

fmt: $(STAMP)
	$(BIN)/ruff format notifier tests bench migrations

lint: $(STAMP)
	$(BIN)/ruff format --check notifier tests bench migrations
	$(BIN)/ruff check notifier tests bench migrations

types: $(STAMP)
	$(BIN)/mypy notifier tests

check: lint types test

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
