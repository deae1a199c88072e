# Two commands set up a fresh machine: `make demo` (the main job) and `make test`.
# Both create .venv on first use. TORCH pins the PyTorch build: from PyPI that is the
# CUDA build on Linux GPU machines and the CPU build elsewhere; override it, for
# example `make test TORCH=torch==2.9.1`.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
# The OpenAI-provider tests serve Gemma with `transformers serve` (the dev extra): no compile.
# `make test-llama` adds the llama.cpp server tests (scoring from the server's log-probabilities):
# llama-cpp-python has no wheel on PyPI and builds from source, 6-12 minutes on 2 cores. It is
# built portable (AVX2, no AVX-512 or AMX kernels: a native build segfaulted on Gemma's first
# evaluation on an AMX Xeon) with pip's cache off, since pip would hand back a wheel built with
# other CMAKE_ARGS; the wheel is kept in WHEELS/portable for the machine's later setups.
LLAMA_VERSION ?= 0.3.36
WHEELS ?= $(HOME)/.cache/labelflow/wheels
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
BIN := $(VENV)/bin
# The Label Studio server the round-trip test starts; it pins its own Django stack, so it gets a venv of its own.
STUDIO_VENV ?= .venv-studio
LABEL_STUDIO ?= label-studio==1.23.2
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup demo test test-llama chromium clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[all,dev]"
	touch $@

$(VENV)/.llama: $(VENV)/.installed
	mkdir -p $(WHEELS)/portable
	ls $(WHEELS)/portable/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1 || \
		CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip wheel --quiet --no-cache-dir --no-deps \
			-w $(WHEELS)/portable "llama-cpp-python==$(LLAMA_VERSION)"
	$(BIN)/python -m pip install --quiet --only-binary llama-cpp-python --find-links $(WHEELS)/portable \
		"llama-cpp-python[server]==$(LLAMA_VERSION)"
	touch $@

demo: setup
	$(BIN)/labelflow demo

# The app's browser test drives the system Chromium (Debian's `chromium` package) through Playwright.
chromium:
	command -v chromium >/dev/null || ($(SUDO) apt-get update && $(SUDO) apt-get install -y chromium)

$(STUDIO_VENV)/.installed:
	$(PYTHON) -m venv $(STUDIO_VENV)
	$(STUDIO_VENV)/bin/python -m pip install --quiet "$(LABEL_STUDIO)"
	touch $@

test: setup chromium $(STUDIO_VENV)/.installed
	$(BIN)/python -m pytest

test-llama: $(VENV)/.llama
	$(BIN)/python -m pytest tests/fm/test_openai_provider.py -k llama

clean:
	rm -rf $(VENV) $(STUDIO_VENV) labelflow-demo .pytest_cache test-artifacts
