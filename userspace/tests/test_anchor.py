"""bench/anchor.py: the 2nd bitmap the benches compare, and how they report a difference."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import anchor, run_dumpfilter
from fakes import Kdump


def packed(pfns: list[int], mapnr: int) -> np.ndarray:
    bits = np.zeros(mapnr, dtype=bool)
    bits[pfns] = True
    return np.packbits(bits, bitorder="little")


def test_equal_bitmaps_compare_equal():
    a = packed([0, 9, 100], 128)
    cmp = anchor.compare_kept(a, a.copy())
    assert cmp["equal"] and cmp["differing"] == 0
    assert anchor.describe(cmp, "ours", "theirs") == "equal"


def test_a_difference_is_counted_per_side_and_the_first_pfns_named():
    ref = packed([0x9F, 0x100, 0x101], 0x200)
    ours = packed([0x100, 0x101, 0x150, 0x1FF], 0x200)
    cmp = anchor.compare_kept(ours, ref)
    assert not cmp["equal"]
    assert (cmp["differing"], cmp["kept_by_ours_only"], cmp["kept_by_ref_only"]) == (3, 2, 1)
    assert cmp["first"] == [
        {"pfn": "0x9f", "kept_by": "ref"},
        {"pfn": "0x150", "kept_by": "ours"},
        {"pfn": "0x1ff", "kept_by": "ours"},
    ]
    text = anchor.describe(cmp, "dumpfilter", "makedumpfile 1.7.9")
    assert text.startswith("DIFFER: 3 PFNs (2 kept by dumpfilter only, 1 by makedumpfile")
    assert "0x9f (makedumpfile 1.7.9)" in text


def test_only_the_first_pfns_are_named_but_all_are_counted():
    ours = packed(list(range(0, 4096, 3)), 4096)
    cmp = anchor.compare_kept(ours, packed([], 4096))
    assert cmp["differing"] == len(range(0, 4096, 3))
    assert [d["pfn"] for d in cmp["first"]] == [hex(p) for p in range(0, 24, 3)]


def test_bitmaps_of_different_max_mapnr_never_compare_equal():
    cmp = anchor.compare_kept(packed([1], 64), packed([1], 72))
    assert not cmp["equal"] and cmp["differing"] == 0
    assert "bitmap lengths 8 / 9 bytes" in anchor.describe(cmp, "a", "b")


def test_bitmap2_is_the_kept_set_of_the_file(synth61, tmp_path):
    out = tmp_path / "dump"
    run_dumpfilter("-l", "-d", "31", str(synth61.path), str(out), check=True)
    bits = anchor.bitmap2(out)
    k = Kdump(out.read_bytes())
    assert len(bits) == (k.max_mapnr + 7) // 8
    kept = np.unpackbits(bits, bitorder="little")[: k.max_mapnr].astype(bool)
    assert kept.any() and np.array_equal(kept, k.dumpable)


def test_bitmap2_refuses_a_file_that_is_not_kdump_compressed(synth61):
    with pytest.raises(ValueError, match="not a kdump-compressed file"):
        anchor.bitmap2(synth61.path)
