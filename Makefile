# kubeledger developer commands. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV    := .venv
PY      := $(VENV)/bin/python
STACK   := PYTHONPATH=tests $(PY) -m stack
DEV_DIR := .dev
# Where `make dev-up` runs the operator: `cluster` (its image through its chart, as users
# run it) or `host` (a process on this machine: the fast loop while developing).
DEV_OPERATOR ?= cluster
# `make e2e-kind`: the kind release pytest-kind downloads, and the Kubernetes it runs.
KIND_VERSION ?= v0.30.0
KIND_NODE_IMAGE ?= kindest/node:v1.34.0

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-14s %s\n", $$1, $$2}'

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
integration: stack-install ## Integration and end-to-end tests against a fresh real stack
	$(VENV)/bin/pytest tests/e2e tests/integration

.PHONY: e2e-kind
e2e-kind: ## End to end on a kind cluster (needs a Docker engine; not part of `make test`)
	@docker info >/dev/null 2>&1 || { echo "make e2e-kind: no Docker engine answers here (kind runs its nodes as Docker containers); make test runs the end-to-end tests on the project's own cluster instead" >&2; exit 1; }
	$(MAKE) venv
	$(VENV)/bin/pip install -q -e '.[dev,kind]'
	KIND_VERSION=$(KIND_VERSION) KUBELEDGER_E2E_KIND=1 $(VENV)/bin/pytest tests/kind \
		--kind-image=$(KIND_NODE_IMAGE)

.PHONY: test
test: stack-install lint ## Everything CI runs: install, lint, unit, end-to-end and integration tests
	$(VENV)/bin/pytest tests

.PHONY: bench
bench: venv ## Print figures: the hot paths, then pace, memory, start-up and catch-up on a stack (.bench; 41 to 58 minutes at the default 10k scale on 2 cores)
	PYTHONPATH=tests $(PY) -m bench.hot_paths
	PYTHONPATH=tests $(PY) -m bench.stack_run

.PHONY: dev-up
dev-up: stack-install ## Start the cluster, Elasticsearch and the operator in .dev/ (DEV_OPERATOR=cluster|host)
	$(STACK) up $(DEV_DIR) --operator $(DEV_OPERATOR)

.PHONY: dev-down
dev-down: ## Stop everything dev-up started: processes, containers, network, mounts (data in .dev/ is kept)
	@if [ -x $(PY) ]; then $(STACK) down $(DEV_DIR); fi

.PHONY: dev-status
dev-status: venv ## Show which processes of the local stack run
	$(STACK) status $(DEV_DIR)

.PHONY: clean
clean: ## Stop the dev stack and remove its data (.dev/), the virtualenv and caches in the checkout
	@if [ -x $(PY) ]; then $(STACK) purge $(DEV_DIR); fi
	rm -rf $(DEV_DIR) .bench $(VENV) .mypy_cache .ruff_cache .pytest_cache
