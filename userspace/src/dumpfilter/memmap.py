"""mem_section -> mem_map chunks ``(start_pfn, nr_pages, struct_page_paddr)``.

SPARSEMEM_EXTREME (docs/page-types.md §6.1): ``SYMBOL(mem_section)`` is the root array of
``LENGTH(mem_section)`` pointers; each root points at ``PAGESIZE / SIZE(mem_section)``
sections; a present section's ``section_mem_map`` holds the mem_map address minus the
section's first PFN, with flag bits in its low bits.  With SPARSEMEM_VMEMMAP (always on
x86_64) that coded value is vmemmap_base, which KASLR aligns to a PUD, so clearing the low
PFN_SECTION_SHIFT bits removes every flag, including the 6th bit makedumpfile's fixed ``~0x1f``
mask misses.

The struct pages of a section are then located physically by walking the page tables once
per vmemmap leaf (usually 2 MiB = 32768 struct pages = one 128 MiB section), and leaves that
are physically adjacent are merged: each chunk is one run of PFNs whose struct pages are
physically contiguous.  This table is also the input of the kernel-scan ABI.

SIZE(page) need not divide the page size (56 bytes without CONFIG_MEMCG), so a struct page
may cross a vmemmap page edge.  Across 2M/1G leaves (and adjacent 4K ones) the backing is
physically contiguous and the run simply continues; where the two halves lie apart, that one
struct page becomes a chunk of its own with both pieces (``split``/``paddr2``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .errors import DumpError
from .x86_64 import AddressSpace, Unmapped

SECTION_MARKED_PRESENT = 1 << 0
SECTION_HAS_MEM_MAP = 1 << 1
# arch/x86/include/asm/sparsemem.h: 128 MiB sections on every x86_64 kernel; physical
# addresses of 46 bits with 4-level paging, 52 with 5-level (44 before 2.6.31).
X86_64_SECTION_SIZE_BITS = 27
X86_64_PHYSMEM_BITS = (44, 46, 52)


def section_pfn_shift(vi) -> int:
    """PFN_SECTION_SHIFT of the dump: NUMBER(SECTION_SIZE_BITS) - PAGE_SHIFT, checked."""
    bits = vi.number("SECTION_SIZE_BITS")
    if bits != X86_64_SECTION_SIZE_BITS:
        raise DumpError(
            f"VMCOREINFO NUMBER(SECTION_SIZE_BITS)={bits}: x86_64 kernels use "
            f"{X86_64_SECTION_SIZE_BITS}"
        )
    return bits - (vi.page_size.bit_length() - 1)


def section_flag_mask(vi, pfn_shift: int) -> int:
    """The flag bits of ``section_mem_map``.

    Our kernel patch exports ``NUMBER(SECTION_MAP_LAST_BIT)`` (include/linux/mmzone.h: flags
    are bits 0..SECTION_MAP_LAST_BIT-1, 5 in 6.1, 6 from 6.15): mask ``(1 << LAST_BIT) - 1``.
    Without it (stock kernels) the fallback clears the low PFN_SECTION_SHIFT bits, which holds
    because the coded value is vmemmap_base and KASLR aligns that to a PUD (see above).
    """
    last = vi.opt("NUMBER", "SECTION_MAP_LAST_BIT")
    if last is None:
        return (1 << pfn_shift) - 1
    # the two flags read below must be among them, and the mem_map encoding needs the flags
    # below the section's first-PFN alignment (mm/sparse.c sparse_encode_mem_map)
    if not 2 <= last <= pfn_shift:
        raise DumpError(f"VMCOREINFO NUMBER(SECTION_MAP_LAST_BIT)={last} is implausible")
    return (1 << last) - 1


class Chunk(NamedTuple):
    start_pfn: int
    nr_pages: int
    paddr: int  # physical address of the struct page of start_pfn
    # A one-page chunk whose struct page straddles two physically separate vmemmap pages
    # (SIZE(page)=56 with 4 KiB leaves): ``split`` bytes at ``paddr``, the rest at ``paddr2``.
    split: int = 0
    paddr2: int = 0


def present_sections(src, asp: AddressSpace) -> list[tuple[int, int]]:
    """(section number, coded mem_map address without flags) of every present section."""
    vi = src.vmcoreinfo
    ms_size = vi.size("mem_section")
    nr_roots = vi.length("mem_section")
    off_map = vi.offset("mem_section.section_mem_map")
    ps = vi.page_size
    pfn_shift = section_pfn_shift(vi)
    section_bits = X86_64_SECTION_SIZE_BITS
    physmem_bits = vi.number("MAX_PHYSMEM_BITS")
    if physmem_bits not in X86_64_PHYSMEM_BITS:
        raise DumpError(f"VMCOREINFO NUMBER(MAX_PHYSMEM_BITS)={physmem_bits} is not x86_64's")
    if not 8 <= ms_size <= ps:
        raise DumpError(f"VMCOREINFO SIZE(mem_section)={ms_size} is implausible")
    if off_map + 8 > ms_size:
        raise DumpError(
            f"VMCOREINFO OFFSET(mem_section.section_mem_map)={off_map} is outside "
            f"SIZE(mem_section)={ms_size}"
        )
    per_root = ps // ms_size
    # include/linux/mmzone.h: NR_SECTION_ROOTS = DIV_ROUND_UP(NR_MEM_SECTIONS, SECTIONS_PER_ROOT)
    nr_sections = 1 << (physmem_bits - section_bits)
    if not nr_sections // 2 <= per_root * nr_roots < nr_sections + per_root:
        raise DumpError(
            f"VMCOREINFO LENGTH(mem_section)={nr_roots} does not fit "
            f"MAX_PHYSMEM_BITS={physmem_bits}"
        )
    flag_mask = section_flag_mask(vi, pfn_shift)
    # SYMBOL(vmemmap) (6.9+, and 6.1 with our patch) is vmemmap_base, the value every present
    # section codes with SPARSEMEM_VMEMMAP: a section that disagrees means a corrupt dump.
    vmemmap = vi.opt("SYMBOL", "vmemmap")
    max_section = -(-src.max_pfn >> pfn_shift) if src.max_pfn else 0
    # only the roots that can describe memory in the dump (5-level: 131072 roots, 1 MiB)
    need = min(nr_roots, -(-max_section // per_root))
    roots = np.frombuffer(asp.read_virt(vi.symbol("mem_section"), need * 8), "<u8")
    out = []
    for r in np.flatnonzero(roots):
        first = int(r) * per_root
        if first >= max_section:
            break
        try:
            raw = asp.read_virt(int(roots[r]), per_root * ms_size)
        except DumpError as e:
            raise DumpError(f"mem_section root {int(r)} is unreadable: {e}") from None
        coded = np.frombuffer(raw, np.uint8).reshape(per_root, ms_size)[:, off_map : off_map + 8]
        coded = coded.copy().view("<u8")[:, 0]
        mask = (coded & np.uint64(SECTION_MARKED_PRESENT | SECTION_HAS_MEM_MAP)) == np.uint64(3)
        for i in np.flatnonzero(mask):
            sec = first + int(i)
            if sec < max_section:
                base = int(coded[i]) & ~flag_mask
                if vmemmap is not None and base != vmemmap:
                    raise DumpError(
                        f"mem_section {sec} codes mem_map base {base:#x}, but VMCOREINFO "
                        f"SYMBOL(vmemmap)={vmemmap:#x} (corrupt mem_section)"
                    )
                out.append((sec, base))
    return out


def mem_map_chunks(src, asp: AddressSpace | None = None) -> list[Chunk]:
    """Physically contiguous runs of struct pages for every present section, in PFN order.

    Sections whose vmemmap is not mapped (e.g. a sub-section hole) are left out: their PFNs
    have no struct page to judge and are kept.  Struct pages outside the dump are an error.
    """
    asp = asp or AddressSpace(src)
    vi = src.vmcoreinfo
    spage = vi.size("page")
    ps = vi.page_size
    pfn_shift = section_pfn_shift(vi)
    per_sec = 1 << pfn_shift
    if not 16 <= spage <= 4096:
        raise DumpError(f"VMCOREINFO SIZE(page)={spage} is implausible")
    chunks: list[list[int]] = []
    for sec, coded in present_sections(src, asp):
        pfn = sec * per_sec
        end = pfn + per_sec
        try:  # a present section whose first struct page is not mapped: mem_section is bad
            asp.walk((coded + pfn * spage) & ((1 << 64) - 1))
        except DumpError:
            raise DumpError(
                f"mem_section {sec}: its mem_map at {coded + pfn * spage:#x} is not mapped "
                "(corrupt mem_section)"
            ) from None
        while pfn < end:
            va = (coded + pfn * spage) & ((1 << 64) - 1)
            try:
                pa, leaf = asp.walk(va)
            except Unmapped as e:
                # nothing is mapped up to the end of the block whose entry is not present
                # (4 KiB .. 512 GiB of vmemmap): go on at the first struct page after it
                gap = e.size - (va & (e.size - 1))
                pfn += max(1, -(-gap // spage))
                continue
            except DumpError:
                # a page table outside the dump: skip this 4 KiB vmemmap page
                pfn = max(pfn + 1, pfn + (ps - va % ps) // spage)
                continue
            room = leaf - (va & (leaf - 1))
            # SIZE(page) need not divide 4096 (56 without MEMCG): extend the run over the next
            # leaves while they are physically adjacent (2M/1G leaves make whole sections so)
            want = (end - pfn) * spage
            while room < want and room % spage:
                try:
                    nxt_pa, nxt_leaf = asp.walk(va + room)
                except DumpError:
                    break
                if nxt_pa != pa + room:
                    break
                room += nxt_leaf
            n = min(end - pfn, room // spage)
            if n <= 0:  # straddles two separate physical pages: a chunk of its own
                try:
                    pa2 = asp.walk(va + room)[0]
                except DumpError:
                    pfn += 1  # its second half is not mapped: no struct page to judge
                    continue
                chunks.append([pfn, 1, pa, room, pa2])
                pfn += 1
                continue
            if (
                chunks
                and chunks[-1][0] + chunks[-1][1] == pfn
                and not chunks[-1][3]
                and (chunks[-1][2] + chunks[-1][1] * spage == pa)
            ):
                chunks[-1][1] += n
            else:
                chunks.append([pfn, n, pa, 0, 0])
            pfn += n
    out = [Chunk(*c) for c in chunks]
    _check_in_dump(src, out, spage)
    return out


def _check_in_dump(src, chunks: list[Chunk], spage: int) -> None:
    ps = src.page_size
    ram = src.ram_ranges
    starts = np.array([a for a, _ in ram], np.int64)
    pieces = [(c, c.paddr, c.split or c.nr_pages * spage) for c in chunks]
    pieces += [(c, c.paddr2, spage - c.split) for c in chunks if c.split]
    for c, pa, size in pieces:
        first = pa // ps
        last = (pa + size - 1) // ps
        i = int(np.searchsorted(starts, first, side="right")) - 1
        if i < 0 or last >= ram[i][1]:
            raise DumpError(
                f"mem_map for pfns {c.start_pfn:#x}-{c.start_pfn + c.nr_pages - 1:#x} lies at "
                f"physical {c.paddr:#x}, outside the dump (corrupt mem_section or page tables)"
            )
