# datasync developer commands. `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
MINISTACK_VENV := .tools/ministack
# pip prints one warning per missing local index on some machines; they are noise here. The
# braces keep pip's own exit status (pipefail): only grep's "nothing left to print" is forgiven.
PIP_QUIET := { grep -v -e "^WARNING: Location" -e "^\[notice\]" || true; }

export PYTHONDONTWRITEBYTECODE := 1

include mk/k8s.mk
include mk/security.mk
include mk/bench.mk
include mk/api-checks.mk
include mk/browser.mk

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | sort | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-14s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml devstack/pyproject.toml requirements/dev.lock
	@$(PYTHON) -c 'import sys; sys.exit("Python >= 3.11 is required (found %s); set PYTHON=python3.11" % sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	@echo "==> installing the project into $(VENV)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements/dev.lock 2>&1 | $(PIP_QUIET)
	@$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e . -e ./devstack 2>&1 | $(PIP_QUIET)
	@touch $@

$(MINISTACK_VENV)/.installed: requirements/ministack.lock
	@echo "==> installing MiniStack (the embedded AWS emulator) into $(MINISTACK_VENV)"
	@test -x $(MINISTACK_VENV)/bin/python || $(PYTHON) -m venv $(MINISTACK_VENV)
	@$(MINISTACK_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements/ministack.lock 2>&1 | $(PIP_QUIET)
	@touch $@

.PHONY: install tools
install: $(VENV)/.installed ## create .venv with the project, the dev stack (devstack/) and the dev tools
tools: $(VENV)/.installed $(MINISTACK_VENV)/.installed ## install the project and the local emulator

.PHONY: run
run: tools ## run the whole pipeline locally (MiniStack + Terraform + API + consumers)
	@command -v terraform >/dev/null || { echo "terraform is not on PATH: install Terraform >= 1.6"; exit 2; }
	@$(VENV)/bin/datasync up

.PHONY: test
# Two workers even on two cores: the integration tests mostly wait (SQS visibility timeouts,
# the AWS provider's settle waits), and the other worker's tests fill that time.
TEST_WORKERS ?= 2
test: tools $(K8S_CHECKS_VENV)/.installed $(SECURITY_VENV)/.installed $(BENCH_VENV)/.installed $(SCHEMATHESIS_VENV)/.installed $(BROWSER_TOOLS)/.installed ## run every test: unit, contract, Terraform, integration (with the image and pod rehearsal), chart checks, security scans (TEST_WORKERS=2 xdist workers; 0 runs them serially)
	@command -v terraform >/dev/null || { echo "terraform is not on PATH: install Terraform >= 1.6"; exit 2; }
	@$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder $(PYTEST_ARGS)

.PHONY: soak
SOAK_EVENTS ?= 30000
SOAK_RATE ?= 150
soak: tools ## >= 30,000 writes through the API while a fault hits every 1-3 s, then reconcile every one (SOAK_EVENTS, SOAK_RATE)
	@command -v terraform >/dev/null || { echo "terraform is not on PATH: install Terraform >= 1.6"; exit 2; }
	@$(PY) -m tests.soak --events $(SOAK_EVENTS) --rate $(SOAK_RATE) $(SOAK_ARGS)

.PHONY: unit
unit: $(VENV)/.installed ## only the fast unit tests
	@$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

.PHONY: e2e
e2e: tools ## end-to-end flow against a running `make run` (starts one if none); E2E_TARGET=kind for a cluster
	@$(VENV)/bin/pytest tests/e2e -m e2e -p no:cacheprovider $(PYTEST_ARGS)

.PHONY: lint
lint: $(VENV)/.installed ## ruff and terraform fmt
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@terraform fmt -check -recursive terraform

.PHONY: schemas
schemas: $(VENV)/.installed ## rewrite the contract's JSON Schemas from the models
	@$(VENV)/bin/datasync schemas --write

.PHONY: docs
docs: $(VENV)/.installed ## rewrite docs/configuration.md (every environment variable) from the settings modules
	@$(PY) -m devstack.configuration --write

.PHONY: clean-state clean
# The local stack's state lives in $(DATASYNC_VAR_DIR) (default var/, like `datasync up`).
DATASYNC_VAR_DIR ?= var
clean-state: ## forget the local stack (stop `make run` first): emulator state with its queued events, Terraform state, stores, logs
	rm -rf "$(DATASYNC_VAR_DIR)/local" "$(DATASYNC_VAR_DIR)/stores"

clean: clean-state ## remove all local state and builds (the next `make run` starts from scratch)
	rm -rf var build .pytest_cache

.PHONY: distclean
distclean: clean ## also remove the virtual environments
	rm -rf $(VENV) .tools
