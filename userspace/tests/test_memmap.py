"""mem_section -> physically contiguous mem_map chunks."""

import dumpdamage
import numpy as np
import pytest

from dumpfilter.elfcore import ElfVmcore
from dumpfilter.errors import DumpError
from dumpfilter.memmap import mem_map_chunks, present_sections, section_flag_mask
from dumpfilter.vmcoreinfo import VmcoreInfo
from dumpfilter.x86_64 import AddressSpace, Unmapped


def test_contiguous_vmemmap_gives_one_chunk_per_run(synth61):
    with ElfVmcore(synth61.path) as src:
        secs = present_sections(src, AddressSpace(src))
        assert [s for s, _ in secs] == [0, 1, 2]
        assert all(coded == synth61.vmemmap_base for _, coded in secs)
        chunks = mem_map_chunks(src)
    assert [(c.start_pfn, c.nr_pages) for c in chunks] == [(0, 3 * 32768)]


def test_struct_pages_at_the_chunk_address_are_the_placed_ones(synth_factory):
    s = synth_factory(kernel="6.10", leaf="4K")
    with ElfVmcore(s.path) as src:
        chunks = mem_map_chunks(src)
        assert len(chunks) > 100  # shuffled 4 KiB vmemmap pages: 64 struct pages each
        assert sum(c.nr_pages for c in chunks) == 3 * 32768
        for c in chunks[::97]:
            raw = src.phys_array(c.paddr, c.nr_pages * 64).reshape(-1, 64)
            mc = raw.view(np.uint32)[:, 12]
            buddy = np.flatnonzero(mc == s.family.buddy) + c.start_pfn
            assert all(s.kind[b] == 6 for b in buddy)  # K_BUDDY


def test_sections_without_ram_are_absent(synth_factory):
    s = synth_factory(kernel="6.9", ram=[(1, 0x9F), (0x100, 0x8000), (0x18000, 0x20000)])
    with ElfVmcore(s.path) as src:
        starts = [c.start_pfn for c in mem_map_chunks(src)]
    assert 0x8000 not in starts and all(not 0x8000 <= p < 0x10000 for p in starts)


def test_section_map_last_bit_masks_exactly_the_exported_flags(synth_factory):
    # a 6th flag (bit 5, as 6.15's) is masked when SECTION_MAP_LAST_BIT=6 says so
    s = synth_factory(kernel="6.1", patched=True, section_flags=0x2F, section_map_last_bit=6)
    with ElfVmcore(s.path) as src:
        secs = present_sections(src, AddressSpace(src))
    assert secs and all(coded == s.vmemmap_base for _, coded in secs)
    # with LAST_BIT=5 bit 5 is part of the address: it no longer matches SYMBOL(vmemmap)
    s = synth_factory(kernel="6.1", patched=True, section_flags=0x2F, section_map_last_bit=5)
    with ElfVmcore(s.path) as src, pytest.raises(DumpError, match="SYMBOL\\(vmemmap\\)"):
        present_sections(src, AddressSpace(src))


def test_section_flag_mask_prefers_the_export_and_falls_back_to_the_section_shift():
    def vi(extra):
        return VmcoreInfo.parse(f"PAGESIZE=4096\n{extra}")

    assert section_flag_mask(vi("NUMBER(SECTION_MAP_LAST_BIT)=6"), 15) == 0x3F
    assert section_flag_mask(vi(""), 15) == 0x7FFF
    with pytest.raises(DumpError, match="SECTION_MAP_LAST_BIT"):
        section_flag_mask(vi("NUMBER(SECTION_MAP_LAST_BIT)=1"), 15)


def test_vmemmap_symbol_disagreeing_with_mem_section_is_a_dump_error(synth_factory):
    s = synth_factory(kernel="6.1", patched=True, vmemmap_symbol=0xFFFFEA0040000000)
    with ElfVmcore(s.path) as src, pytest.raises(DumpError, match="corrupt mem_section"):
        mem_map_chunks(src)


@pytest.fixture(scope="module")
def small(synth_factory):
    return synth_factory(kernel="6.1", ram=[(1, 0x9F), (0x100, 0x6000)])


def _with(small, tmp_path, key, value):
    path = str(tmp_path / "vmcore")
    dumpdamage.sparse_copy(small.path, path)
    dumpdamage.set_vmcoreinfo(path, key, value)
    return path


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("NUMBER(SECTION_SIZE_BITS)", "0", "SECTION_SIZE_BITS"),
        ("NUMBER(SECTION_SIZE_BITS)", "-1", "SECTION_SIZE_BITS"),
        ("NUMBER(SECTION_SIZE_BITS)", "45", "SECTION_SIZE_BITS"),
        ("NUMBER(SECTION_SIZE_BITS)", "9" * 29, "SECTION_SIZE_BITS"),
        ("OFFSET(mem_section.section_mem_map)", "-8", "section_mem_map"),
        ("OFFSET(mem_section.section_mem_map)", "16", "section_mem_map"),
        ("SIZE(mem_section)", "8192", "SIZE\\(mem_section\\)"),
        ("LENGTH(mem_section)", "1000000", "LENGTH\\(mem_section\\)"),
        ("NUMBER(MAX_PHYSMEM_BITS)", "64", "MAX_PHYSMEM_BITS"),
    ],
)
def test_mem_section_values_x86_64_never_has_are_named(small, tmp_path, key, value, message):
    with ElfVmcore(_with(small, tmp_path, key, value)) as src:
        with pytest.raises(DumpError, match=message) as e:
            mem_map_chunks(src)
    assert "\n" not in str(e.value)


def test_an_unmapped_walk_says_how_much_around_it_is_unmapped(small):
    with ElfVmcore(small.path) as src:
        asp = AddressSpace(src)
        # far beyond the vmemmap of 96 MiB: its PUD (or PGD) entry is not present
        with pytest.raises(Unmapped) as e:
            asp.walk(small.vmemmap_base + (300 << 30))
    assert e.value.size >= 1 << 30
