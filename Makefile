# Two commands set up a fresh machine: `make demo` (the main job) and `make test`.
# Both create .venv on first use. TORCH pins the PyTorch build Snorkel's label model
# runs on: from PyPI that is the CUDA build on Linux GPU machines and the CPU build
# elsewhere; override it, for example `make test TORCH=torch==2.9.1`.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: setup demo test clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[all,dev]"
	touch $@

demo: setup
	$(BIN)/labelflow demo

test: setup
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) labelflow-demo .pytest_cache
