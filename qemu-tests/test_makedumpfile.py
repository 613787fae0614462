"""Kept PFNs equal makedumpfile 1.7.9's on 6.1 and 6.12 at every single-class level, and
makedumpfile 1.7.2's on the same 6.1 crash but for one rule 1.7.9 changed; on 7.2, where
1.7.9 and dumpfilter differ, /proc/kpageflags decides.

The rule: a RAM page a PT_LOAD holds only in part (6.1's kexec_load header ends the first range
at 0x9fc00, inside PFN 0x9f) holds data all the same.  makedumpfile 1.7.9 and dumpfilter dump
it (the missing bytes as zeros) and judge it like any other page; 1.7.2 left it out at every
level.  kexec_file_load (6.12, 7.2) makes no such range.

Oracle: makedumpfile (not written here), compared through the 2nd bitmap of both kdump files
(docs/kdump-compressed.md §4). In the capture kernel both tools ran on
/proc/vmcore at -d 31; on the host both run on the raw copy of that vmcore at each level.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from conftest import main_cycle, run_dumpfilter
from e2elib import KPF, has, kdump_bitmap1, kdump_bitmap2, kpageflags
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


def _pfns_partly_in_a_load(vmcore: str) -> set[int]:
    from dumpfilter.elfcore import ElfVmcore

    with ElfVmcore(vmcore) as src:
        ps = src.page_size
        out = set()
        for ld in src.loads:
            if ld.paddr % ps:
                out.add(ld.paddr // ps)
            if (ld.paddr + ld.filesz) % ps:
                out.add((ld.paddr + ld.filesz) // ps)
        return out


def _equal_but_partly_loaded(ours: np.ndarray, theirs: np.ndarray, cycle: CycleResult) -> None:
    """``ours`` equals makedumpfile 1.7.2's 2nd bitmap ``theirs`` except for pages a PT_LOAD
    holds in part, which only 1.7.2 leaves out."""
    assert len(ours) == len(theirs)
    flags = kpageflags(cycle.path("kpageflags"))
    assert not np.any(theirs & ~ours), _explain(ours, theirs, flags)
    only_ours = set(np.flatnonzero(ours & ~theirs).tolist())
    assert only_ours <= _pfns_partly_in_a_load(str(cycle.path("vmcore"))), _explain(
        ours, theirs, flags
    )


def test_capture_kernel_kept_pfns_equal_makedumpfile_at_d31(cycle61: CycleResult):
    cycle61.check(0)
    cycle61.check(1)
    ours = kdump_bitmap2(cycle61.path("df31.kdump"))
    theirs = kdump_bitmap2(cycle61.path("mdf31.kdump"))
    _equal_but_partly_loaded(ours, theirs, cycle61)


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
    _equal_but_partly_loaded(ours, theirs, cycle61)


# ---------------------------------------------------------------- makedumpfile 1.7.9
#
# The oracle on the host, on the raw vmcore of each kernel's main cycle.


def _both_179(cycle: CycleResult, makedumpfile_179: str, level: int, tmp_path) -> tuple:
    vmcore = str(cycle.path("vmcore"))
    mdf = tmp_path / f"mdf{level}.kdump"
    p = subprocess.run(
        [makedumpfile_179, "-l", "-d", str(level), vmcore, str(mdf)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert p.returncode == 0, p.stdout[-1000:] + p.stderr[-2000:]
    ours_file = tmp_path / f"df{level}.kdump"
    run_dumpfilter("-l", "-d", str(level), vmcore, str(ours_file))
    ours, theirs = kdump_bitmap2(ours_file), kdump_bitmap2(mdf)
    assert len(ours) == len(theirs)
    return vmcore, ours, theirs


@pytest.mark.parametrize("level", [1, 2, 4, 8, 16, 31])
@pytest.mark.parametrize("kernel", ["6.1", "6.12"])
def test_kept_pfns_equal_makedumpfile_179(kernel: str, level: int, makedumpfile_179: str, tmp_path):
    cycle = main_cycle(kernel)
    vmcore, ours, theirs = _both_179(cycle, makedumpfile_179, level, tmp_path)
    assert np.array_equal(ours, theirs), _explain(
        ours, theirs, kpageflags(cycle.path("kpageflags"))
    )
    # 6.1's crash is the one with a page a PT_LOAD holds in part: the rule is exercised
    assert bool(_pfns_partly_in_a_load(vmcore)) == (kernel == "6.1")


@pytest.mark.parametrize("level", [8, 31])
def test_on_72_makedumpfile_179_drops_only_compound_tails_kpageflags_calls_kernel_memory(
    level: int, makedumpfile_179: str, tmp_path
):
    """1.7.9 predates 7.1's OFFSET(page.compound_info): on 7.2 it excludes some tail pages of
    compound pages as user data.  Every page it drops and we keep must be a tail that
    /proc/kpageflags shows is neither anonymous nor on an LRU list (slab tails, mostly); it
    keeps nothing we drop."""
    cycle = main_cycle("7.2")
    _, ours, theirs = _both_179(cycle, makedumpfile_179, level, tmp_path)
    flags = kpageflags(cycle.path("kpageflags"))
    assert not np.any(theirs & ~ours), _explain(ours, theirs, flags)
    only_ours = np.flatnonzero(ours & ~theirs)
    f = flags[only_ours]
    assert has(f, KPF.COMPOUND_TAIL).all(), _explain(ours, theirs, flags)
    assert not (has(f, KPF.ANON) | has(f, KPF.LRU) | has(f, KPF.HUGE)).any()


@pytest.mark.parametrize("level", [1, 2, 4, 16])
def test_on_72_levels_without_user_data_equal_makedumpfile_179(
    level: int, makedumpfile_179, tmp_path
):
    _, ours, theirs = _both_179(main_cycle("7.2"), makedumpfile_179, level, tmp_path)
    assert np.array_equal(ours, theirs)
