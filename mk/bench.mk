# `make bench`: the pipeline measured against its performance targets (bench/; method and
# results in BENCHMARKS.md).
# Included by the root Makefile (`include mk/bench.mk`), which defines PYTHON and PIP_QUIET.
#
#   make bench                                  start a stack of its own, measure, stop it
#   make bench BENCH_STACK=running              measure the running `make run` instead
#   make bench BENCH_SCALING=1                  + bursts of 2,000 / 6,000 / 20,000 beside the ceiling
#   make bench BENCH_SUSTAINED_SECONDS=600      + a 10-minute sustained run (BENCH_SUSTAINED_RATE)
#   make bench BENCH_REPO=../old-checkout       measure another checkout with this tool
#   make bench BENCH_LABEL=intake4              name the run (in its files' names; default run)
#   make bench-api                              the API alone on a fake bus: its CPU per request at
#                                               BENCH_RATE, and a POST beside 200 silent
#                                               connections (bench/api_alone.py; BENCH_API_ARGS)
#   make bench-topology                         the fan-out experiment (bench/topology.py):
#                                               one buffer queue per destination against one
#                                               for all, beside the ceiling (TOPOLOGY_ARGS;
#                                               results in var/bench/topology.json)
#
# A run writes var/bench/<day>-<label>-<commit>.json (the raw result, every sample), .png and
# .summary.json (its figures, a few KB: what docs/bench keeps; `python -m bench summarize
# <raw> --to docs/bench` puts it there with the PNG). Every knob is a BENCH_* variable read by
# `python -m bench` (bench/config.py; each with its default in docs/configuration.md, and
# `python -m bench --help`). Variables given on make's command line reach it through the
# environment; BENCH_ARGS adds raw options.
#
# The tool has a venv of its own so that it does not depend on the checkout it measures.

BENCH_VENV ?= .tools/bench
BENCH_ARGS ?=

$(BENCH_VENV)/.installed: requirements/bench.lock
	@echo "==> installing the benchmark's tools into $(BENCH_VENV)"
	@rm -rf $(BENCH_VENV)
	@$(PYTHON) -m venv $(BENCH_VENV)
	@$(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
		-r requirements/bench.lock 2>&1 | $(PIP_QUIET)
	@touch $@

.PHONY: bench bench-tools bench-topology bench-api
bench-tools: $(BENCH_VENV)/.installed ## install the benchmark's own venv (.tools/bench)

bench: tools $(BENCH_VENV)/.installed ## benchmark against the performance targets: raw result, PNG and summary under var/bench (BENCH_STACK=running, BENCH_SCALING=1, BENCH_SUSTAINED_SECONDS=600, BENCH_LABEL)
	@command -v terraform >/dev/null || { echo "terraform is not on PATH: install Terraform >= 1.6"; exit 2; }
	@$(BENCH_VENV)/bin/python -m bench $(BENCH_ARGS)

TOPOLOGY_ARGS ?=
bench-topology: tools $(BENCH_VENV)/.installed ## experiment: per-destination buffer queues vs one, beside the ceiling (TOPOLOGY_ARGS)
	@command -v terraform >/dev/null || { echo "terraform is not on PATH: install Terraform >= 1.6"; exit 2; }
	@$(BENCH_VENV)/bin/python -m bench.topology $(TOPOLOGY_ARGS)

BENCH_API_ARGS ?=
bench-api: tools $(BENCH_VENV)/.installed ## the API alone on a fake bus: CPU per request at BENCH_RATE, a POST beside 200 silent connections (BENCH_API_ARGS)
	@$(BENCH_VENV)/bin/python -m bench.api_alone $(BENCH_API_ARGS)
