# dumpfilter entry points.  `make demo` and `make test` set up everything they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python
export DUMPFILTER_CACHE ?= $(HOME)/.cache/dumpfilter

.PHONY: setup venv host demo test test-unit test-e2e lint bench bench-scale kernels clean

setup: host venv

host:
	qemu-tests/host-setup.sh

venv: host $(VENV)/.installed

$(VENV)/.installed: userspace/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e 'userspace[test]'
	touch $@

lint: venv
	$(VENV)/bin/ruff check userspace qemu-tests
	$(VENV)/bin/ruff format --check userspace qemu-tests

test-unit: venv
	cd userspace && $(PY) -m pytest -q

test-e2e: setup
	cd qemu-tests && $(PY) -m pytest -q

# The README's test command: lint, unit tests on synthetic dumps, then real kdump cycles.
test: setup lint test-unit test-e2e

demo: setup
	$(PY) qemu-tests/demo.py

bench: setup
	$(PY) userspace/bench/run.py

# The cost curve from 1 GiB to 1 TiB of RAM (sparse synthetic vmcores, made once into
# $(DUMPFILTER_CACHE)/scale): an hour or more; userspace/bench/SCALE.md
bench-scale: $(VENV)/.installed
	$(PY) userspace/bench/scale.py

# Patched 6.1 and 6.12 kernels for the QEMU tests, cached by series hash (kernel-patches/README.md).
kernels:
	kernel-patches/build-kernel.sh 6.1
	kernel-patches/build-kernel.sh 6.12

clean:
	rm -rf $(VENV)
