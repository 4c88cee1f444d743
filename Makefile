# `make test` and `make demo` work on a fresh machine: they create .venv on first use,
# install mixlab editable with all its extras and the dev tools, and skip the install
# when nothing changed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mixlab-installed
export MPLBACKEND ?= Agg

.PHONY: test demo lint format bench gpu-check system-deps clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	# torch and torchvision pinned exactly; pip takes both from this machine's disk.
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[all,dev]'
	touch $@

# PostgreSQL server binaries and Chromium for the integration tests: installed when
# missing and we are root; otherwise the tests that need them say what is missing.
system-deps:
	@bash scripts/system-deps.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The tests run the Triton kernels on CPU tensors through Triton's interpreter (no GPU
# here, nor in CI); on a CUDA machine: make test TRITON_INTERPRET=0 MIXLAB_TEST_DEVICE=cuda
TRITON_INTERPRET ?= 1
test: $(STAMP) system-deps lint
	TRITON_INTERPRET=$(TRITON_INTERPRET) $(VENV)/bin/pytest -n 2 tests

# On a machine with a CUDA GPU: the tests on the GPU and `mixlab bench --device cuda`,
# into reports/bench/gpu/ in under 8 minutes (scripts/gpu-check.sh).
gpu-check: $(STAMP)
	bash scripts/gpu-check.sh

bench: $(STAMP)
	$(VENV)/bin/pytest bench/ --benchmark-only

demo: $(STAMP)
	$(VENV)/bin/mixlab demo

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .benchmarks
