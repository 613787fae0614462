"""``--mem-usage``: what a dump of the running system would hold, read from ``/proc/kcore``.

Users size crashkernel= and the dump's disk with it before a crash happens.  /proc/kcore is
an ELF core of the running kernel: its RAM segments map the direct map and carry the physical
address in ``p_paddr`` (the vmalloc, module and vmemmap segments have ``p_paddr == -1`` and
are left out), and since Linux 4.19 it carries the VMCOREINFO note.  So the scan that filters
/proc/vmcore classifies live memory unchanged; the page contents are read only for the pages
are read too, for the zero test of every class (a level without bit 16 keeps the free
pages, and bit 1 then drops those that are zeros).

The memory reserved for the crash kernel ("Crash kernel" in /proc/iomem) is left out: the
capture kernel's /proc/vmcore does not contain it.

The first table is makedumpfile's (its ``--mem-usage`` layout, so that scripts reading it
keep working); the second estimates the size of a kdump-compressed dump at each dump level
with the pages stored uncompressed (``-c``/``-l``/``-p``/``-z`` shrink the page data by what
the data allows).  Memory changes while it is read, so these are estimates of a moment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import numpy as np

from .diskdump import read_span
from .dumplevel import DumpLevel
from .elfcore import ElfVmcore, merge_ranges
from .errors import DumpError
from .kdumpformat import PAGE_DESC, Geometry
from .pageclass import PageClass

NO_PADDR = (1 << 64) - 1  # /proc/kcore's p_paddr of a segment that is not RAM or text
BLOCK_PAGES = 2048  # pages zero-tested per read (8 MiB)


class Kcore(ElfVmcore):
    """/proc/kcore (or a vmcore) as a dump source: only segments with a physical address."""

    kind = "kcore"

    def __init__(self, path: str, reserved: Sequence[tuple[int, int]] = ()):
        super().__init__(path)
        ps = self.page_size
        pfns = [(a // ps, -(-b // ps)) for a, b in reserved]
        self.ram_ranges = subtract(self.ram_ranges, pfns)
        if not self.ram_ranges:
            raise DumpError(f"{path}: no RAM outside the memory reserved for the crash kernel")
        self.max_pfn = self.ram_ranges[-1][1]

    def _wanted_load(self, paddr: int) -> bool:
        return paddr != NO_PADDR


def subtract(ranges: list[tuple[int, int]], holes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``ranges`` minus ``holes`` (both [start, end) lists)."""
    out = []
    for a, b in ranges:
        pieces = [(a, b)]
        for h0, h1 in holes:
            pieces = [
                p for x, y in pieces for p in ((x, min(y, h0)), (max(x, h1), y)) if p[0] < p[1]
            ]
        out += pieces
    return merge_ranges(out)


def crash_kernel_ranges(iomem: str = "/proc/iomem") -> list[tuple[int, int]]:
    """Physical [start, end) of every "Crash kernel" range (none if unreadable, or all
    zeros as /proc/iomem shows them to a user without CAP_SYS_ADMIN)."""
    try:
        text = open(iomem).read()
    except OSError:
        return []
    out = []
    for m in re.finditer(r"(?m)^\s*([0-9a-f]+)-([0-9a-f]+) : Crash kernel$", text):
        a, b = int(m.group(1), 16), int(m.group(2), 16) + 1
        if b > 1:
            out.append((a, b))
    return out


def classify(src) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pages of each PageClass at dump level 31 (makedumpfile's table), and for the
    estimates the pages of each class and the zero pages of each class where a page that a
    level-0 scan excludes (hwpoisoned, offline) counts as that: those are excluded at every
    level, while at level 31 the scan may give the same page another excluded class first.
    Every RAM page is read: bit 1 excludes the zero pages of whatever a level keeps."""
    from . import scan

    nclass = len(PageClass)
    table = np.zeros(nclass, np.int64)
    counts = np.zeros(nclass, np.int64)
    zeros = np.zeros(nclass, np.int64)
    c31, c0 = scan.userspace_scan(src, 31), scan.userspace_scan(src, 0)
    for (w0, cls31), (_w, cls0) in zip(c31.windows(), c0.windows(), strict=True):
        table += np.bincount(cls31, minlength=nclass)[:nclass]
        always = (cls0 == PageClass.HWPOISON) | (cls0 == PageClass.OFFLINE)
        cls = np.where(always, cls0, cls31)
        counts += np.bincount(cls, minlength=nclass)[:nclass]
        for a, b in src.ram_ranges:
            a, b = max(a, w0), min(b, w0 + len(cls))
            for p in range(a, b, BLOCK_PAGES):
                n = min(BLOCK_PAGES, b - p)
                nonzero = read_span(src, p, n).view(np.uint64).any(axis=1)
                got = np.bincount(cls[p - w0 : p - w0 + n][~nonzero], minlength=nclass)
                zeros += got[:nclass]
    zeros[PageClass.HOLE] = 0  # RAM without file data: not a zero page, not data
    # makedumpfile's ZERO: the zero pages among those level 31 keeps (a page that a level-0
    # scan excludes is never kept at level 31, so KEEP is the same set in both)
    table[PageClass.ZERO] = zeros[PageClass.KEEP]
    return table, counts, zeros


def dumpable(counts: np.ndarray, zeros: np.ndarray, level: int) -> tuple[int, int]:
    """(pages in the 2nd bitmap, pages stored as data) of a kdump-compressed dump at
    ``level``; with bit 1 the zero pages among them share one stored zero page."""
    dl = DumpLevel(level)
    # ZERO is not a scan's class (the writers decide it from the data): never counted here.
    kept = dl.keep_table()[: len(counts)].copy()
    kept[PageClass.ZERO] = False
    total = int(counts[kept].sum())
    data = total - int(zeros[kept].sum()) if dl.tests_zero_pages else total
    return total, data


def estimate_bytes(src, counts: np.ndarray, zeros: np.ndarray, level: int) -> int:
    """Size of a ``-d level`` kdump-compressed file with uncompressed pages."""
    ps = src.page_size
    geo = Geometry(ps, src.max_pfn, len(src.notes))
    total, data = dumpable(counts, zeros, level)
    shared_zero = ps if DumpLevel(level).tests_zero_pages else 0
    return geo.desc_off + PAGE_DESC.itemsize * total + shared_zero + ps * data


def report(src, table: np.ndarray, counts: np.ndarray, zeros: np.ndarray) -> str:
    """makedumpfile's table (ZERO: the zero pages among those level 31 keeps), then ours."""
    ps = src.page_size
    ram = sum(b - a for a, b in src.ram_ranges)
    n = {c: int(table[c]) for c in PageClass}
    excluded = sum(n[c] for c in PageClass if c not in (PageClass.KEEP, PageClass.HOLE))
    lines = [
        "",
        "TYPE\t\tPAGES\t\t\tEXCLUDABLE\tDESCRIPTION",
        "-" * 70,
        f"ZERO\t\t{n[PageClass.ZERO]:<16d}\tyes\t\tPages filled with zero",
        f"NON_PRI_CACHE\t{n[PageClass.CACHE]:<16d}\tyes\t\tCache pages without private flag",
        f"PRI_CACHE\t{n[PageClass.CACHE_PRIVATE]:<16d}\tyes\t\tCache pages with private flag",
        f"USER\t\t{n[PageClass.USER]:<16d}\tyes\t\tUser process pages",
        f"FREE\t\t{n[PageClass.FREE]:<16d}\tyes\t\tFree pages",
        f"KERN_DATA\t{ram - excluded:<16d}\tno\t\tDumpable kernel data ",
        "",
        f"page size:\t\t{ps:<16d}",
        f"Total pages on system:\t{ram:<16d}",
        f"Total size on system:\t{ram * ps:<16d} Byte",
        "",
        "Estimated kdump-compressed dump size per dump level (pages stored uncompressed):",
        "LEVEL\tPAGES\t\tBYTES",
    ]
    for level in range(32):
        _total, data = dumpable(counts, zeros, level)
        lines.append(f"{level}\t{data:<16d}{estimate_bytes(src, counts, zeros, level)}")
    return "\n".join(lines) + "\n"


def mem_usage(path: str) -> str:
    """The report for ``path``: /proc/kcore of the running system (or a saved vmcore)."""
    live = os.path.realpath(path) == "/proc/kcore"
    with Kcore(path, crash_kernel_ranges() if live else []) as src:
        return report(src, *classify(src))
