"""DumpLevel: the one reading of ``-d``."""

import json

import numpy as np
import pytest

from dumpfilter.dumplevel import DumpLevel
from dumpfilter.pageclass import PageClass as C


def test_only_bit_1_asks_the_writers_to_test_for_zero_pages():
    assert [lv for lv in range(32) if DumpLevel(lv).tests_zero_pages] == list(range(1, 32, 2))


def test_the_kernel_interface_is_asked_for_the_classes_the_level_leaves_out():
    always = 1 << C.HWPOISON | 1 << C.OFFLINE
    assert DumpLevel(0).kernel_request() == DumpLevel(DumpLevel.ZERO).kernel_request() == always
    assert DumpLevel(DumpLevel.CACHE).kernel_request() == always | 1 << C.CACHE
    both = 1 << C.CACHE | 1 << C.CACHE_PRIVATE
    assert DumpLevel(DumpLevel.CACHE_PRIVATE).kernel_request() == always | both
    assert DumpLevel(DumpLevel.USER | DumpLevel.FREE).kernel_request() == (
        always | 1 << C.USER | 1 << C.FREE
    )
    # every level: exactly the classes its keep table leaves out, holes and zeros aside
    for lv in range(32):
        t = DumpLevel(lv).keep_table()
        mask = DumpLevel(lv).kernel_request()
        assert all(bool(mask >> c & 1) == (not t[c]) for c in range(C.CACHE, C.OFFLINE + 1))
        assert not mask & (1 << C.KEEP | 1 << C.HOLE | 1 << C.ZERO)


@pytest.mark.parametrize("value", [-1, 32, 1 << 40])
def test_a_level_outside_0_to_31_is_refused(value):
    with pytest.raises(ValueError, match="out of range"):
        DumpLevel(value)


def test_the_private_cache_bit_excludes_all_page_cache_as_makedumpfile_does():
    t = DumpLevel(DumpLevel.CACHE_PRIVATE).keep_table()
    assert not t[C.CACHE] and not t[C.CACHE_PRIVATE] and t[C.USER] and t[C.FREE]


def test_a_level_is_still_its_number_in_reports_and_json():
    lv = DumpLevel(31)
    assert lv == 31 and f"{lv}" == "31" and json.dumps({"d": lv}) == '{"d": 31}'


def test_kept_answers_as_the_keep_table_for_every_level_and_class():
    classes = np.array([int(c) for c in C] * 3, dtype=np.uint8)
    for lv in range(32):
        level = DumpLevel(lv)
        got = level.kept(classes)
        assert got.dtype == bool
        assert got.tolist() == level.keep_table()[classes].tolist()
