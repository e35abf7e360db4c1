# The API's own checks: schemathesis's venv, and `make api-checks` to run only the API tests.
# Included by the root Makefile (`include mk/api-checks.mk`), which defines VENV, PY and PIP_QUIET.
#
#   make api-checks   the API's unit tests, then its integration tests against the real stack:
#                     schemathesis against the real gunicorn server (all checks, fixed seed),
#                     a paused and a refusing bus, hostile input, slow clients, logs
#
# schemathesis lives in a venv of its own (.tools/schemathesis, from requirements/schemathesis.lock):
# its pins of pytest, hypothesis, werkzeug and requests must not decide the project's.

SCHEMATHESIS_VENV ?= .tools/schemathesis
SCHEMATHESIS_PYTHON ?= $(or $(PYTHON),python3)

$(SCHEMATHESIS_VENV)/.installed: requirements/schemathesis.lock
	@echo "==> installing schemathesis into $(SCHEMATHESIS_VENV)"
	@rm -rf $(SCHEMATHESIS_VENV)
	@$(SCHEMATHESIS_PYTHON) -m venv $(SCHEMATHESIS_VENV)
	@$(SCHEMATHESIS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps \
		-r requirements/schemathesis.lock 2>&1 | $(PIP_QUIET)
	@# PIP_QUIET swallows pip's exit status: check that the tool really is there.
	@$(SCHEMATHESIS_VENV)/bin/schemathesis --version >/dev/null
	@touch $@

.PHONY: api-tools api-checks
api-tools: $(SCHEMATHESIS_VENV)/.installed ## install schemathesis (.tools/schemathesis)

api-checks: tools $(SCHEMATHESIS_VENV)/.installed ## the API's unit tests, then schemathesis, faults and hostile input on the real stack
	$(PY) -m pytest tests/unit/test_api.py tests/unit/test_api_fuzz.py tests/unit/test_bus.py \
		tests/unit/test_gunicorn_worker.py \
		tests/unit/test_published_patterns.py -q -p no:cacheprovider
	$(PY) -m pytest tests/integration/test_api_schemathesis.py tests/integration/test_api_faults.py \
		tests/integration/test_api_hostile.py -q -p no:cacheprovider
