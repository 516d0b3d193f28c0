# `make train` and `make test` are the README's first two commands: each builds .venv first when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The lower bound of every dependency: what CI tests (pyproject.toml declares the ranges).
CONSTRAINTS := .ci/constraints-lower.txt
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export HF_EVALUATE_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup train test clean

setup: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]" -c $(CONSTRAINTS)
	touch $(STAMP)

train: setup
	$(BIN)/python train.py --output_dir outputs/btsr-ml-latest-small

test: setup
	$(BIN)/python -m pytest -q --durations=15 modeling_btsr data_processing model_cards tests

clean:
	rm -rf $(VENV) outputs
