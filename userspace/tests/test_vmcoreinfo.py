"""VMCOREINFO parsing: the kernel's formats (docs/page-types.md §1)."""

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


@pytest.mark.parametrize(
    "line, key",
    [
        ("OFFSET(page.mapping)=-24", "OFFSET(page.mapping)"),
        ("SIZE(page)=4294967296", "SIZE(page)"),
        ("LENGTH(zone.free_area)=-1", "LENGTH(zone.free_area)"),
        ("NUMBER(SECTION_SIZE_BITS)=" + "9" * 29, "NUMBER(SECTION_SIZE_BITS)"),
        ("SYMBOL(prb)=-ffff", "SYMBOL(prb)"),
    ],
)
def test_values_out_of_their_c_types_range_are_named(line, key):
    vi = VmcoreInfo.parse(f"PAGESIZE=4096\n{line}\n".encode())
    kind, _, name = key.partition("(")
    with pytest.raises(DumpError, match="out of range") as e:
        vi.opt(kind, name[:-1])
    assert key in str(e.value)


@pytest.mark.parametrize("ps", ["8192", "65536", str(1 << 40)])
def test_page_sizes_other_than_x86_64s_are_refused(ps):
    with pytest.raises(DumpError, match=f"PAGESIZE={ps}"):
        _ = VmcoreInfo.parse(f"PAGESIZE={ps}\n".encode()).page_size


def test_a_value_with_a_newline_or_many_digits_stays_one_short_line():
    vi = VmcoreInfo.parse(b"PAGESIZE=4096\nSIZE(page)=6\x014" + b"7" * 200 + b"\n")
    with pytest.raises(DumpError) as e:
        vi.size("page")
    assert "\n" not in str(e.value) and "\x01" not in str(e.value) and len(str(e.value)) < 100
