"""The dump written in the capture kernel, read back page by page by tools we did not write
(Debian's libkdumpfile and drgn), against the raw /proc/vmcore copy of the same crash."""

from __future__ import annotations

import numpy as np
import pytest

from e2elib import RawVmcore, kdump_bitmap2, readback_drgn, readback_libkdumpfile
from kdumpvm import CycleResult


def _kept_and_excluded(cycle: CycleResult) -> tuple[RawVmcore, np.ndarray, np.ndarray]:
    raw = RawVmcore(cycle.path("vmcore"))
    kept = kdump_bitmap2(cycle.path("df31.kdump"))
    assert len(kept) == raw.max_pfn
    ram = raw.ram()
    assert not np.any(kept & ~ram), "a page outside every PT_LOAD is marked dumpable"
    return raw, kept & ram, ram & ~kept


def test_every_kept_page_reads_back_identical_with_libkdumpfile(cycle: CycleResult, tmp_path):
    cycle.check(0)
    raw, kept, excluded = _kept_and_excluded(cycle)
    readback_libkdumpfile(cycle.path("df31.kdump"), raw, kept, excluded, tmp_path)


def test_every_kept_page_reads_back_identical_with_drgn(cycle: CycleResult):
    pytest.importorskip("drgn")
    cycle.check(0)
    raw, kept, excluded = _kept_and_excluded(cycle)
    # Excluded pages: drgn reports a fault (the page is not in the dump).
    readback_drgn(cycle.path("df31.kdump"), raw, kept, excluded)
