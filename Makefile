# llm-exporter: `make demo` runs it, `make test` checks it. Both work on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.demo
## the demo's port: make demo PORT=8080
PORT ?= 10060
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' llm_exporter/__init__.py)
## the image reference, one value everywhere (docs, compose, the chart's default tag)
IMAGE ?= llm-exporter:$(VERSION)
## wrapper mode: the server's image, and the derived image with llm-exporter in it
SERVER_IMAGE ?= vllm/vllm-openai:v0.11.0
WRAPPER_IMAGE ?= vllm-openai-llm-exporter:v0.11.0
DOCKER ?= $(shell command -v docker || command -v podman)

.PHONY: image wrapper-image demo test test-fast test-image lint tools bench bench-quick bench-smoke mutate clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# the demo needs the package and its dependencies only, not the test extras
$(DEMO_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -e .
	touch $(DEMO_STAMP)

## demo: the bundled example app piped into llm-exporter; open http://127.0.0.1:$(PORT)/
demo: $(DEMO_STAMP)
	@echo "llm-exporter demo: open http://127.0.0.1:$(PORT)/ and http://127.0.0.1:$(PORT)/metrics (Ctrl-C stops)"
	$(BIN)/python examples/demo_app.py | $(BIN)/llm-exporter --listen 127.0.0.1:$(PORT) > /dev/null

## tools: the real programs the tests use (promtool, mtail, ...), installed from Debian when missing
tools:
	bash scripts/install-tools.sh

## test: lint, type-check and the whole suite, with the real tools
test: $(STAMP) tools
	$(BIN)/ruff check llm_exporter tests bench examples
	$(BIN)/mypy
	$(BIN)/pytest -q

## image: the llm-exporter image, tagged $(IMAGE)
image:
	$(DOCKER) build -t $(IMAGE) .

## wrapper-image: $(SERVER_IMAGE) with llm-exporter added (examples/wrapper-image), tagged $(WRAPPER_IMAGE)
wrapper-image:
	rm -rf examples/wrapper-image/wheels
	$(PY) -m pip wheel --no-deps -q -w examples/wrapper-image/wheels .
	$(DOCKER) build --build-arg SERVER_IMAGE=$(SERVER_IMAGE) -t $(WRAPPER_IMAGE) examples/wrapper-image

## test-image: build the container image with podman (no Docker engine) and run it: non-root,
## read-only root filesystem, /healthz, HEALTHCHECK, metrics from piped input
test-image: $(STAMP)
	bash scripts/test-image.sh

test-fast: $(STAMP)
	$(BIN)/pytest -q tests/unit

lint: $(STAMP)
	$(BIN)/ruff check llm_exporter tests bench examples
	$(BIN)/mypy

## bench: the full benchmark (about 10 min); bench-quick: about 3 min; figures in bench/results/
bench: $(STAMP) tools
	$(BIN)/python bench/run.py

bench-quick: $(STAMP) tools
	$(BIN)/python bench/run.py --quick

bench-smoke: $(STAMP)
	$(BIN)/python bench/run.py --smoke

## mutate: mutation testing of the core with mutmut (slow: hours on two cores; not part of make test).
## Each mutant runs only the unit tests that cover the function it changed. Narrow it with
## MUTANTS, e.g. make mutate MUTANTS='llm_exporter.framing* llm_exporter.units*'; results are kept
## in mutants/ (a re-run tests only what changed); `.venv/bin/mutmut show NAME` shows one mutant.
MUTANTS ?=
MUTATE_JOBS ?= $(shell nproc)
mutate: $(STAMP)
	$(BIN)/pip install -q -e '.[test,mutate]'
	$(BIN)/mutmut run --max-children $(MUTATE_JOBS) $(MUTANTS)
	$(BIN)/mutmut results

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info mutants
