# gyroscope: two commands on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
# The venv's interpreter: the distribution's CPython when it can make a venv (Debian builds it with
# PGO and LTO; the gateway spends ~30% less CPU per request on it than on a plain source build such
# as pyenv's default), else the first python3 on PATH. `make PYTHON=/path/to/python3` overrides.
PYTHON ?= $(shell for p in /usr/bin/python3 python3; do \
	$$p -c 'import ensurepip, sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& { echo $$p; break; }; done)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench check services-start services-stop clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "make: no python3 >= 3.11 that can create a venv; install python3-venv or run make PYTHON=/path/to/python3" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,bench]'
	touch $(STAMP)

## make demo: the whole platform on embedded defaults with three demo model replicas (Ctrl-C stops it).
demo: $(STAMP)
	$(VENV)/bin/gyro up --demo

## make test: install the real servers the tests need, start them, run the whole suite, stop them.
test: $(STAMP)
	scripts/services.sh install
	scripts/services.sh start
	set -o pipefail; rc=0; $(PY) -m pytest $(PYTEST_ARGS) || rc=$$?; scripts/services.sh stop; exit $$rc

## make bench: every benchmark in bench/, each printing ratios against its anchor.
bench: $(STAMP)
	scripts/services.sh install
	set -e; for f in bench/*.py; do echo "== $$f"; $(PY) $$f; done

## make check: ruff (format + lint) and mypy strict.
check: $(STAMP)
	scripts/check

services-start:
	scripts/services.sh install
	scripts/services.sh start

services-stop:
	scripts/services.sh stop

clean:
	rm -rf $(VENV) .gyroscope .mypy_cache .ruff_cache .pytest_cache
