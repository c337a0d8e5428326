# stanch — two commands on a fresh machine: `make demo` and `make test`.
# Everything installs from uv.lock (hashes); uv itself is bootstrapped from PyPI if missing.

SHELL := /bin/bash
UV_VERSION ?= 0.13.8
# uv on PATH if there is one; otherwise the copy pip puts in this Python (`python3 -m uv`).
UV ?= $(shell command -v uv 2>/dev/null || echo python3 -m uv)
export UV_PYTHON_DOWNLOADS := never
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: help ensure-uv install demo test lint docs bench clean cluster-up cluster-down

help:
	@echo "make demo   - install from uv.lock, start a sandbox, run compromised-dependency end to end"
	@echo "make test   - lint, layering contract, types, and the test suite"
	@echo "make lint   - ruff + import-linter + mypy"
	@echo "make docs   - regenerate runbooks/schema.json, runbooks/drills/schema.json and docs/actions.md"
	@echo "make bench  - run the benchmarks in bench/"
	@echo "make cluster-up / cluster-down - Prefect server on PostgreSQL + 2 workers + Slack app + sandbox (docs/operations.md)"

ensure-uv:
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet "uv==$(UV_VERSION)" \
		|| python3 -m pip install --quiet --user "uv==$(UV_VERSION)"

# --compile-bytecode: machines here set PYTHONDONTWRITEBYTECODE=1, so without it every process
# (each Prefect server, sandbox, worker and `stanch` child of the tests) compiles Prefect, boto3 &c.
# from source again: `import prefect` 2.4 s -> 1.2 s, a Prefect server start ~13 -> ~7 CPU-s.
.venv/.synced: uv.lock pyproject.toml
	@$(MAKE) --no-print-directory ensure-uv
	$(UV) sync --frozen --quiet --compile-bytecode
	@touch $@

install: .venv/.synced

demo: install
	@$(UV) run --frozen --no-sync stanch demo

lint: install
	$(UV) run --frozen --no-sync ruff check flows integrations tests bench
	$(UV) run --frozen --no-sync lint-imports
	$(UV) run --frozen --no-sync mypy flows integrations

# Two xdist workers: the machine has 2 cores; each worker starts its own temporary Prefect server.
# worksteal: an idle worker takes queued tests from the busy one, so the long e2e tests do not end up
# queued behind each other on one worker while the other idles. (--dist loadgroup with the heavy
# drill runs and the Slack burst in one group was tried: 3 of 5 full runs then hit load stalls.)
PYTEST_WORKERS ?= 2

test: lint
	@$(UV) run --frozen --no-sync python -m compileall -q flows integrations
	$(UV) run --frozen --no-sync pytest -n $(PYTEST_WORKERS) --dist worksteal

docs: install
	$(UV) run --frozen --no-sync python -m flows.engine.spec.schema
	$(UV) run --frozen --no-sync python -m flows.drills.schema
	$(UV) run --frozen --no-sync stanch actions --markdown > docs/actions.md

bench: install
	$(UV) run --frozen --no-sync python bench/scope.py
	$(UV) run --frozen --no-sync python bench/blast_radius.py

cluster-up: install
	$(UV) run --frozen --no-sync stanch cluster up

cluster-down: install
	$(UV) run --frozen --no-sync stanch cluster down

clean:
	rm -rf .venv .stanch .pytest_cache .mypy_cache .ruff_cache
