# Security scanners: their venv, and `make security` to run only their tests.
# Included by the root Makefile (`include mk/security.mk`), which defines VENV, PY and PIP_QUIET.
#
#   make security    checkov on terraform/, bandit on apps/ datasync/ lambdas/, and the
#                    dependency audit of the lock files that ship (tests/infra/test_security_scans.py)
#
# bandit and pip-audit live in a venv of their own (.tools/security, from requirements/security.lock)
# so that their dependencies never mix with the project's; checkov comes from the Kubernetes
# checkers' venv (.tools/k8s-checks, mk/k8s.mk), which has it already.

SECURITY_VENV ?= .tools/security
SECURITY_PYTHON ?= $(or $(PYTHON),python3)

$(SECURITY_VENV)/.installed: requirements/security.lock
	@echo "==> installing the security scanners (bandit, pip-audit) into $(SECURITY_VENV)"
	@rm -rf $(SECURITY_VENV)
	@$(SECURITY_PYTHON) -m venv $(SECURITY_VENV)
	@$(SECURITY_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps \
		-r requirements/security.lock 2>&1 | $(PIP_QUIET)
	@# PIP_QUIET swallows pip's exit status: check that the tools really are there.
	@$(SECURITY_VENV)/bin/bandit --version >/dev/null && $(SECURITY_VENV)/bin/pip-audit --version >/dev/null
	@touch $@

.PHONY: security-tools security
security-tools: $(SECURITY_VENV)/.installed ## install bandit and pip-audit (.tools/security)

security: $(VENV)/.installed $(SECURITY_VENV)/.installed $(K8S_CHECKS_VENV)/.installed ## checkov (terraform/), bandit, dependency audit
	$(PY) -m pytest tests/infra/test_security_scans.py -q -p no:cacheprovider
