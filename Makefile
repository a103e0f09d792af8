# The two commands a new user needs (README): `make run` and `make test`. Both install first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export CRSBENCH_DATA ?= $(abspath ../shared/data)

.PHONY: install run test bench

$(VENV)/.installed: setup.py requirements-torch.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements-torch.txt
	$(BIN)/pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

# The main job: train/evaluate a model on the real data, then print the comparison table.
MODEL ?= popularity
DATASET ?= redial
run: install
	$(BIN)/crsbench run --model $(MODEL) --dataset $(DATASET)
	$(BIN)/crsbench compare --dataset $(DATASET)

test: install
	$(BIN)/python -m pytest -q tests

bench: install
	$(BIN)/python benchmarks/preprocessing.py
