#!/usr/bin/env python3
"""Sparse synthetic x86_64 ELF vmcores of large machines (1 GiB to TiBs of RAM), for the
scale bench.

Every PFN of RAM has a real struct page, in the chosen kernel's encoding (the families of
userspace/tests/synthvmcore.py), with the mix of a busy large server: most memory in free
buddy blocks (largely of the top order, the rest split into every smaller order), page cache
(single pages and folios of order 2 and 9), anon memory (single pages, mTHPs of order 4, THPs
of order 9), hugetlb pages (2 MiB, and 1 GiB ones on machines of 64 GiB and more), slab,
page tables, kernel pages, a few hwpoison pages and balloon-offlined blocks.  RAM is laid out
like a NUMA server's: the legacy ranges below 4 GiB, then several nodes with holes of whole
memory sections between them, each node carrying the mem_map of its own sections.

Only the pages that ``-d 31`` keeps have data in the file (the struct pages themselves, the
kernel image, page tables, slab and kernel pages, most of those as all-zero pages, which stay
holes); everything else is a hole of the sparse file.  So a dump takes about its mem_map
(1.56 % of RAM) plus a small fraction of RAM on disk.

Generation is streamed one GiB of PFNs at a time (numpy, no loop per page), so memory stays
at a few tens of MiB whatever the size.  ``ensure(ram_gib, ...)`` makes a dump once into
``$DUMPFILTER_CACHE/scale/<key>/vmcore``, the key naming every parameter; ``manifest.json``
next to it records what was placed (pages per class at ``-d 31``).

    python3 scalevmcore.py 16            # make (or find) the 16 GiB dump, print its path
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
import synthvmcore as sv  # noqa: E402  (the encodings, VMCOREINFO text and page tables)

from dumpfilter.pageclass import PageClass  # noqa: E402

GEN_VERSION = 1  # bump when the layout or the mix changes: it is part of the cache key
PAGE = sv.PAGE
SPAGE = sv.SPAGE
GIB_PAGES = 1 << 18
SEC_PAGES = 1 << 15  # 128 MiB sections (SECTION_SIZE_BITS 27)
BLOCK = 512  # pages per 2 MiB block: the unit the mix is chosen in
KERNEL_PA = 0x3000000
IMAGE_PAGES = 24 << 8  # 24 MiB _text.._end
META_PAGES = 8 << 8  # page tables and mem_section arrays, after the image
PAGE_OFFSET = 0xFFFF888000000000
VMEMMAP = 0xFFFFEA0000000000
KERNEL_OFFSET = 0x18200000
STEXT = sv.KERNEL_TEXT_VA + KERNEL_OFFSET

# Block kinds (a 2 MiB block each), with their share of the blocks that are free to choose
B_FREE, B_THP, B_HUGETLB, B_FOLIO, B_OFFLINE, B_MIXED = range(6)
BLOCK_MIX = [0.52, 0.08, 0.04, 0.06, 0.005, 0.295]
# 16-page groups inside mixed blocks
G_SPLIT, G_CACHE, G_FOLIO2, G_MTHP, G_ANON, G_SLAB, G_KERNEL = range(7)
GROUP_MIX = [0.30, 0.20, 0.15, 0.15, 0.14, 0.03, 0.03]
# single pages of a kernel group
SINGLES = [sv.K_KERNEL, sv.K_PGTABLE, sv.K_SLAB, sv.K_SWAPCACHE, sv.K_HWPOISON, sv.K_OFFLINE]
SINGLE_MIX = [0.55, 0.15, 0.15, 0.10, 0.02, 0.03]
# contents of kept pages outside the mem_map and the image: zero (a hole), text, random
KEPT_CONTENT = [0.70, 0.20, 0.10]
GIGANTIC_SHARE = 0.02  # of the whole GiBs of a node, on machines of >= 64 GiB


@dataclass(frozen=True)
class Params:
    ram_gib: int
    kernel: str = "6.1"
    seed: int = 1

    @property
    def key(self) -> str:
        return f"{self.kernel}-{self.ram_gib}g-s{self.seed}-v{GEN_VERSION}"


def cache_dir() -> Path:
    return Path(os.environ.get("DUMPFILTER_CACHE") or Path.home() / ".cache" / "dumpfilter")


def ram_layout(ram_gib: int) -> list[tuple[int, int]]:
    """[start, end) PFN ranges: below 4 GiB a PC's (legacy hole, PCI hole from 3 GiB), above
    it up to 8 nodes separated by 512 MiB holes (whole sections without struct pages)."""
    total = ram_gib * GIB_PAGES
    if total <= 3 * GIB_PAGES:
        return [(1, 0x9F), (0x100, total)]
    ram = [(1, 0x9F), (0x100, 3 * GIB_PAGES)]
    rest = total - 3 * GIB_PAGES + 0x100
    nodes = max(1, min(8, ram_gib // 16))
    per = -(-rest // nodes // SEC_PAGES) * SEC_PAGES
    start = 4 * GIB_PAGES
    while rest > 0:
        n = min(per, rest)
        ram.append((start, start + n))
        rest -= n
        start += n + 4 * SEC_PAGES
    return ram


class _Bump:
    """Page allocator for the page tables (synthvmcore._PageTables asks it for pages)."""

    def __init__(self, start: int, end: int):
        self.cursor, self.end = start, end

    def alloc(self, npages: int, align_pages: int = 1) -> int:
        p = -(-self.cursor // align_pages) * align_pages
        if p + npages > self.end:
            raise ValueError("metadata area too small")
        self.cursor = p + npages
        return p


class Layout:
    """Where everything lives: RAM, sections, each node's mem_map, the metadata pages."""

    def __init__(self, p: Params):
        self.p = p
        self.fam = sv.family(p.kernel)
        self.ram = ram_layout(p.ram_gib)
        self.max_pfn = self.ram[-1][1]
        self.nsec = -(-self.max_pfn // SEC_PAGES)
        # each present section's mem_map goes to the RAM range that holds most of it
        owner: dict[int, int] = {}
        for s in range(self.nsec):
            a, b = s * SEC_PAGES, (s + 1) * SEC_PAGES
            best = max(
                range(len(self.ram)), key=lambda i: min(b, self.ram[i][1]) - max(a, self.ram[i][0])
            )
            if min(b, self.ram[best][1]) > max(a, self.ram[best][0]):
                owner[s] = best
        self.present = sorted(owner)
        img0 = KERNEL_PA >> 12
        self.meta = (img0 + IMAGE_PAGES, img0 + IMAGE_PAGES + META_PAGES)
        self.memmap_pa: dict[int, int] = {}  # section -> physical address of its struct pages
        self.reserved: list[tuple[int, int]] = [(0, 0x100), (img0, self.meta[1])]
        for i, (a, _b) in enumerate(self.ram):
            secs = [s for s in self.present if owner[s] == i]
            if not secs:
                continue
            base = self.meta[1] if a <= img0 < _b else a
            base = -(-base // BLOCK) * BLOCK
            need = len(secs) * SEC_PAGES * SPAGE // PAGE
            if base + need > _b:
                raise ValueError(f"RAM range {i} cannot hold its mem_map")
            for k, s in enumerate(secs):
                self.memmap_pa[s] = (base << 12) + k * SEC_PAGES * SPAGE
            self.reserved.append((base, base + need))
        self.reserved.sort()

    def loads(self) -> list[tuple[int, int, int]]:
        """(paddr, vaddr, npages) of every PT_LOAD: the kernel text, then RAM."""
        segs = [(KERNEL_PA, STEXT, IMAGE_PAGES)]
        segs += [(a << 12, PAGE_OFFSET + (a << 12), b - a) for a, b in self.ram]
        return segs


def _metadata(lay: Layout) -> tuple[str, list[tuple[int, bytes]]]:
    """VMCOREINFO text and the metadata writes (page tables, mem_section, utsname)."""
    fam = lay.fam
    alloc = _Bump(*lay.meta)
    top_pa = KERNEL_PA + (16 << 20)
    uts_pa = KERNEL_PA + (17 << 20)
    pt = sv._PageTables(alloc, top_pa, False, 0)
    per_root = PAGE // 16
    nr_roots = (1 << (46 - 27)) // per_root
    roots_pa = alloc.alloc(-(-nr_roots * 8 // PAGE)) << 12
    roots = np.zeros(nr_roots, np.uint64)
    writes: list[tuple[int, bytes]] = []
    arrays: dict[int, np.ndarray] = {}
    for s in lay.present:
        r = s // per_root
        if r not in arrays:
            arrays[r] = np.zeros(2 * per_root, np.uint64)
            pa = alloc.alloc(1) << 12
            roots[r] = PAGE_OFFSET + pa
            writes.append((pa, arrays[r]))
        arrays[r][2 * (s % per_root)] = VMEMMAP | 0xF  # PRESENT|HAS_MEM_MAP|ONLINE|EARLY
        pt.map(VMEMMAP + s * SEC_PAGES * SPAGE, lay.memmap_pa[s], 1 << 21)
    for g in range(-(-lay.max_pfn // GIB_PAGES)):
        pt.map(PAGE_OFFSET + (g << 30), g << 30, 1 << 30)
    for off in range(0, IMAGE_PAGES << 12, 1 << 21):
        pt.map(STEXT + off, KERNEL_PA + off, 1 << 21)
    uts = b"".join(
        f.ljust(65, b"\0")
        for f in (b"Linux", b"scale", fam.osrelease.encode(), b"#1 SMP", b"x86_64", b"(none)")
    )
    writes.append((roots_pa, roots))
    writes.append((uts_pa, uts))
    writes += list(pt.tables.items())
    s = sv.layout_defaults(
        lay.p.kernel,
        uts_va=STEXT + (uts_pa - KERNEL_PA),
        stext=STEXT,
        vmalloc=0xFFFFC90000000000,
        vmemmap=VMEMMAP,
        mem_section=PAGE_OFFSET + roots_pa,
        nr_roots=nr_roots,
        init_top_pgt=STEXT + (top_pa - KERNEL_PA),
        kernel_offset=KERNEL_OFFSET,
        phys_base=(KERNEL_PA - (STEXT - sv.START_KERNEL_MAP)) & sv.U64,
    )
    return sv._vmcoreinfo(s), [(pa, d if isinstance(d, bytes) else d.tobytes()) for pa, d in writes]


class _Chunk:
    """Struct pages of PFNs [p0, p1) (p0 a multiple of 1024) and what each page is."""

    def __init__(self, lay: Layout, p0: int, p1: int, rng: np.random.Generator):
        fam = lay.fam
        self.lay, self.p0, self.p1, self.fam = lay, p0, p1, fam
        n = p1 - p0
        self.sp = np.zeros((n, SPAGE), np.uint8)
        self.u64 = self.sp.view(np.uint64)
        self.u32 = self.sp.view(np.uint32)
        self.flags = self.u64[:, 0]
        self.kind = np.full(n, sv.K_HOLE, np.uint8)
        self.u32[:, sv.OFF_MAPCOUNT // 4] = 0xFFFFFFFF
        self.u32[:, sv.OFF_REFCOUNT // 4] = 1
        is_ram = np.zeros(n, bool)
        for a, b in lay.ram:
            if b > p0 and a < p1:
                is_ram[max(a, p0) - p0 : min(b, p1) - p0] = True
        self.kind[is_ram] = sv.K_KERNEL
        self.flags[~is_ram] = self.bit("reserved")
        fixed = ~is_ram
        for a, b in lay.reserved:
            if b > p0 and a < p1:
                s = slice(max(a, p0) - p0, min(b, p1) - p0)
                self.kind[s] = np.where(is_ram[s], sv.K_META, sv.K_HOLE)
                self.flags[s] |= self.bit("reserved")
                fixed[s] = True
        img = KERNEL_PA >> 12
        if img + IMAGE_PAGES > p0 and img < p1:
            self.kind[max(img, p0) - p0 : min(img + IMAGE_PAGES, p1) - p0] = sv.K_IMAGE
        # the mix, chosen per 2 MiB block that nothing fixed touches
        blk_free = ~fixed.reshape(-1, BLOCK).any(axis=1)
        ids = np.flatnonzero(blk_free)
        choice = rng.choice(len(BLOCK_MIX), size=len(ids), p=BLOCK_MIX)
        starts = ids * BLOCK
        if lay.p.ram_gib >= 64:
            self._gigantic(starts, choice, rng)
        self._blocks(starts, choice, rng)

    # ------------------------------------------------------------------ encoding helpers
    def bit(self, name: str) -> np.uint64:
        return np.uint64(1 << self.fam.pg[name])

    def spva(self, rows: np.ndarray) -> np.ndarray:
        pfn = np.asarray(rows, np.uint64) + np.uint64(self.p0)
        return np.uint64(VMEMMAP) + pfn * np.uint64(SPAGE)

    def compound(
        self,
        heads,
        order: int,
        kind: int,
        *,
        dtor=1,
        huge=False,
        mapping=0,
        head_flags=0,
        slab=False,
    ) -> None:
        """Aligned compound pages of ``order`` at rows ``heads``, in the family's encoding."""
        fam = self.fam
        heads = np.asarray(heads, np.int64)
        if not len(heads):
            return
        n = 1 << order
        members = (heads[:, None] + np.arange(n)).reshape(-1)
        self.kind[members] = kind
        tails = (heads[:, None] + np.arange(1, n)).reshape(-1)
        self.u64[tails, sv.OFF_LRU // 8] = self.spva(np.repeat(heads, n - 1)) | np.uint64(1)
        self.flags[tails] = 0
        self.flags[heads] |= self.bit("head") | np.uint64(head_flags)
        self.u64[heads, sv.OFF_MAPPING // 8] = mapping
        p1 = heads + 1
        if fam.order_in_flags:
            f1 = np.uint64(order)
            if huge and fam.pg_hugetlb:
                f1 |= self.bit("hugetlb")
            self.flags[p1] = f1
        else:
            self.sp[p1, sv.OFF_DTOR] = sv.HUGETLB_DTOR if huge else dtor
            self.sp[p1, sv.OFF_ORDER] = order
        if huge and fam.hugetlb_type is not None:
            self.u32[heads, sv.OFF_MAPCOUNT // 4] = fam.hugetlb_type
        if slab:
            if fam.slab_type is not None:
                self.u32[heads, sv.OFF_MAPCOUNT // 4] = fam.slab_type
            else:
                self.flags[heads] |= self.bit("slab")

    def buddy(self, heads, order: int) -> None:
        heads = np.asarray(heads, np.int64)
        if not len(heads):
            return
        n = 1 << order
        members = (heads[:, None] + np.arange(n)).reshape(-1)
        self.kind[members] = sv.K_BUDDY
        self.u32[members, sv.OFF_REFCOUNT // 4] = 0
        self.u32[heads, sv.OFF_MAPCOUNT // 4] = self.fam.buddy
        self.u64[heads, sv.OFF_PRIVATE // 8] = order

    # ------------------------------------------------------------------ the mix
    def _gigantic(self, starts: np.ndarray, choice: np.ndarray, rng) -> None:
        """1 GiB hugetlb pages: whole GiBs of free-to-choose blocks, some of them."""
        per = GIB_PAGES // BLOCK
        g = starts // GIB_PAGES
        whole = np.flatnonzero(np.bincount(g, minlength=1) == per)
        pick = whole[rng.random(len(whole)) < GIGANTIC_SHARE]
        if not len(pick):
            return
        heads = pick * GIB_PAGES
        mapped = rng.random(len(heads)) < 0.5
        anon = np.uint64(PAGE_OFFSET + 0x7654320 + 1)
        for sel, mp in ((mapped, anon), (~mapped, 0)):
            for h in heads[sel]:  # a few per TiB: 2^18 rows each
                kind = sv.K_HUGETLB if mp else sv.K_HUGETLB_FREE
                self.compound([h], 18, kind, huge=True, mapping=mp)
        choice[np.isin(g, pick)] = -1

    def _blocks(self, starts: np.ndarray, choice: np.ndarray, rng) -> None:
        anon = np.uint64(PAGE_OFFSET + 0x7654320 + 1)  # anon_vma | PAGE_MAPPING_ANON
        filemap = np.uint64(PAGE_OFFSET + 0x7654400)
        slab_cache = np.uint64(PAGE_OFFSET + 0x7654800)
        pg = self.fam.pg
        lru, swapb, priv = 1 << pg["lru"], 1 << pg["swapbacked"], 1 << pg["private"]
        # free: order 10 where a 1024-aligned pair of blocks is free, else order 9
        b = starts[choice == B_FREE]
        pair = (b % 1024 == 0) & np.isin(b + BLOCK, b)
        o10 = b[pair]
        self.buddy(o10, 10)
        self.buddy(b[~pair & ~np.isin(b - BLOCK, o10)], 9)
        thp = starts[choice == B_THP]
        self.compound(thp, 9, sv.K_THP, dtor=sv.THP_DTOR, mapping=anon, head_flags=lru | swapb)
        h = starts[choice == B_HUGETLB]
        used = rng.random(len(h)) < 0.6
        self.compound(h[used], 9, sv.K_HUGETLB, huge=True, mapping=anon)
        self.compound(h[~used], 9, sv.K_HUGETLB_FREE, huge=True)
        folio = starts[choice == B_FOLIO]
        self.compound(folio, 9, sv.K_FILE_FOLIO, mapping=filemap, head_flags=lru)
        off = (starts[choice == B_OFFLINE][:, None] + np.arange(BLOCK)).reshape(-1)
        self.kind[off] = sv.K_OFFLINE
        self.u32[off, sv.OFF_MAPCOUNT // 4] = self.fam.offline
        self.u32[off, sv.OFF_REFCOUNT // 4] = 0

        groups = (starts[choice == B_MIXED][:, None] + np.arange(0, BLOCK, 16)).reshape(-1)
        gk = rng.choice(len(GROUP_MIX), size=len(groups), p=GROUP_MIX)
        g = groups[gk == G_SPLIT]  # a split top-order block: every order below 4
        for off_, order in ((0, 3), (8, 2), (12, 1), (14, 0), (15, 0)):
            self.buddy(g + off_, order)
        rows = (groups[gk == G_CACHE][:, None] + np.arange(16)).reshape(-1)
        self.kind[rows] = sv.K_CACHE
        self.flags[rows] |= np.uint64(lru)
        self.u64[rows, sv.OFF_MAPPING // 8] = filemap
        pr = rows[rng.random(len(rows)) < 0.1]
        self.kind[pr] = sv.K_CACHE_PRIV
        self.flags[pr] |= np.uint64(priv)
        self.u64[pr, sv.OFF_PRIVATE // 8] = np.uint64(PAGE_OFFSET + 0x7655000)
        g = groups[gk == G_FOLIO2]
        for k in range(4):
            self.compound(g + 4 * k, 2, sv.K_FILE_FOLIO, mapping=filemap, head_flags=lru)
        self.compound(groups[gk == G_MTHP], 4, sv.K_THP, mapping=anon, head_flags=lru | swapb)
        rows = (groups[gk == G_ANON][:, None] + np.arange(16)).reshape(-1)
        self.kind[rows] = sv.K_ANON
        self.flags[rows] |= np.uint64(lru | swapb)
        self.u64[rows, sv.OFF_MAPPING // 8] = anon
        self.u32[rows, sv.OFF_MAPCOUNT // 4] = 0
        g = groups[gk == G_SLAB]
        for sub in (g, g + 8):
            self.compound(sub, 3, sv.K_SLAB, mapping=slab_cache, slab=True)
        rows = (groups[gk == G_KERNEL][:, None] + np.arange(16)).reshape(-1)
        sk = np.array(SINGLES, np.uint8)[rng.choice(len(SINGLES), size=len(rows), p=SINGLE_MIX)]
        self.kind[rows] = sk
        sel = rows[sk == sv.K_PGTABLE]
        pgt = {0xFFFFFF7F: sv.PGTABLE_TYPE_61, 0xBFFFFFFF: 0xEFFFFFFF}.get(self.fam.buddy)
        self.u32[sel, sv.OFF_MAPCOUNT // 4] = 0xF2000000 if pgt is None else pgt
        sel = rows[sk == sv.K_SLAB]
        if self.fam.slab_type is not None:
            self.u32[sel, sv.OFF_MAPCOUNT // 4] = self.fam.slab_type
        else:
            self.flags[sel] |= self.bit("slab")
        self.u64[sel, sv.OFF_MAPPING // 8] = slab_cache
        sel = rows[sk == sv.K_SWAPCACHE]
        self.flags[sel] |= self.bit("swapcache") | self.bit("swapbacked")
        sel = rows[sk == sv.K_HWPOISON]
        self.flags[sel] |= self.bit("hwpoison")
        sel = rows[sk == sv.K_OFFLINE]
        self.u32[sel, sv.OFF_MAPCOUNT // 4] = self.fam.offline


def class_lut(fam, level: int) -> np.ndarray:
    """PageClass per kind at ``level`` (synthvmcore's meaning of each kind)."""
    lut = np.zeros(sv.NKINDS, np.uint8)
    for k in range(sv.NKINDS):
        tests, cls = sv._rules(k, fam, True)
        for b, c in tests:
            if level & b:
                cls = c
                break
        lut[k] = cls
    return lut


def generate(p: Params, path: Path, say=lambda s: None) -> dict:
    """Write the vmcore of ``p`` to ``path``; return its manifest (pages per class)."""
    lay = Layout(p)
    info, meta_writes = _metadata(lay)
    rng = np.random.default_rng(p.seed)
    text, rand = sv._pools(rng)
    notes = b"".join(sv._note(b"CORE", 1, bytes(336)) for _ in range(2))
    notes += sv._note(b"VMCOREINFO", 0, info.encode())
    segs = lay.loads()
    nph = 1 + len(segs)
    off = -(-(64 + 56 * nph + len(notes)) // PAGE) * PAGE
    phdrs = struct.pack("<IIQQQQQQ", 4, 0, 64 + 56 * nph, 0, 0, len(notes), len(notes), 0)
    placed = []  # (first pfn, npages, file offset) of the RAM loads
    text_off = off  # the kernel-text PT_LOAD comes first
    for i, (paddr, vaddr, npg) in enumerate(segs):
        phdrs += struct.pack(
            "<IIQQQQQQ", 1, 7, off, vaddr & sv.U64, paddr, npg * PAGE, npg * PAGE, 0
        )
        if i:
            placed.append((paddr >> 12, npg, off))
        off += npg * PAGE
    ehdr = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    ehdr += struct.pack("<HHIQQQIHHHHHH", 4, 62, 1, 0, 64, 0, 0, 64, 56, nph, 0, 0, 0)
    lut = class_lut(lay.fam, 31)
    counts = np.zeros(256, np.int64)
    zero_kept = 0
    starts = [a for a, _, _ in placed]

    def file_off(pa: int) -> int:
        i = max(k for k, a in enumerate(starts) if a << 12 <= pa)
        a, npg, foff = placed[i]
        if pa + 1 > (a + npg) << 12:
            raise ValueError(f"{pa:#x} is not in RAM")
        return foff + pa - (a << 12)

    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    t0 = time.monotonic()
    try:
        os.ftruncate(fd, off)
        os.pwrite(fd, ehdr + phdrs + notes, 0)
        # the kernel image (text-like pages) in both of its PT_LOADs, then the metadata
        img = np.ascontiguousarray(text[np.arange(IMAGE_PAGES) % len(text)])
        for base in (text_off, file_off(KERNEL_PA)):
            os.pwrite(fd, img, base)
        for pa, data in meta_writes:
            os.pwrite(fd, data, file_off(pa))
            if KERNEL_PA <= pa < KERNEL_PA + (IMAGE_PAGES << 12):  # also in the text PT_LOAD
                os.pwrite(fd, data, text_off + pa - KERNEL_PA)
        step = GIB_PAGES
        for c0 in range(0, lay.nsec * SEC_PAGES, step):
            c1 = min(c0 + step, lay.nsec * SEC_PAGES)
            ch = _Chunk(lay, c0, c1, rng)
            for s in range(c0 // SEC_PAGES, c1 // SEC_PAGES):
                if s in lay.memmap_pa:
                    rows = ch.sp[s * SEC_PAGES - c0 : (s + 1) * SEC_PAGES - c0]
                    os.pwrite(fd, rows, file_off(lay.memmap_pa[s]))
            cls = lut[ch.kind[: max(0, min(c1, lay.max_pfn) - c0)]]
            counts += np.bincount(cls, minlength=256)
            # data of the kept pages the layout does not fill (slab, kernel, page tables)
            own = ~np.isin(ch.kind[: len(cls)], [sv.K_META, sv.K_IMAGE, sv.K_RESERVED])
            rows = np.flatnonzero((cls == PageClass.KEEP) & own)
            what = rng.choice(3, size=len(rows), p=KEPT_CONTENT)
            zero_kept += int(np.count_nonzero(what == 0))
            rows, what = rows[what != 0], what[what != 0]
            if len(rows):
                pick = rng.integers(0, 1 << 16, len(rows))
                data = np.where(
                    (what == 1)[:, None], text[pick % len(text)], rand[pick % len(rand)]
                )
                brk = np.flatnonzero(np.diff(rows) != 1) + 1
                ends = np.r_[brk, len(rows)].tolist()
                for a, b in zip(np.r_[0, brk].tolist(), ends, strict=True):
                    os.pwrite(fd, data[a:b], file_off((c0 + int(rows[a])) << 12))
            if c0 // step % 64 == 63:
                say(f"  {c1 / GIB_PAGES:.0f} GiB of {p.ram_gib} ({time.monotonic() - t0:.0f} s)")
        os.fsync(fd)
    finally:
        os.close(fd)
    # RAM pages the layout fills with data and never marks zero: the mem_map, image, metadata
    manifest = {
        "params": {"ram_gib": p.ram_gib, "kernel": p.kernel, "seed": p.seed},
        "generator_version": GEN_VERSION,
        "ram_pages": sum(b - a for a, b in lay.ram),
        "ram_ranges": lay.ram,
        "pages_d31": {PageClass(c).name.lower(): int(n) for c, n in enumerate(counts) if n},
        "kept_zero_pages": zero_kept,
        "seconds": round(time.monotonic() - t0, 1),
    }
    os.replace(tmp, path)
    return manifest


def ensure(ram_gib: int, kernel: str = "6.1", seed: int = 1, say=lambda s: None) -> Path:
    """The cached vmcore of these parameters, generated first if missing."""
    p = Params(ram_gib, kernel, seed)
    d = cache_dir() / "scale" / p.key
    path = d / "vmcore"
    if path.exists() and (d / "manifest.json").exists():
        return path
    d.mkdir(parents=True, exist_ok=True)
    say(f"generating {path} ({ram_gib} GiB of RAM) ...")
    m = generate(p, path, say)
    (d / "manifest.json").write_text(json.dumps(m, indent=1) + "\n")
    say(f"  made in {m['seconds']} s, {disk_bytes(path) / (1 << 30):.2f} GiB on disk")
    return path


def disk_bytes(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ram_gib", type=int, nargs="+")
    ap.add_argument("--kernel", default="6.1", choices=sv.KERNELS)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    for g in a.ram_gib:
        print(ensure(g, a.kernel, a.seed, say=lambda s: print(s, file=sys.stderr, flush=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
