"""VMCOREINFO parsing: the kernel's formats (kernel-page-types.md §1)."""

import pytest

from dumpfilter.errors import DumpError
from dumpfilter.vmcoreinfo import VmcoreInfo

TEXT = b"""OSRELEASE=6.1.0-56-amd64
PAGESIZE=4096
SYMBOL(init_top_pgt)=ffffffff9a200000
SIZE(page)=64
OFFSET(page._mapcount)=48
LENGTH(zone.free_area)=11
NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-129
NUMBER(PAGE_SLAB_MAPCOUNT_VALUE)=4261412863
NUMBER(VMALLOC_START)=0xffffc90000000000
NUMBER(phys_base)=-371195904
KERNELOFFSET=18200000
CRASHTIME=1764130000
\0\0"""


def test_typed_values_in_each_format():
    vi = VmcoreInfo.parse(TEXT)
    assert vi.osrelease == "6.1.0-56-amd64" and vi.page_size == 4096
    assert vi.symbol("init_top_pgt") == 0xFFFFFFFF9A200000
    assert vi.size("page") == 64 and vi.offset("page._mapcount") == 48
    assert vi.length("zone.free_area") == 11
    assert vi.number("PAGE_BUDDY_MAPCOUNT_VALUE") == -129
    assert vi.number("VMALLOC_START") == 0xFFFFC90000000000
    assert vi.kernel_offset == 0x18200000


def test_page_type_values_are_masked_to_u32_signed_or_not():
    vi = VmcoreInfo.parse(TEXT)
    assert vi.number_u32("PAGE_BUDDY_MAPCOUNT_VALUE") == 0xFFFFFF7F
    assert vi.number_u32("PAGE_SLAB_MAPCOUNT_VALUE") == 0xFDFFFFFF  # 6.10 may print unsigned


def test_missing_key_names_it():
    vi = VmcoreInfo.parse(TEXT)
    with pytest.raises(DumpError, match=r"NUMBER\(PG_lru\)"):
        vi.number("PG_lru")
    assert vi.opt("NUMBER", "PG_lru") is None
    assert vi.opt("SIZE", "page") == 64


def test_garbage_value_is_a_clear_error():
    vi = VmcoreInfo.parse(b"PAGESIZE=4096\nSIZE(page)=sixty-four\n")
    with pytest.raises(DumpError, match="not a number"):
        vi.size("page")
    with pytest.raises(DumpError, match="power of two"):
        _ = VmcoreInfo.parse(b"PAGESIZE=4095\n").page_size


def test_raw_mapping_is_exposed_for_other_readers():
    vi = VmcoreInfo.parse(TEXT)
    assert vi.raw["CRASHTIME"] == "1764130000" and "SIZE(page)" in vi
