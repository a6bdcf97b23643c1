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

.PHONY: setup demo test test-all lint format clean-venv bench bench-gpu wheels-gpu

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

# TEST_WORKERS pytest-xdist processes, each taking whole test files (module fixtures are built once); ROS tests
# reserve their own domain ids, so files never share a graph. TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 2
test: setup
	$(PY) -m pytest -q -m "not slow" -n $(TEST_WORKERS) --dist loadfile tests

test-all: setup
	$(PY) -m pytest -q tests

lint: setup
	$(VENV)/bin/ruff check .

format: setup
	$(VENV)/bin/ruff format .

clean-venv:
	rm -rf $(VENV)

# --- benchmarks ------------------------------------------------------------------------------------------
# CPU benchmarks, each printing its baseline measured in the same process and the ratio (docs/benchmarks*.md).
BENCH_OUT ?= runs/bench
bench: setup
	mkdir -p $(BENCH_OUT)
	$(PY) bench/bench_fast.py --threads 1 --json $(BENCH_OUT)/fast.json
	$(PY) bench/bench_ot.py --threads 1 --json $(BENCH_OUT)/ot.json
	$(PY) bench/bench_distill.py --steps 400 --json $(BENCH_OUT)/distill.json
	$(PY) bench/bench_train_loop.py --section batched --obs state --k 3 --episodes 3 --threads 1 \
		--json $(BENCH_OUT)/loop_batched_state.json
	$(PY) bench/bench_train_loop.py --section one --obs pixels --episodes 2 --threads 1 --json $(BENCH_OUT)/loop_one.json

# The GPU job (bench/gpu_suite.sh): run on the GPU machine with the tree, .whl and .gl carried. No venv there:
# it uses that machine's python3. OUT is the job's output folder there; elsewhere runs/gpu-suite.
bench-gpu:
	bash bench/gpu_suite.sh $${OUT:-runs/gpu-suite}

# Wheels the GPU machine lacks (Python 3.12, manylinux x86_64), into .whl/, and the GL loader .debs into .gl/.
# The suite's learner benchmarks need none (torch, numpy, safetensors, PyYAML are there); the Meta-World set
# (~47 MB) measures rendering with EGL on that machine. POT (~33 MB) stays here: its comparison runs on this CPU.
GPU_WHEELS := metaworld==3.1.1 mujoco==3.3.0 gymnasium==1.4.0 PyOpenGL==3.1.10 glfw==2.11.0 Farama-Notifications==0.0.6
GPU_PLATFORMS := $(foreach p,manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64,--platform $(p))
GL_DEBS := libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2
CARRY_LIMIT := 67108864
wheels-gpu: setup
	mkdir -p .whl .gl /tmp/polytask-apt-amd64/partial
	$(PY) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		$(GPU_PLATFORMS) -d .whl $(GPU_WHEELS)
	apt_o="-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/polytask-apt-amd64"; \
		apt-get $$apt_o update -qq && (cd .gl && apt-get $$apt_o download -qq $(GL_DEBS))
	@tree=$$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1); \
	brought=$$(du -cb .whl/* .gl/* | tail -1 | cut -f1); total=$$((tree + brought)); \
	echo "wheels-gpu: tree $$tree + .whl/.gl $$brought = $$total bytes (limit $(CARRY_LIMIT) per call)"; \
	if [ $$total -gt $(CARRY_LIMIT) ]; then echo "wheels-gpu: over the 64 MiB a GPU call carries" >&2; exit 1; fi
