# The two commands of the README: `make demo` and `make test`. Both set up .venv first when needed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
SETUP_INPUTS := requirements.txt requirements-ray.txt constraints.txt setup.py setup.cfg package.xml Makefile
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= egl
export AMENT_PREFIX_PATH := $(CURDIR)/$(VENV)
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test test-all lint format clean-venv

# Idempotent: the stamp holds a hash of the inputs; nothing is installed when they did not change.
# gym-xarm is installed without its dependencies (it pins mujoco<3 for its own env; we only use its xArm7 MJCF
# assets), so pip check's complaint about it is expected and filtered. Ray (requirements-ray.txt) is an optional
# extra for users; the dev/test venv installs it so that the tests cover the Ray backend.
setup:
	@want=$$(cat $(SETUP_INPUTS) | sha256sum | cut -d' ' -f1); \
	if [ -f $(STAMP) ] && [ "$$(cat $(STAMP))" = "$$want" ]; then echo "setup: up to date"; exit 0; fi; \
	if [ -d $(VENV) ] && [ -f $(STAMP) ]; then echo "setup: inputs changed, rebuilding $(VENV) fresh"; rm -rf $(VENV); fi; \
	set -e; \
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV); \
	$(PY) -m pip install -q -c constraints.txt -r requirements.txt -r requirements-ray.txt; \
	$(PY) -m pip install -q --no-deps gym-xarm==0.1.1; \
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .; \
	problems=$$($(PY) -m pip check 2>&1 | grep -v -e '^gym-xarm 0.1.1 has requirement' -e '^No broken' || true); \
	if [ -n "$$problems" ]; then echo "$$problems"; exit 1; fi; \
	echo "$$want" > $(STAMP); echo "setup: done"

demo: setup
	$(VENV)/bin/polytask demo

test: setup
	$(PY) -m pytest -q -m "not slow" tests

test-all: setup
	$(PY) -m pytest -q tests

lint: setup
	$(VENV)/bin/ruff check .

format: setup
	$(VENV)/bin/ruff format .

clean-venv:
	rm -rf $(VENV)
