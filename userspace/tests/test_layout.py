"""layout: the rules both scans apply on top of the per-page verdicts."""

from __future__ import annotations

import numpy as np
import pytest

from dumpfilter.layout import blank_window, mark_holes
from dumpfilter.pageclass import PageClass


@pytest.mark.parametrize("seed", range(20))
def test_pfns_outside_every_ram_range_become_holes_and_the_rest_is_untouched(seed):
    """Ranges unsorted, overlapping, inside, across or outside the window."""
    rng = np.random.default_rng(seed)
    w0 = int(rng.integers(0, 500))
    n = int(rng.integers(1, 400))
    ranges = []
    for _ in range(int(rng.integers(0, 6))):
        a = int(rng.integers(0, 1000))
        ranges.append((a, a + int(rng.integers(0, 300))))
    before = rng.integers(0, 7, size=n).astype(np.uint8)
    ram = np.zeros(n, bool)
    for a, b in ranges:
        ram[max(a - w0, 0) : max(min(b - w0, n), 0)] = True
    want = np.where(ram, before, np.uint8(PageClass.HOLE))
    out = before.copy()
    mark_holes(ranges, w0, out)
    assert np.array_equal(out, want)
    blank = blank_window(ranges, w0, w0 + n)
    assert np.array_equal(blank, np.where(ram, np.uint8(PageClass.KEEP), want))
