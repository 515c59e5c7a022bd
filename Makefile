# netdiag: `make run` reproduces the experiment, `make test` checks everything.
# Both create the virtualenv on first use; run as root (namespaces need it).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest bench clean-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/netdiag run

lint: $(STAMP)
	$(BIN)/ruff check netdiag tests bench
	$(BIN)/ruff format --check netdiag tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean-venv:
	rm -rf $(VENV)
