# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv with the pinned stack first (idempotent). torch goes first, pinned: a
# range asked for by another package would pull the multi-GB CUDA build. pip is upgraded
# first: the venv's own pip backtracks for many minutes over dvc-s3/aiobotocore.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DVC_NO_ANALYTICS := 1
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install chromium postgres prometheus demo test clean peer

install: $(STAMP) chromium postgres prometheus

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q pip==26.0.1
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,cluster]'
	touch $(STAMP)

# Headless Chromium for the MLflow UI check (tests/integration): Debian's package, never a
# browser download (playwright drives /usr/bin/chromium). Skipped quietly when present.
chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing chromium (apt-get)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q chromium >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; } || \
	  { echo "error: apt-get could not install chromium" >&2; exit 1; }; \
	else \
	  echo "note: /usr/bin/chromium is missing and apt-get is unavailable (or not root):"; \
	  echo "      install Debian's 'chromium' package; until then the MLflow UI test is skipped"; \
	fi

# PostgreSQL for the scale-out rehearsal (benchmarks/rehearsal.py: MLflow and Prefect servers on it):
# Debian's package, as for chromium. Only its programs are used; no system cluster is started.
postgres:
	@if ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing postgresql (apt-get)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q postgresql >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && apt-get install -y -q postgresql >/dev/null; } || \
	  { echo "error: apt-get could not install postgresql" >&2; exit 1; }; \
	else \
	  echo "note: PostgreSQL is missing and apt-get is unavailable (or not root): install Debian's"; \
	  echo "      'postgresql' package to run benchmarks/rehearsal.py"; \
	fi

# promtool for the alert rules of infra/prometheus (tests/infra/test_operations_view.py runs
# `promtool check rules` and `promtool test rules`): Debian's prometheus package, as for chromium.
# Only /usr/bin/promtool is used; no system Prometheus is started.
prometheus:
	@if [ -x /usr/bin/promtool ] || command -v promtool >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing prometheus (apt-get, for promtool)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends prometheus >/dev/null; } || \
	  { echo "error: apt-get could not install prometheus" >&2; exit 1; }; \
	else \
	  echo "note: promtool is missing and apt-get is unavailable (or not root): install Debian's"; \
	  echo "      'prometheus' package; until then tests/infra/test_operations_view.py fails"; \
	fi

demo: install
	$(BIN)/tsfm demo

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup tests

# The benchmark peer (benchmarks/peer_autogluon.py) in a venv of its own: AutoGluon-TimeSeries is never
# a dependency of tsfm. torch first and pinned, as above; the rest frozen in benchmarks/peer-requirements.txt.
peer: .venv-peer/.installed

.venv-peer/.installed: benchmarks/peer-requirements.txt
	$(PY) -m venv .venv-peer
	.venv-peer/bin/python -m pip install -q pip==26.0.1
	.venv-peer/bin/python -m pip install -q torch==2.13.0
	.venv-peer/bin/python -m pip install -q -r benchmarks/peer-requirements.txt
	touch $@

clean:
	rm -rf $(VENV) .venv-peer
