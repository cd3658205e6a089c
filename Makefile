# `make run` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
STACK ?= stacks/prod

.PHONY: run test lint install system-deps schema docs bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/mailplane validate $(STACK)
	$(BIN)/mailplane warmup status $(STACK)
	$(BIN)/mailplane plan $(STACK)
	$(BIN)/mailplane render $(STACK) --out build/render

# The Debian packages the tests run as real servers (knot, postgresql), installed when missing.
system-deps:
	tools/system-deps

test: $(STAMP) system-deps
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

schema: $(STAMP)
	$(BIN)/mailplane schema
	$(BIN)/python -m mailplane.model.reference README.md
	$(BIN)/python -m mailplane.gitops.policy_reference README.md

bench: $(STAMP)
	$(BIN)/python bench/validate_large.py
	$(BIN)/python bench/render_large.py
	$(BIN)/python bench/sender_throughput.py
	$(BIN)/python bench/sender_pacing.py
	$(BIN)/python bench/sender_accept.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis
