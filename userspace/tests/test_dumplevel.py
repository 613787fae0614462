"""DumpLevel: the one reading of ``-d``."""

import json

import pytest

from dumpfilter.dumplevel import DumpLevel
from dumpfilter.pageclass import PageClass as C


def test_only_bit_1_asks_the_writers_to_test_for_zero_pages():
    assert [lv for lv in range(32) if DumpLevel(lv).tests_zero_pages] == list(range(1, 32, 2))


def test_the_kernel_interface_is_asked_for_the_level_bits_as_they_are():
    assert [DumpLevel(lv).kernel_request() for lv in (0, 1, 16, 31)] == [0, 1, 16, 31]


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
