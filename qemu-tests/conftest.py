"""Session fixtures: one real kdump cycle per kernel, shared by every check on it.

Each cycle runs dumpfilter in the capture kernel (and makedumpfile on 6.1) and keeps a raw
copy of /proc/vmcore for host-side oracles.  Cycles are cached in $DUMPFILTER_CACHE/cycles/
keyed by kernel, options, harness and dumpfilter sources (see kdumpvm.py), so re-running the
suite without changes costs no VM time.  6.1 loads the capture kernel with kexec_load, 6.12 and
7.2 (Debian sid's) with kexec_file_load (-s), so both kexec paths are exercised.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "userspace" / "bench"))

import anchor  # noqa: E402

import kdumpvm  # noqa: E402

DUMPFILTER = [str(kdumpvm.VENV_PYTHON), "-B", "-m", "dumpfilter.cli"]
DF31 = "$DUMPFILTER -d 31 -c --stats-json df31.json $VMCORE df31.kdump"
MDF31 = "$MAKEDUMPFILE -d 31 -c $VMCORE mdf31.kdump"
KERNELS = ("6.1", "6.12", "7.2")
CONFIG = {
    # kernel: (capture commands, kexec flags)
    "6.1": ([DF31, MDF31], ""),
    "6.12": ([DF31], "-s"),
    "7.2": ([DF31], "-s"),
}

_cycles: dict[str, kdumpvm.CycleResult] = {}
_classes: dict[str, np.ndarray] = {}


def main_cycle(kernel: str) -> kdumpvm.CycleResult:
    """The suite's cycle on ``kernel`` (run once per session, or taken from the cache)."""
    if kernel not in _cycles:
        cmds, flags = CONFIG[kernel]
        _cycles[kernel] = kdumpvm.run_kdump_cycle(
            kdumpvm.stock_kernel(kernel),
            capture_cmds=cmds,
            save_raw=True,
            kexec_flags=flags,
            tag="e2e",
        )
    return _cycles[kernel]


@pytest.fixture(scope="session")
def makedumpfile_179() -> str:
    """makedumpfile 1.7.9, the host-side oracle (built once into the cache by the anchors
    script beside the repository); skipped, saying why, where it cannot be had."""
    path, why = anchor.makedumpfile_179()
    if path is None:
        pytest.skip(f"makedumpfile 1.7.9: {why}")
    return path


def remember_cycle(name: str, r: kdumpvm.CycleResult) -> None:
    """List a cycle another test module ran in the session's cycle-time summary."""
    _cycles[name] = r


def host_classes(r: kdumpvm.CycleResult) -> np.ndarray:
    """dumpfilter's per-PFN PageClass for the raw vmcore of cycle ``r`` (host side), through
    the documented Python API: scan.userspace_scan(src, level).windows()."""
    key = str(r.dir)
    if key not in _classes:
        from dumpfilter import scan, source

        with source.open_source(str(r.path("vmcore"))) as src:
            c = scan.userspace_scan(src, 31)
            out = np.empty(c.max_pfn, dtype=np.uint8)
            for start, cls in c.windows():
                out[start : start + len(cls)] = cls
        _classes[key] = out
    return _classes[key]


def run_dumpfilter(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """The dumpfilter CLI on the host, as a user would run it."""
    p = subprocess.run([*DUMPFILTER, *args], capture_output=True, text=True, timeout=900)
    if check and p.returncode != 0:
        raise AssertionError(
            f"dumpfilter {' '.join(args)} exited {p.returncode}:\n"
            f"{p.stdout[-2000:]}{p.stderr[-3000:]}"
        )
    return p


@pytest.fixture(scope="session", params=KERNELS)
def cycle(request) -> kdumpvm.CycleResult:
    return main_cycle(request.param)


@pytest.fixture(scope="session")
def cycle61() -> kdumpvm.CycleResult:
    return main_cycle("6.1")


def pytest_terminal_summary(terminalreporter) -> None:
    """Report the cycle times measured in this session (the suite's VM budget)."""
    for k, r in _cycles.items():
        t = r.timings
        terminalreporter.write_line(
            f"kdump cycle {k}: total {t.get('total')} s "
            f"(capture up {t.get('capture boot')} s){' [cached]' if r.cached else ''}: {r.dir}"
        )
