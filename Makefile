# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv with the pinned stack first (idempotent; see STACK.md for why
# torch goes first and pip is upgraded before resolving).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DVC_NO_ANALYTICS := 1
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install demo test clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q pip==26.0.1
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/tsfm demo

test: install
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV)
