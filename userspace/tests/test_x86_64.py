"""Virtual -> physical through the dump's own page tables."""

import pytest

from dumpfilter.elfcore import ElfVmcore
from dumpfilter.errors import DumpError
from dumpfilter.x86_64 import AddressSpace, virt_reader

VARIANTS = {
    "4level-2M": dict(kernel="6.1"),
    "5level-4K-sme": dict(kernel="6.12", five_level=True, leaf="4K", sme_mask=1 << 47),
    "1G": dict(
        kernel="6.9",
        leaf="1G",
        ram=[(1, 0x9F), (0x100, 0x48000)],
        kernel_offset=0x3E000000,
        kernel_pa=0x1000000,
    ),
    "no-kaslr": dict(kernel="6.3", kernel_offset=0, kernel_pa=0x1000000),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_utsname_read_through_init_top_pgt(synth_factory, name):
    s = synth_factory(**VARIANTS[name])
    with ElfVmcore(s.path) as src:
        vi = src.vmcoreinfo
        uts = virt_reader(src)(vi.symbol("init_uts_ns") + vi.offset("uts_namespace.name"), 390)
        assert uts[:5] == b"Linux" and uts[130 : 130 + len(s.family.osrelease)] == (
            s.family.osrelease.encode()
        )
        asp = AddressSpace(src)
        assert asp.five_level == s.five_level
        # direct map and vmemmap translate to where the generator put them
        assert asp.vtop(s.page_offset + 0x123456) == 0x123456
        pa, leaf = asp.walk(s.vmemmap_base + 0x100 * 64)
        assert leaf == {"2M": 1 << 21, "4K": 1 << 12, "1G": 1 << 30}[s.leaf]


def test_kernel_image_range_found(synth61):
    with ElfVmcore(synth61.path) as src:
        assert AddressSpace(src).kernel_image_pfns() == [synth61.image_pfns]


def test_unmapped_address_is_an_error(synth61):
    with ElfVmcore(synth61.path) as src:
        with pytest.raises(DumpError, match="not mapped"):
            AddressSpace(src).vtop(0xFFFFC90000000000)
