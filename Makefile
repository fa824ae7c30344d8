# make up    install into .venv when needed, then run the whole studio (Ctrl-C stops it)
# make test  the whole test suite, then the benchmarks' quick modes
#
# PYTHON picks the interpreter for the virtual environment; STUDIO_ARGS goes
# to `studio up`, e.g. make up STUDIO_ARGS="--port 9000".

PYTHON ?= python3.11
VENV := .venv
# Touched after a successful install: pip runs again only when pyproject.toml changes.
STAMP := $(VENV)/.installed
STUDIO_ARGS ?=

.PHONY: up install test clean-venv

up: $(STAMP)
	$(VENV)/bin/studio up $(STUDIO_ARGS)

install: $(STAMP)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# torch goes first and pinned, so that pip takes the CPU build and never
# resolves a CUDA build as a dependency of something else.
$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/pip install torch==2.13.0
	$(VENV)/bin/pip install -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(VENV)/bin/pytest
	$(VENV)/bin/python bench/overhead.py --quick
	$(VENV)/bin/python bench/stream.py --quick
	$(VENV)/bin/python bench/hpo.py --quick

clean-venv:
	rm -rf $(VENV)
