# The two commands: `make demo` (the curate flow on the bundled demo corpus) and `make test`.
VENV := .venv
export HF_HUB_OFFLINE := 1
export PYSPARK_PYTHON := $(CURDIR)/$(VENV)/bin/python

.PHONY: setup demo test lint bench
setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/bin/vlmdata demo

test: setup
	$(VENV)/bin/python -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .
