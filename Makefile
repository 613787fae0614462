# dumpfilter entry points.  `make demo` and `make test` set up everything they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python
export DUMPFILTER_CACHE ?= $(HOME)/.cache/dumpfilter

.PHONY: setup venv host sources demo test test-full test-unit test-fast test-e2e test-e2e-full \
	test-realdump lint bench bytecode \
	bench-scale bench-guests kernels clean

setup: host venv

host:
	qemu-tests/host-setup.sh

venv: host $(VENV)/.installed

$(VENV)/.installed: userspace/pyproject.toml userspace/setup.py userspace/src/dumpfilter/_pagecodec.c
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e 'userspace[test]'
	touch $@

# Debian's kernel sources as git trees in the cache (the series check and the kernel builds).
sources:
	kernel-patches/debian-tree.sh 6.1 >/dev/null
	kernel-patches/debian-tree.sh 6.12 >/dev/null
	kernel-patches/debian-tree.sh 7.2 >/dev/null

lint: venv
	$(VENV)/bin/ruff check userspace qemu-tests
	$(VENV)/bin/ruff format --check userspace qemu-tests
	cd userspace && $(VENV)/bin/mypy

# -rs: every skip says why.
PYTEST := $(PY) -m pytest -q -rs

test-unit: venv sources
	cd userspace && $(PYTEST)

# Unit tests that need no real vmcore; the ones that do (marker realdump) run after the cycles.
test-fast: venv sources
	cd userspace && $(PYTEST) -m 'not realdump'

# The QEMU suite without the tests that need patched 6.1 and 6.12 kernels built from source
# (marker full); test-e2e-full runs all of it.
test-e2e: setup
	cd qemu-tests && $(PYTEST) -m 'not full'

test-e2e-full: setup
	cd qemu-tests && $(PYTEST)

test-realdump: venv
	cd userspace && $(PYTEST) -m realdump

# The README's test command: lint, unit tests on synthetic dumps, real kdump cycles, then the
# unit tests that read the vmcores those cycles left in the cache.
# It builds one kernel from source (the patched 7.2 with KASAN, UBSAN and lockdep); test-full
# also builds the patched 6.1 and 6.12 the same way (README, "Test time").
test: setup lint test-fast test-e2e test-realdump

test-full: setup lint test-fast test-e2e-full test-realdump

demo: setup bytecode
	$(PY) qemu-tests/demo.py

# Benchmarks time dumpfilter as an installed package runs: from bytecode.  Without this the
# editable tree is compiled at every start wherever PYTHONDONTWRITEBYTECODE is set (as on this
# project's machines) or Python runs with -B (the capture kernel of the QEMU cycles): about
# 0.05 s of CPU a run on the host, which pip and distribution packages never pay.
bytecode: $(VENV)/.installed
	$(PY) -m compileall -q userspace/src/dumpfilter

bench: setup bytecode
	$(PY) userspace/bench/run.py

# The cost curve from 1 GiB to 1 TiB of RAM (sparse synthetic vmcores, made into
# $(DUMPFILTER_CACHE)/scale; those of 256 GiB and more, 5 and 21 GiB of disk, are deleted
# once measured and made again in 15 and 80 s): 35 min on a quiet 2-CPU machine without
# Debian's makedumpfile at 1 TiB, which adds about 12; userspace/bench/SCALE.md
bench-scale: bytecode
	$(PY) userspace/bench/scale.py --drop-from 256

# Kdump cycles of 1 and 16 GiB guests (stock 6.12 + the module): dumpfilter with the kernel
# scan, with its own scan and makedumpfile 1.7.9 timed in the capture kernel, and the smallest
# crashkernel= each needs: about two hours under TCG; userspace/bench/NOTES.md
bench-guests: setup bytecode
	$(PY) qemu-tests/bench_guests.py --sizes 1G,16G --budget 1G,16G --budget-range 48,256

# Patched 6.1, 6.12 and 7.2 kernels for the QEMU tests (with KASAN, UBSAN and lockdep), cached
# by series hash (kernel-patches/README.md); `make test` builds only the 7.2 one.
kernels:
	kernel-patches/build-kernel.sh 6.1 debug
	kernel-patches/build-kernel.sh 6.12 debug
	kernel-patches/build-kernel.sh 7.2 debug

clean:
	rm -rf $(VENV)
