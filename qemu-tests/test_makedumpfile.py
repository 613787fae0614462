"""Kept PFNs equal makedumpfile 1.7.2's on the same 6.1 crash, at every single-class level.

Oracle: makedumpfile (not written here), compared through the 2nd bitmap of both kdump files
(docs/kdump-compressed.md §4). In the capture kernel both tools ran on
/proc/vmcore at -d 31; on the host both run on the raw copy of that vmcore at each level.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from conftest import run_dumpfilter
from e2elib import kdump_bitmap1, kdump_bitmap2, kpageflags
from kdumpvm import CycleResult

MAKEDUMPFILE = "/usr/bin/makedumpfile"


def _explain(ours: np.ndarray, theirs: np.ndarray, flags: np.ndarray) -> str:
    only_ours = np.flatnonzero(ours & ~theirs)
    only_theirs = np.flatnonzero(theirs & ~ours)

    def show(pfns: np.ndarray) -> str:
        return ", ".join(
            f"{p}(kpf={int(flags[p]):#x})" if p < len(flags) else str(p) for p in pfns[:8]
        )

    return (
        f"kept only by dumpfilter: {len(only_ours)} [{show(only_ours)}]; "
        f"kept only by makedumpfile: {len(only_theirs)} [{show(only_theirs)}]"
    )


def test_capture_kernel_kept_pfns_equal_makedumpfile_at_d31(cycle61: CycleResult):
    cycle61.check(0)
    cycle61.check(1)
    ours = kdump_bitmap2(cycle61.path("df31.kdump"))
    theirs = kdump_bitmap2(cycle61.path("mdf31.kdump"))
    assert len(ours) == len(theirs)
    assert np.array_equal(ours, theirs), _explain(
        ours, theirs, kpageflags(cycle61.path("kpageflags"))
    )


def test_capture_kernel_ram_bitmap_equals_makedumpfile(cycle61: CycleResult):
    """The 1st bitmap (which PFNs are RAM) matches, partial pages at PT_LOAD edges included."""
    cycle61.check(0)
    cycle61.check(1)
    ours = kdump_bitmap1(cycle61.path("df31.kdump"))
    theirs = kdump_bitmap1(cycle61.path("mdf31.kdump"))
    assert np.array_equal(ours, theirs), (
        f"RAM only in ours: {np.flatnonzero(ours & ~theirs)[:10]}, "
        f"only in makedumpfile's: {np.flatnonzero(theirs & ~ours)[:10]}"
    )


@pytest.mark.parametrize("level", [1, 2, 4, 8, 16, 31])
def test_kept_pfns_equal_makedumpfile(cycle61: CycleResult, level: int, tmp_path):
    vmcore = str(cycle61.path("vmcore"))
    mdf = tmp_path / f"mdf{level}.kdump"
    p = subprocess.run(
        [MAKEDUMPFILE, "-l", "-d", str(level), vmcore, str(mdf)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stdout[-1000:] + p.stderr[-2000:]
    ours_file = tmp_path / f"df{level}.kdump"
    run_dumpfilter("-l", "-d", str(level), vmcore, str(ours_file))
    ours, theirs = kdump_bitmap2(ours_file), kdump_bitmap2(mdf)
    assert len(ours) == len(theirs)
    assert np.array_equal(ours, theirs), _explain(
        ours, theirs, kpageflags(cycle61.path("kpageflags"))
    )
