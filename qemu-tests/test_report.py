"""The --show-stats report equals makedumpfile 1.7.9's on a real 6.1 crash, line for line.

Both run on the host on the raw copy of the cycle's /proc/vmcore.  "Original pages" counts the
kernel-text PT_LOAD a second time there (kexec_file_load maps it again), so it, "Memory Hole"
and the percentage are the lines that differed before the report followed makedumpfile's
arithmetic.

The page a PT_LOAD holds only in part (the first range ends at 0x9fc00) counts as RAM with data
in both, the rule 1.7.9 brought (test_makedumpfile.py).
"""

from __future__ import annotations

import subprocess

import pytest

from conftest import run_dumpfilter
from kdumpvm import CycleResult


def _report(stdout: str) -> dict[str, str]:
    """The report's lines from "Original pages" to "Write bytes", by name."""
    lines = stdout.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("Original pages"))
    end = next(i for i, ln in enumerate(lines) if ln.startswith("Write bytes"))
    out = {}
    for ln in lines[start : end + 1]:
        if ln.startswith("---"):
            continue
        key, _, value = ln.partition(":") if ":" in ln else (ln.strip(), "", "")
        out[key.strip()] = value.strip()
    return out


def ours_ram(stdout: str) -> str:
    """Our own "RAM pages" line (each PFN once), printed after makedumpfile's lines."""
    return next(ln for ln in stdout.splitlines() if ln.startswith("RAM pages")).split(":")[1]


@pytest.mark.parametrize("args", [["-d", "31", "-l"], ["-d", "1"], ["--dry-run", "-d", "31"]])
def test_report_equals_makedumpfile_179(cycle61: CycleResult, makedumpfile_179, tmp_path, args):
    vmcore = str(cycle61.path("vmcore"))
    m = subprocess.run(
        [makedumpfile_179, *args, "--show-stats", vmcore, str(tmp_path / "mdf")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert m.returncode == 0, m.stdout[-1000:] + m.stderr[-2000:]
    d = run_dumpfilter(*args, "--show-stats", vmcore, str(tmp_path / "df"))
    theirs, ours = _report(m.stdout), _report(d.stdout)
    assert ours == theirs
    # the lines scripts read most: RAM, holes and the share kept, which once differed
    assert int(theirs["Original pages"], 16) > int(ours_ram(d.stdout), 16)
