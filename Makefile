# The two commands a new user needs (README): `make run` and `make test`. Both install first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export CRSBENCH_DATA ?= $(abspath ../shared/data)

.PHONY: install run test test-fast bench

$(VENV)/.installed: setup.py requirements-torch.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements-torch.txt
	$(BIN)/pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

# The main job: every model on ReDial with a small budget (sweeps/quick.yaml, ~10 minutes on a
# 2-core CPU), then the comparison table. `make run MODEL=kgsf` trains one model fully instead.
MODEL ?=
DATASET ?= redial
run: install
ifeq ($(MODEL),)
	$(BIN)/crsbench sweep sweeps/quick.yaml
else
	$(BIN)/crsbench run --model $(MODEL) --dataset $(DATASET)
	$(BIN)/crsbench compare --dataset $(DATASET)
endif

# The whole suite, as CI runs it; the 15 slowest tests are listed at the end.
test: install
	$(BIN)/python -m pytest -q --durations=15 tests

# Everything but the slow integration tests (marked `slow`), for development.
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow" tests

bench: install
	$(BIN)/python benchmarks/preprocessing.py
