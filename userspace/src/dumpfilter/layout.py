"""The dump's layout, read once for both scans: which struct pages describe which PFNs,
which PFNs are the kernel image, which RAM has no data, and the rules these impose on top of
the per-page decision.

``Layout.read(src)`` reads VMCOREINFO's page-type encoding, the address space (page tables,
KASLR), the mem_map chunks, the kernel image's PG_reserved runs and the no-data PFNs.  The
userspace scan (``scan.py``) classifies the struct pages of ``chunks``; the kernel scan
(``kernelscan.py``) hands the kernel ``chunk_table()``; both then finish every window with
``blank_window`` and ``apply_rules``, so the two answers differ only where the per-page
verdicts do.

The rules (docs/page-types.md §5):
- PFNs outside RAM are HOLE, and their struct pages are not read (as makedumpfile skips PFNs
  outside every PT_LOAD): one there never starts a range (``ram_pieces``);
- a page without a byte of file data (a PT_LOAD's ``p_memsz`` beyond its ``p_filesz``) is
  HOLE (there is no class for "RAM without data"), as makedumpfile's ``exclude_nodata_pages``
  drops it from the 2nd bitmap; the writers still mark it RAM.  A page a PT_LOAD holds in part
  (``/proc/vmcore``'s first range ends at 0x9fc00 when kexec-tools builds the headers) has
  data, read with zeros for the rest, and is judged like any page, as makedumpfile 1.7.9 does;
- pages of the kernel image (_text.._end) that still carry PG_reserved are never excluded
  except as free (makedumpfile issue 21: BSS pages such as idt_table with PG_lru and a mapping
  excluded at -d 31 break crash(8)).  Only PG_reserved ones: memblock-reserved image pages keep
  the flag for good, while the freed ``__init`` sections and the alignment padding lose it
  when ``free_reserved_area`` hands them to the buddy allocator, which reuses them like any
  other page; those are judged like any other page, as makedumpfile does.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from . import memmap, pagetypes
from .contracts import Source
from .errors import DumpError
from .pageclass import PageClass
from .x86_64 import AddressSpace

HOLE = np.uint8(PageClass.HOLE)
FREE = np.uint8(PageClass.FREE)
# PFNs per window, both scans: 1 GiB of 4 KiB pages, 16 MiB of struct pages for the
# userspace scan to read.  The consumers (report, writers) hold arrays of a window's size
# (classes and masks, a byte a page), so the window bounds their memory too, whichever scan
# made it (bench/NOTES.md, "The kernel scan's memory"); what they derive at 8 bytes a kept
# page is planned in smaller slices where a window may be kept whole (diskdump.PLAN_PFNS).
WINDOW_PFNS = 1 << 18


@dataclass
class Layout:
    """Everything a scan reads before it classifies a page (``Layout.read``)."""

    encoding: pagetypes.Encoding
    address_space: AddressSpace
    chunks: list[memmap.Chunk]  # mem_map pieces: (start_pfn, nr_pages, struct page paddr)
    image: list[tuple[int, int]]  # [start, end) PG_reserved runs inside _text.._end
    nodata: np.ndarray  # RAM PFNs without full data in the input (int64)
    ram_ranges: list[tuple[int, int]]
    prepare_seconds: float  # how long reading all this took

    @classmethod
    def read(cls, src: Source) -> Layout:
        t0 = time.perf_counter()
        encoding = pagetypes.detect(src.vmcoreinfo)
        if encoding.page_size != src.page_size:
            raise DumpError("VMCOREINFO PAGESIZE differs from the dump's page size")
        asp = AddressSpace(src)
        chunks = memmap.mem_map_chunks(src, asp)
        if not chunks:
            raise DumpError("mem_section lists no present memory section")
        image = _reserved_runs(src, encoding, chunks, asp.kernel_image_pfns())
        nodata = np.array(_nodata_pfns(src), np.int64)
        src.release_windows()  # the setup's windows go with the setup
        return cls(
            encoding, asp, chunks, image, nodata, list(src.ram_ranges), time.perf_counter() - t0
        )

    def __post_init__(self) -> None:
        self._ram_starts = [a for a, _ in self.ram_ranges]
        self.chunk_ends = [c.start_pfn + c.nr_pages for c in self.chunks]

    def ram_pieces(self, p0: int, p1: int) -> Iterator[tuple[int, int]]:
        """The parts of [p0, p1) inside RAM, in order.

        Only those PFNs are judged: makedumpfile skips PFNs outside every PT_LOAD
        (docs/page-types.md §4.3), so a struct page there never starts a range (the crash
        kernel's reserved memory, often a quarter of a small machine, is not read at all),
        while a range from RAM still runs on over a hole into the next RAM range ("continue
        at pfn + n"): the scan's carry holds its end by PFN."""
        ram = self.ram_ranges
        i = max(bisect.bisect_right(self._ram_starts, p0) - 1, 0)
        while i < len(ram) and ram[i][0] < p1:
            a, b = max(ram[i][0], p0), min(ram[i][1], p1)
            if a < b:
                yield a, b
            i += 1

    def in_ram(self, pfn: int) -> bool:
        i = bisect.bisect_right(self._ram_starts, pfn) - 1
        return i >= 0 and pfn < self.ram_ranges[i][1]

    def chunk_table(self) -> list[tuple[int, int, int]]:
        """``(start_pfn, nr_pages, struct_page_paddr)``: also the kernel-scan ABI input.

        Only the RAM parts of the chunks, the PFNs the userspace scan judges, so that both
        scans read the same struct pages.  A struct page split over two physical pages cannot
        be described to the kernel: its PFN is left out (the kernel scan keeps it)."""
        spage = self.encoding.struct_size
        return [
            (p0, p1 - p0, c.paddr + (p0 - c.start_pfn) * spage)
            for c in self.chunks
            if not c.split
            for p0, p1 in self.ram_pieces(c.start_pfn, c.start_pfn + c.nr_pages)
        ]

    def blank_window(self, w0: int, w1: int) -> np.ndarray:
        """Classes of PFNs [w0, w1) before any page is judged: KEEP in RAM, HOLE outside."""
        return blank_window(self.ram_ranges, w0, w1)

    def apply_rules(self, w0: int, out: np.ndarray) -> None:
        """The kernel-image and no-data rules on a classified window (in place)."""
        apply_rules(w0, out, self.image, self.nodata)


def blank_window(ram_ranges: Sequence[tuple[int, int]], w0: int, w1: int) -> np.ndarray:
    """Classes of PFNs [w0, w1) before any page is judged: KEEP in RAM, HOLE outside."""
    out = np.full(w1 - w0, PageClass.KEEP, np.uint8)
    mark_holes(ram_ranges, w0, out)
    return out


def mark_holes(ram_ranges: Sequence[tuple[int, int]], w0: int, out: np.ndarray) -> None:
    """Make every PFN of ``out`` (the classes of PFNs ``w0``..) outside ``ram_ranges`` HOLE,
    whatever it was (in place; the ranges in any order, overlapping or not)."""
    pos, w1 = w0, w0 + len(out)
    for a, b in sorted(ram_ranges):
        if a > pos:
            out[min(pos, w1) - w0 : min(a, w1) - w0] = HOLE
        pos = max(pos, b)
        if pos >= w1:
            return
    out[min(pos, w1) - w0 :] = HOLE


def apply_rules(
    w0: int, out: np.ndarray, image: Sequence[tuple[int, int]], nodata: np.ndarray
) -> None:
    """Pages of the kernel image are kept unless free (holes stay holes); pages without full
    data are holes.  ``out``: the classes of PFNs ``w0``.. (changed in place)."""
    w1 = w0 + len(out)
    for a, b in image:
        if b > w0 and a < w1:
            seg = out[max(a, w0) - w0 : min(b, w1) - w0]
            seg[(seg != HOLE) & (seg != FREE)] = PageClass.KEEP
    inside = nodata[(nodata >= w0) & (nodata < w1)]
    out[inside - w0] = HOLE


def split_page(src, c: memmap.Chunk, spage: int) -> np.ndarray:
    """The one struct page of a split chunk, assembled from its two physical pieces."""
    raw = np.empty((1, spage), np.uint8)
    raw[0, : c.split] = src.phys_array(c.paddr, c.split)
    raw[0, c.split :] = src.phys_array(c.paddr2, spage - c.split)
    return raw


def _reserved_runs(
    src, enc: pagetypes.Encoding, chunks: list[memmap.Chunk], image: list[tuple[int, int]]
) -> list[tuple[int, int]]:
    """PFN runs inside ``image`` whose struct page has PG_reserved (or that have no struct
    page to judge, which the scan keeps anyway).  Reads only the image's struct pages."""
    keep = [np.ones(b - a, bool) for a, b in image]
    spage, bit = enc.struct_size, np.uint64(enc.pg_reserved)
    starts = [c.start_pfn for c in chunks]
    for (a, b), k in zip(image, keep, strict=True):
        j = max(0, bisect.bisect_right(starts, a) - 1)
        while j < len(chunks) and chunks[j].start_pfn < b:
            c = chunks[j]
            p0, p1 = max(a, c.start_pfn), min(b, c.start_pfn + c.nr_pages)
            if p0 < p1:
                if c.split:
                    raw = split_page(src, c, spage)
                else:
                    raw = src.phys_array(c.paddr + (p0 - c.start_pfn) * spage, (p1 - p0) * spage)
                fl = raw.reshape(p1 - p0, spage)[:, enc.off_flags : enc.off_flags + 8]
                flags = np.ascontiguousarray(fl).view("<u8")[:, 0]
                k[p0 - a : p1 - a] = ((flags >> bit) & np.uint64(1)).astype(bool)
            j += 1
    out: list[tuple[int, int]] = []
    for (a, _), k in zip(image, keep, strict=True):
        edges = np.flatnonzero(np.diff(np.concatenate(([0], k.view(np.int8), [0]))))
        out.extend((a + int(s), a + int(e)) for s, e in zip(edges[::2], edges[1::2], strict=True))
    return out


def _nodata_pfns(src) -> list[int]:
    """PFNs from the rounded-up end of a PT_LOAD's file data to its rounded-up end: the pages
    without a byte of data (``p_memsz`` beyond ``p_filesz``).  A page the file data ends
    inside is not one of them: makedumpfile 1.7.9 rounds the same way in
    ``exclude_nodata_pages`` (1.7.2 dropped that page too, losing its bytes)."""
    ps = src.page_size
    out: set[int] = set()
    for ld in src.loads:
        first = -(-(ld.paddr + ld.filesz) // ps)
        last = -(-(ld.paddr + ld.memsz) // ps)
        if last - first > 1 << 20:
            raise DumpError("a PT_LOAD has more than 4 GiB without file data")
        out.update(range(first, last))
    return sorted(out)
