# `make run` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
STACK ?= stacks/prod

.PHONY: run test test-fast lint install lock system-deps schema docs bench clean

# constraints.txt pins every package the install resolves, so two installs are the same;
# `make lock` resolves pyproject.toml's ranges afresh (in a throwaway venv) and rewrites it.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lock:
	rm -rf build/lock-venv
	$(PYTHON) -m venv build/lock-venv
	build/lock-venv/bin/pip install --quiet --upgrade pip
	build/lock-venv/bin/pip install --quiet -e '.[dev]'
	( echo "# Every package \`make\` installs, at the version it installs: rewritten by \`make lock\`, never by hand."; \
	  build/lock-venv/bin/pip freeze --exclude-editable | LC_ALL=C sort -f ) > constraints.txt.tmp
	mv constraints.txt.tmp constraints.txt
	rm -rf build/lock-venv

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

# The inner loop: everything but the Ansible runs, the multi-process tests and the installs.
test-fast: $(STAMP) system-deps
	$(BIN)/ruff check .
	$(BIN)/pytest -m "not ansible and not processes and not install" -n auto

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

docs: $(STAMP)
	$(BIN)/mkdocs build --strict

# The JSON Schema files and the generated blocks of the docs' reference pages.
schema: $(STAMP)
	$(BIN)/mailplane schema
	$(BIN)/python -m mailplane.model.reference docs/reference/yaml.md
	$(BIN)/python -m mailplane.cli_reference docs/reference/cli.md
	$(BIN)/python -m mailplane.gitops.policy_reference docs/reference/policy.md

bench: $(STAMP)
	$(BIN)/python bench/validate_large.py
	$(BIN)/python bench/render_large.py
	$(BIN)/python bench/sender_throughput.py
	$(BIN)/python bench/sender_pacing.py
	$(BIN)/python bench/scheduling.py
	$(BIN)/python bench/sender_accept.py
	$(BIN)/python bench/smtp_submission.py
	$(BIN)/python bench/plan_base.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis
