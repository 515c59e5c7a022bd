# netdiag: `make run` reproduces the experiment, `make test` checks everything.
# Both create the virtualenv on first use; run as root (namespaces need it).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Optional mypyc build of the hot analysis modules into build/mypyc/ (issue 6).
# Redone when a source changes; a failed or impossible build leaves netdiag in
# pure Python (build_mypyc.py says so), and a stale one is never used (see
# netdiag/analysis/_compiled.py).
COMPILED := build/mypyc/.attempted
COMPILED_SOURCES := $(wildcard netdiag/analysis/*.py) build_mypyc.py

.PHONY: run test lint typecheck pytest bench compile clean-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(COMPILED): $(STAMP) $(COMPILED_SOURCES)
	$(BIN)/python build_mypyc.py
	@mkdir -p $(@D) && touch $@

compile: $(STAMP)
	$(BIN)/python build_mypyc.py --force
	@mkdir -p $(dir $(COMPILED)) && touch $(COMPILED)

run: $(STAMP) $(COMPILED)
	$(BIN)/netdiag run

lint: $(STAMP)
	$(BIN)/ruff check netdiag tests bench build_mypyc.py
	$(BIN)/ruff format --check netdiag tests bench build_mypyc.py

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) $(COMPILED)
	$(BIN)/pytest -q

test: lint typecheck pytest

bench: $(STAMP) $(COMPILED)
	$(BIN)/python bench/run.py

clean-venv:
	rm -rf $(VENV)
