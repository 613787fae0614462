"""x86_64 kernel virtual -> physical, by walking the crashed kernel's own page tables.

Everything comes from VMCOREINFO (docs/page-types.md §6): ``SYMBOL(init_top_pgt)`` (the
runtime address, KASLR already applied), ``NUMBER(phys_base)`` for kernel-image addresses,
``NUMBER(pgtable_l5_enabled)`` for 4- or 5-level paging and ``NUMBER(sme_mask)``, which AMD
SME puts inside the address field of every entry and must be cleared.  Like makedumpfile's
``__vtop4_x86_64`` every virtual address (direct map, vmemmap, kernel image) is translated by
the walk, so nothing depends on page_offset_base or vmemmap_base, which 6.1 does not export.
Leaves of 1 GiB and 2 MiB are honoured; results are cached per leaf.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from .errors import DumpError

START_KERNEL_MAP = 0xFFFFFFFF80000000
ENTRY_ADDR = 0x000FFFFFFFFFF000  # bits 12..51 (makedumpfile ENTRY_MASK)
P, PSE = 0x1, 0x80
U64 = (1 << 64) - 1
_LEVELS5 = (48, 39, 30, 21, 12)
_NAMES = {48: "PGD(5)", 39: "PGD", 30: "PUD", 21: "PMD", 12: "PTE"}


class Unmapped(DumpError):
    """``va`` is not mapped: the entry at the level of ``size`` (4 KiB .. 256 TiB) is not
    present, so nothing in the ``size``-aligned block around ``va`` is mapped either."""

    def __init__(self, message: str, size: int):
        super().__init__(message)
        self.size = size


class AddressSpace:
    """Translate kernel virtual addresses of one dump; ``read_virt`` reads through it."""

    def __init__(self, src):
        vi = src.vmcoreinfo
        self.src = src
        self.phys_base = vi.number("phys_base") & U64
        sme = vi.opt("NUMBER", "sme_mask") or 0
        self.addr_mask = ENTRY_ADDR & ~(sme & U64)
        self.five_level = bool(vi.opt("NUMBER", "pgtable_l5_enabled") or 0)
        top_va = vi.symbol("init_top_pgt") if vi.has("SYMBOL(init_top_pgt)") else None
        if top_va is None:
            raise DumpError("VMCOREINFO has no SYMBOL(init_top_pgt); cannot walk page tables")
        self.top_pa = self.kimage_pa(top_va)
        self.image_size = vi.opt("NUMBER", "KERNEL_IMAGE_SIZE") or (512 << 20)
        self._cache: dict[int, tuple[int, int]] = {}  # va >> 21 -> (pa of that 2M, leaf size)

    def kimage_pa(self, va: int) -> int:
        """Physical address of a kernel-image symbol: va - __START_KERNEL_map + phys_base."""
        if va < START_KERNEL_MAP:
            raise DumpError(f"{va:#x} is not a kernel-image address")
        return (va - START_KERNEL_MAP + self.phys_base) & U64

    def _entry(self, table_pa: int, idx: int, va: int, shift: int) -> int:
        try:
            raw = self.src.read_phys(table_pa + 8 * idx, 8)
        except DumpError:
            raise DumpError(
                f"page tables are corrupt: the {_NAMES[shift]} table for {va:#x} is at "
                f"physical {table_pa:#x}, outside the dump"
            ) from None
        return struct.unpack("<Q", raw)[0]

    def walk(self, va: int) -> tuple[int, int]:
        """(physical address, leaf size) of ``va``; DumpError if it is not mapped."""
        va &= U64
        key = va >> 21
        hit = self._cache.get(key)
        if hit is not None:
            base, leaf = hit
            if leaf >= 1 << 21:
                return base + (va & ((1 << 21) - 1)), leaf
        levels = _LEVELS5 if self.five_level else _LEVELS5[1:]
        table = self.top_pa
        for shift in levels:
            e = self._entry(table, (va >> shift) & 511, va, shift)
            if not e & P:
                raise Unmapped(
                    f"kernel address {va:#x} is not mapped ({_NAMES[shift]} entry)", 1 << shift
                )
            addr = e & self.addr_mask
            if shift in (30, 21) and e & PSE:
                size = 1 << shift
                pa = (addr & ~(size - 1)) | (va & (size - 1))
                self._cache[key] = (pa - (va & ((1 << 21) - 1)), size)
                return pa, size
            if shift == 12:
                return addr | (va & 0xFFF), 1 << 12
            table = addr
        raise AssertionError("unreachable")

    def vtop(self, va: int) -> int:
        return self.walk(va)[0]

    def read_virt(self, va: int, size: int) -> bytes:
        """Read ``size`` bytes at kernel virtual ``va``, crossing leaves as needed."""
        pieces: list[list[int]] = []  # [pa, n], physically adjacent leaves merged
        pos = 0
        while pos < size:
            pa, leaf = self.walk(va + pos)
            n = min(size - pos, leaf - ((va + pos) & (leaf - 1)))
            if pieces and pieces[-1][0] + pieces[-1][1] == pa:
                pieces[-1][1] += n
            else:
                pieces.append([pa, n])
            pos += n
        return b"".join(self.src.read_phys(pa, n) for pa, n in pieces)

    def kernel_image_pfns(self) -> list[tuple[int, int]]:
        """PFN ranges of the kernel image (_text.._end), never to be excluded
        (docs/page-types.md §5).

        The kernel-text PT_LOAD (kexec_file_load writes one with p_vaddr = _text and
        p_memsz = _end - _text) gives it directly; the kernel's high mapping (which
        ``cleanup_highmap`` trims to the image) is walked too, bounded by KERNEL_IMAGE_SIZE.
        """
        ps = self.src.page_size
        out: list[tuple[int, int]] = []
        for ld in self.src.loads:
            if ld.vaddr >= START_KERNEL_MAP and ld.memsz:
                out.append((ld.paddr // ps, -(-(ld.paddr + ld.memsz) // ps)))
        if out:
            return out
        va = START_KERNEL_MAP
        end = START_KERNEL_MAP + min(self.image_size, 1 << 30)
        while va < end:
            try:
                pa, leaf = self.walk(va)
            except DumpError:
                va += 1 << 21
                continue
            step = max(leaf, 1 << 21) if leaf >= 1 << 21 else 1 << 12
            step = min(step, 1 << 21)
            out.append((pa // ps, (pa + step) // ps))
            va += step
        from .elfcore import merge_ranges

        return merge_ranges(out)


def virt_reader(src) -> Callable[[int, int], bytes]:
    """A ``read_virt(va, size) -> bytes`` for ``src`` (used by dmesg and the scan)."""
    return AddressSpace(src).read_virt
