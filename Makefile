# kubeledger developer commands. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV    := .venv
PY      := $(VENV)/bin/python
STACK   := PYTHONPATH=tests $(PY) -m stack
DEV_DIR := .dev

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-14s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

.PHONY: venv
venv: $(VENV)/.installed ## Create the virtualenv .venv with the package and dev tools

.PHONY: stack-install
stack-install: venv ## Install/build what the local stack runs (cached in ~/.cache/kubeledger)
	$(STACK) install

.PHONY: lint
lint: venv ## ruff, mypy --strict, and the layer contracts (import-linter)
	$(VENV)/bin/ruff check operator tests
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

.PHONY: unit
unit: venv ## Unit tests only (seconds, no servers)
	$(VENV)/bin/pytest tests/unit

.PHONY: integration
integration: stack-install ## Integration tests against a fresh real stack
	$(VENV)/bin/pytest tests/integration

.PHONY: test
test: stack-install lint ## Everything CI runs: install, lint, unit and integration tests
	$(VENV)/bin/pytest tests

.PHONY: bench
bench: venv ## Print throughput and memory figures of the hot paths
	PYTHONPATH=tests $(PY) -m bench.hot_paths

.PHONY: dev-up
dev-up: stack-install ## Start the local stack and the operator in .dev/ (idempotent)
	$(STACK) up $(DEV_DIR) --operator

.PHONY: dev-down
dev-down: ## Stop every process dev-up started (data in .dev/ is kept)
	@if [ -x $(PY) ]; then $(STACK) down $(DEV_DIR); fi

.PHONY: dev-status
dev-status: venv ## Show which processes of the local stack run
	$(STACK) status $(DEV_DIR)

.PHONY: clean
clean: dev-down ## Remove .dev/, the virtualenv and caches in the checkout
	rm -rf $(DEV_DIR) $(VENV) .mypy_cache .ruff_cache .pytest_cache
