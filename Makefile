# Two commands set up a fresh machine: `make demo` (the main job) and `make test`.
# Both create .venv on first use. TORCH pins the PyTorch build: from PyPI that is the
# CUDA build on Linux GPU machines and the CPU build elsewhere; override it, for
# example `make test TORCH=torch==2.9.1`.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
# llama-cpp-python (the llama.cpp server the FM tests start) builds from source, about
# 6-12 minutes; its wheel is kept in WHEELS so a later setup on the machine reuses it.
LLAMA_VERSION ?= 0.3.36
WHEELS ?= $(HOME)/.cache/labelflow/wheels
BIN := $(VENV)/bin
# The Label Studio server the round-trip test starts; it pins its own Django stack, so it gets a venv of its own.
STUDIO_VENV ?= .venv-studio
LABEL_STUDIO ?= label-studio==1.23.2
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup demo test chromium clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[all,dev]"
	touch $@

$(VENV)/.llama: $(VENV)/.installed
	mkdir -p $(WHEELS)
	ls $(WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1 || \
		$(BIN)/python -m pip wheel --quiet --no-deps -w $(WHEELS) "llama-cpp-python==$(LLAMA_VERSION)"
	$(BIN)/python -m pip install --quiet --find-links $(WHEELS) "llama-cpp-python[server]==$(LLAMA_VERSION)"
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

test: setup $(VENV)/.llama chromium $(STUDIO_VENV)/.installed
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) $(STUDIO_VENV) labelflow-demo .pytest_cache test-artifacts
