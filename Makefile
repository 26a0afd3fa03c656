# gyroscope: two commands on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench check services-start services-stop clean

$(STAMP): pyproject.toml
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
