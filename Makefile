# One entry point per job. Every target works on a fresh machine with Python >= 3.11.
#   make demo   set up and run an example graph
#   make test   set up everything (venv, npm test peers, Docker engine) and run the tests
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup js docker services demo test lint bench

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# Outside references used by the tests (fbp parser, fbp-protocol, fbp-spec), pinned by the lock file.
js: tests/js/node_modules/.installed

tests/js/node_modules/.installed: tests/js/package.json tests/js/package-lock.json
	cd tests/js && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Docker engine + a local reflowpy/python:3.11-slim image built without a registry, and
# clang/lld for the WASM test plugins. Needs root and the Debian mirrors.
docker:
	sh scripts/docker-setup.sh

# Everything else a test needs from Debian (bubblewrap, iproute2, chromium, postgresql, ...):
# each scripts/setup-*.sh installs and starts one thing, idempotent and unattended.
services:
	for s in scripts/setup-*.sh; do [ -e "$$s" ] || continue; sh "$$s" || exit 1; done

demo: setup
	$(BIN)/reflowpy run examples/hello.json --input numbers=1 --input numbers=2 --input numbers=3

test: setup js docker services
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check reflowpy tests benchmarks
	$(BIN)/mypy --strict reflowpy

bench: setup
	$(BIN)/python -m benchmarks kernel
	$(BIN)/python -m benchmarks script
