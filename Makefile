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
# The gateway's hot path compiled with mypyc (scripts/compile_gateway.py); rebuilt when a gateway
# source changes. Without a C compiler and Python headers the gateway runs its sources.
NATIVE := $(VENV)/.gateway-native

.PHONY: demo test bench check services-start services-stop clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "make: no python3 >= 3.11 that can create a venv; install python3-venv or run make PYTHON=/path/to/python3" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,bench]'
	touch $(STAMP)

$(NATIVE): $(STAMP) $(wildcard src/gyroscope/gateway/*.py) scripts/compile_gateway.py
	$(PY) scripts/compile_gateway.py --stamp $@

## make demo: the whole platform on embedded defaults with three demo model replicas (Ctrl-C stops it).
demo: $(STAMP) $(NATIVE)
	$(VENV)/bin/gyro up --demo

## make test: install the real servers the tests need, start them, run the whole suite, stop them.
## The gateway's tests run twice: on the compiled build, then on its Python sources (but for
## gyro gateway compile's, which builds a copy of its own).
test: $(STAMP)
	scripts/services.sh install
	$(MAKE) --no-print-directory $(NATIVE)
	scripts/services.sh start
	set -o pipefail; rc=0; $(PY) -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ -z "$(PYTEST_ARGS)" ] && [ $$rc -eq 0 ]; then \
		GYRO_GATEWAY_PURE=1 $(PY) -m pytest -q tests/gateway \
			--deselect tests/gateway/test_compile_cli.py || rc=$$?; fi; \
	scripts/services.sh stop; exit $$rc

## make bench: every benchmark in bench/, each printing ratios against its anchor.
bench: $(STAMP)
	scripts/services.sh install
	$(MAKE) --no-print-directory $(NATIVE)
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
	-$(PY) scripts/compile_gateway.py --clean
	rm -rf $(VENV) .gyroscope .mypy_cache .ruff_cache .pytest_cache
