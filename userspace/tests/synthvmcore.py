"""Synthetic x86_64 ELF vmcores with a known answer, for tests and benchmarks.

``make_vmcore(path, kernel="6.1", ...)`` lays out what ``/proc/vmcore`` of a crashed kernel holds
(see docs/page-types.md): an ELF64 core with one PT_LOAD per RAM range (plus the kernel-text
PT_LOAD that kexec_file_load adds), a PT_NOTE with NT_PRSTATUS notes and a VMCOREINFO note carrying
the keys that kernel version really exports (docs/page-types.md §2.1), page tables reachable from
``init_top_pgt`` (4/5-level, 1G/2M/4K leaves, phys_base, KASLR slide, optional sme_mask), the
mem_section root array, vmemmap struct pages of every page class in that version's encoding, and
``init_uts_ns`` so that makedumpfile runs on the file too.

The returned :class:`Synth` records what was *placed*: ``expected_classes(level)`` is derived
from the generator's own bookkeeping (one "kind" per PFN), never by running a classifier.
Everything per page is numpy; the file is written sparse (all-zero stretches are not written).
"""

from __future__ import annotations

import bisect
import os
import struct
from dataclasses import dataclass, field, replace

import numpy as np

from dumpfilter.dumplevel import DumpLevel
from dumpfilter.pageclass import PageClass

DL_ZERO, DL_CACHE, DL_CACHE_PRIVATE = DumpLevel.ZERO, DumpLevel.CACHE, DumpLevel.CACHE_PRIVATE
DL_USER, DL_FREE = DumpLevel.USER, DumpLevel.FREE
PAGE = 4096
PAGE_SHIFT = 12
SPAGE = 64  # SIZE(page)
START_KERNEL_MAP = 0xFFFFFFFF80000000
KERNEL_TEXT_VA = 0xFFFFFFFF81000000  # __START_KERNEL without KASLR
U64 = (1 << 64) - 1

# struct page layout on x86_64 (docs/page-types.md §2.2); exported through VMCOREINFO.
OFF_FLAGS, OFF_LRU, OFF_MAPPING, OFF_PRIVATE, OFF_MAPCOUNT, OFF_REFCOUNT = 0, 8, 24, 40, 48, 52
OFF_DTOR, OFF_ORDER = 16, 17  # in page[1]: compound_dtor/_folio_dtor, compound_order/_folio_order

# ---------------------------------------------------------------------------------------------
# Kernel encodings.  Each family: flag bit numbers, exported page-type values, which keys exist.
# Bit numbers deliberately differ between families so a reader that hard-codes them fails.


@dataclass(frozen=True)
class Family:
    name: str
    osrelease: str
    pg: dict[str, int]  # page-flag bit numbers exported as NUMBER(PG_x) (+ unexported ones)
    buddy: int
    offline: int
    slab_type: int | None  # PAGE_SLAB_MAPCOUNT_VALUE (6.10+)
    hugetlb_type: int | None  # PAGE_HUGETLB_MAPCOUNT_VALUE (6.9+)
    hugetlb_dtor: bool  # HUGETLB_PAGE_DTOR + compound_dtor/order (<= 6.5)
    folio_offsets: bool  # OFFSET(folio._folio_dtor/_folio_order) (6.3-6.5)
    pg_hugetlb: bool  # NUMBER(PG_hugetlb), order in page[1].flags (6.6-6.8)
    order_in_flags: bool  # page[1].flags & 0xff is the order (6.6+)
    offline_needs_hugetlb: bool  # OFFLINE only exported with CONFIG_HUGETLB_PAGE (6.1-6.8)
    unaccepted: bool  # PAGE_UNACCEPTED_MAPCOUNT_VALUE may be exported (6.16+)
    compound_info: bool  # OFFSET(page.compound_info) instead of compound_head (7.1+)
    vmemmap_symbol: bool  # SYMBOL(vmemmap), NUMBER(VMALLOC_START) (6.9+)
    signed_print: bool = True  # NUMBER() printed as a signed long
    anon_key: str = "PAGE_MAPPING_ANON"  # the patched kernel's name for the anon bit


_PG_OLD = dict(
    lru=4,
    slab=9,
    swapcache=10,
    reserved=12,
    private=13,
    head=16,
    swapbacked=19,
    hwpoison=23,
    table=0,
)
_PG_66 = dict(
    lru=5,
    head=6,
    slab=11,
    swapcache=12,
    reserved=14,
    private=15,
    swapbacked=18,
    hwpoison=22,
    hugetlb=8,
)
_PG_NEW = dict(lru=5, head=6, swapcache=10, reserved=13, private=14, swapbacked=17, hwpoison=21)

# Each family is the one before it plus what that kernel release changed
# (docs/page-types.md §2.1), so the table reads as a change log.
_F61 = Family(
    "6.1",
    "6.1.0-synthetic-amd64",
    _PG_OLD,
    buddy=0xFFFFFF7F,
    offline=0xFFFFFEFF,
    slab_type=None,
    hugetlb_type=None,
    hugetlb_dtor=True,
    folio_offsets=False,
    pg_hugetlb=False,
    order_in_flags=False,
    offline_needs_hugetlb=True,
    unaccepted=False,
    compound_info=False,
    vmemmap_symbol=False,
)
# 6.3: page[1] compound_{dtor,order} become folio._folio_{dtor,order}
_F63 = replace(_F61, name="6.3", osrelease="6.4.0-4-amd64", folio_offsets=True)
# 6.6: HUGETLB_PAGE_DTOR gone; PG_hugetlb in page[1].flags, order in its low byte
_F66 = replace(
    _F63,
    name="6.6",
    osrelease="6.6.15-amd64",
    pg=_PG_66,
    hugetlb_dtor=False,
    folio_offsets=False,
    pg_hugetlb=True,
    order_in_flags=True,
)
# 6.9: hugetlb becomes a page type; OFFLINE exported unconditionally; SYMBOL(vmemmap)
_F69 = replace(
    _F66,
    name="6.9",
    osrelease="6.9.7-amd64",
    pg=_PG_66 | {"hugetlb": -1},
    hugetlb_type=0xFFFFF7FF,
    pg_hugetlb=False,
    offline_needs_hugetlb=False,
    vmemmap_symbol=True,
)
# 6.10: slab becomes a page type; types re-encoded below PAGE_TYPE_BASE 0x80000000
_F610 = replace(
    _F69,
    name="6.10",
    osrelease="6.10.6-amd64",
    pg=_PG_NEW,
    buddy=0xBFFFFFFF,
    offline=0xDFFFFFFF,
    slab_type=0xFDFFFFFF,
    hugetlb_type=0xFBFFFFFF,
    signed_print=False,
)
# 6.12: one type per page, a value in the top byte
_F612 = replace(
    _F610,
    name="6.12",
    osrelease="6.12.43+deb13-amd64",
    buddy=0xF0000000,
    offline=0xF1000000,
    slab_type=0xF5000000,
    hugetlb_type=0xF4000000,
    signed_print=True,
)
# 6.16: unaccepted memory exported as a page type
_F616 = replace(_F612, name="6.16", osrelease="6.16.3-amd64", unaccepted=True)
# 7.1: OFFSET(page.compound_head) renamed OFFSET(page.compound_info)
_F71 = replace(_F616, name="7.1", osrelease="7.1.0-rc2", compound_info=True)
# 7.2: a real Debian 7.2.13 dump has 7.1's struct page offsets, page flag and page type
# values; the kernel calls the anon bit FOLIO_MAPPING_ANON, and the 7.2 patch exports it so.
_F72 = replace(_F71, name="7.2", osrelease="7.2.13+deb14-amd64", anon_key="FOLIO_MAPPING_ANON")

FAMILIES: dict[str, Family] = {
    f.name: f for f in (_F61, _F63, _F66, _F69, _F610, _F612, _F616, _F71, _F72)
}

_ALIASES = {
    "6.2": "6.1",
    "6.4": "6.3",
    "6.5": "6.3",
    "6.7": "6.6",
    "6.8": "6.6",
    "6.11": "6.10",
    "6.13": "6.12",
    "6.14": "6.12",
    "6.15": "6.12",
    "6.17": "6.16",
    "6.18": "6.16",
    "6.19": "6.16",
    "7.0": "6.16",
}

KERNELS = tuple(FAMILIES)
HUGETLB_DTOR = 2
THP_DTOR = 3
PGTABLE_TYPE_61 = 0xFFFFFDFF  # PG_table cleared in the -1 word (6.1 page types)


def family(kernel: str) -> Family:
    try:
        return FAMILIES[_ALIASES.get(kernel, kernel)]
    except KeyError:
        raise ValueError(f"unknown synthetic kernel {kernel!r}") from None


# ---------------------------------------------------------------------------------------------
# What the generator places.  One kind per PFN; every page of a buddy block or compound page
# carries its range's kind, so the expected class is a lookup.

K_HOLE, K_KERNEL, K_RESERVED, K_META, K_IMAGE, K_IMAGE_TRAP = 0, 1, 2, 3, 4, 5
K_BUDDY, K_SLAB, K_SLAB_TRICKY, K_PGTABLE = 6, 7, 8, 9
K_CACHE, K_CACHE_PRIV, K_SWAPCACHE, K_OWNER_PRIV, K_FILE_FOLIO, K_FAKEHEAD_CACHE = (
    10,
    11,
    12,
    13,
    14,
    15,
)
K_ANON, K_THP, K_HUGETLB, K_HUGETLB_FREE = 16, 17, 18, 19
K_HWPOISON, K_HWPOISON_CACHE, K_OFFLINE, K_UNACCEPTED = 20, 21, 22, 23
NKINDS = 24

KIND_NAMES = {
    v: k[2:].lower() for k, v in globals().items() if k.startswith("K_") and isinstance(v, int)
}


def _rules(kind: int, fam: Family, hugetlb: bool) -> tuple[list[tuple[int, int]], int]:
    """(ordered (dump-level bit, class) tests, class when none applies) for one kind.

    This is the *meaning* of what was placed (docs/page-types.md §4.1, §4.3): cache pages go
    at bit 2 unless they have private data, then at bit 4; anon and hugetlb at bit 8; buddy and
    unaccepted at bit 16; hwpoison and offline at any level, after the level-bit tests.
    """
    cache = [(DL_CACHE, PageClass.CACHE), (DL_CACHE_PRIVATE, PageClass.CACHE)]
    table: dict[int, tuple[list[tuple[int, int]], int]] = {
        K_HOLE: ([], PageClass.HOLE),
        K_BUDDY: ([(DL_FREE, PageClass.FREE)], PageClass.KEEP),
        K_UNACCEPTED: ([(DL_FREE, PageClass.FREE)], PageClass.KEEP),
        K_CACHE: (cache, PageClass.KEEP),
        K_SWAPCACHE: (cache, PageClass.KEEP),
        K_FILE_FOLIO: (cache, PageClass.KEEP),
        K_FAKEHEAD_CACHE: (cache, PageClass.KEEP),
        K_CACHE_PRIV: ([(DL_CACHE_PRIVATE, PageClass.CACHE_PRIVATE)], PageClass.KEEP),
        K_ANON: ([(DL_USER, PageClass.USER)], PageClass.KEEP),
        K_THP: ([(DL_USER, PageClass.USER)], PageClass.KEEP),
        K_HUGETLB: ([(DL_USER, PageClass.USER)], PageClass.KEEP),
        K_HUGETLB_FREE: ([(DL_USER, PageClass.USER)], PageClass.KEEP),
        K_HWPOISON: ([], PageClass.HWPOISON),
        K_HWPOISON_CACHE: (cache, PageClass.HWPOISON),
        K_OFFLINE: (
            [],
            PageClass.OFFLINE if (hugetlb or not fam.offline_needs_hugetlb) else PageClass.KEEP,
        ),
    }
    return table.get(kind, ([], PageClass.KEEP))


# ---------------------------------------------------------------------------------------------


@dataclass
class Synth:
    """What a synthetic vmcore contains; the answer key for tests."""

    path: str
    kernel: str
    family: Family
    ram: list[tuple[int, int]]
    max_pfn: int
    page_size: int
    vmcoreinfo: str
    phys_base: int
    kernel_offset: int
    page_offset: int
    vmemmap_base: int
    five_level: bool
    sme_mask: int
    leaf: str
    hugetlb: bool
    unaccepted: bool
    nr_cpus: int
    image_pfns: tuple[int, int]
    kind: np.ndarray  # uint8 per PFN in [0, max_pfn)
    ckind: np.ndarray  # uint8 per PFN: 0 zero, 1 text, 2 random (before metadata overlays)
    cidx: np.ndarray  # uint16 pool index
    text_pool: np.ndarray
    rand_pool: np.ndarray
    writes: list[tuple[int, np.ndarray]] = field(repr=False, default_factory=list)
    _write_starts: list[int] = field(repr=False, default_factory=list)
    # physical byte ranges [a, b) inside RAM pages that no PT_LOAD holds: read as zeros
    missing: list[tuple[int, int]] = field(default_factory=list)

    def expected_classes(self, dump_level: int, *, zero: bool = False) -> np.ndarray:
        """PageClass per PFN at ``dump_level`` (HOLE outside RAM), from what was placed.

        With ``zero=True`` and bit 1 in the level, kept pages whose contents are all zero
        become ZERO (what a writer decides from the data; scans never produce ZERO).
        """
        lut = np.zeros(NKINDS, np.uint8)
        for k in range(NKINDS):
            tests, default = _rules(k, self.family, self.hugetlb)
            cls = default
            for bit, c in tests:
                if dump_level & bit:
                    cls = c
                    break
            lut[k] = cls
        out = lut[self.kind]
        if zero and dump_level & DL_ZERO:
            out[(out == PageClass.KEEP) & self.zero_mask()] = PageClass.ZERO
        return out

    def kept(self, dump_level: int) -> np.ndarray:
        """Bool per PFN: dumpable after the struct-page scan (the 2nd bitmap before zero pages)."""
        return self.expected_classes(dump_level) == PageClass.KEEP

    def zero_mask(self) -> np.ndarray:
        """Bool per PFN: RAM page whose contents are all zero (metadata writes included)."""
        z = (self.ckind == 0) & (self.kind != K_HOLE)
        touched = np.zeros(len(z), bool)
        for pa, data in self.writes:
            touched[pa >> PAGE_SHIFT : (pa + len(data) + PAGE - 1) >> PAGE_SHIFT] = True
        check = np.flatnonzero(z & touched)
        win = 4096
        for w in np.unique(check // win):
            lo = int(w) * win
            cnt = min(win, len(z) - lo)
            nz = self.pages(lo, cnt).any(axis=1)
            z[lo : lo + cnt] &= ~nz
        return z

    def pages(self, pfn: int, count: int) -> np.ndarray:
        """Expected bytes of ``count`` pages from ``pfn``: (count, 4096) uint8."""
        out = np.zeros((count, PAGE), np.uint8)
        ck = self.ckind[pfn : pfn + count]
        ci = self.cidx[pfn : pfn + count]
        t = ck == 1
        out[t] = self.text_pool[ci[t] % len(self.text_pool)]
        r = ck == 2
        out[r] = self.rand_pool[ci[r] % len(self.rand_pool)]
        lo, hi = pfn << PAGE_SHIFT, (pfn + count) << PAGE_SHIFT
        flat = out.reshape(-1)
        i = max(0, bisect.bisect_right(self._write_starts, lo) - 1)
        while i < len(self.writes) and self.writes[i][0] < hi:
            pa, data = self.writes[i]
            a, b = max(pa, lo), min(pa + len(data), hi)
            if a < b:
                flat[a - lo : b - lo] = data[a - pa : b - pa]
            i += 1
        for a, b in self.missing:
            a, b = max(a, lo), min(b, hi)
            if a < b:
                flat[a - lo : b - lo] = 0
        return out

    def page(self, pfn: int) -> bytes:
        """Expected bytes of one page."""
        return self.pages(pfn, 1).tobytes()

    def pfns_of(self, kind: int) -> np.ndarray:
        return np.flatnonzero(self.kind == kind)


# ---------------------------------------------------------------------------------------------
# Physical memory bookkeeping


class _Alloc:
    """Bump allocator of physical pages from RAM, for kernel metadata (kept pages)."""

    def __init__(self, is_ram: np.ndarray, used: np.ndarray, start_pfn: int):
        self.is_ram = is_ram
        self.used = used
        self.cursor = start_pfn

    def alloc(self, npages: int, align_pages: int = 1) -> int:
        """First fit from the cursor; returns the first PFN.  Pages become K_META."""
        p = -(-self.cursor // align_pages) * align_pages
        n = len(self.is_ram)
        while p + npages <= n:
            seg_ok = self.is_ram[p : p + npages] & ~self.used[p : p + npages]
            if seg_ok.all():
                self.used[p : p + npages] = True
                self.cursor = p + npages
                return p
            bad = p + int(np.flatnonzero(~seg_ok)[-1]) + 1
            p = -(-bad // align_pages) * align_pages
        raise ValueError(f"synthetic RAM too small to allocate {npages} pages")


class _PageTables:
    """x86_64 page tables built in Python dicts and written out as physical pages."""

    ADDR = 0x000FFFFFFFFFF000
    TABLE_FLAGS = 0x63  # P RW A D
    LEAF_FLAGS = 0x163 | (1 << 63)  # P RW A D G NX

    def __init__(self, alloc: _Alloc, top_pa: int, five_level: bool, sme: int):
        self.alloc = alloc
        self.top = top_pa
        self.five = five_level
        self.sme = sme
        self.tables: dict[int, np.ndarray] = {top_pa: np.zeros(512, np.uint64)}

    def _child(self, table: int, idx: int) -> int:
        t = self.tables[table]
        e = int(t[idx])
        if e & 1:
            if e & 0x80:
                raise ValueError("mapping over a large leaf")
            return e & self.ADDR & ~self.sme
        pa = self.alloc.alloc(1) << PAGE_SHIFT
        self.tables[pa] = np.zeros(512, np.uint64)
        t[idx] = pa | self.sme | self.TABLE_FLAGS
        return pa

    def map(self, va: int, pa: int, size: int) -> None:
        """Map one leaf of ``size`` (4K, 2M or 1G) at ``va`` -> ``pa``."""
        t = self.top
        if self.five:
            t = self._child(t, (va >> 48) & 511)
        t = self._child(t, (va >> 39) & 511)
        pse = 0x80 if size != PAGE else 0
        leaf_entry = pa | self.sme | self.LEAF_FLAGS | pse
        if size == 1 << 30:
            self.tables[t][(va >> 30) & 511] = leaf_entry
            return
        t = self._child(t, (va >> 30) & 511)
        if size == 1 << 21:
            if int(self.tables[t][(va >> 21) & 511]) & 1:
                return
            self.tables[t][(va >> 21) & 511] = leaf_entry
            return
        t = self._child(t, (va >> 21) & 511)
        self.tables[t][(va >> 12) & 511] = leaf_entry


# ---------------------------------------------------------------------------------------------


def _note(name: bytes, ntype: int, desc: bytes) -> bytes:
    n = name + b"\0"
    hdr = struct.pack("<III", len(n), len(desc), ntype)
    pad = lambda b: b + b"\0" * (-len(b) % 4)  # noqa: E731
    return hdr + pad(n) + pad(desc)


def _num(fam: Family, v: int) -> str:
    """NUMBER() text: %ld of the kernel's (int) value; 6.10's enum may print unsigned."""
    if fam.signed_print and v >= 1 << 31:
        v -= 1 << 32
    return str(v)


def layout_defaults(kernel: str, **overrides) -> dict:
    """The layout values ``_vmcoreinfo`` needs, as a default x86_64 4-level dump would have them
    (tests that only need VMCOREINFO text, not a whole vmcore)."""
    fam = family(kernel)
    s = dict(
        fam=fam,
        uts_va=0xFFFFFFFF82000000,
        stext=0xFFFFFFFF81000000,
        vmalloc=0,
        vmemmap=0xFFFFEA0000000000,
        mem_section=0xFFFF888000100000,
        nr_roots=2048,
        section_bits=27,
        five=False,
        hwpoison=True,
        hugetlb=True,
        unaccepted=fam.unaccepted,
        phys_base=0,
        init_top_pgt=0xFFFFFFFF82000000,
        kernel_offset=0,
        sme_mask=0,
    )
    s.update(overrides)
    return s


def vmcoreinfo_text(kernel: str, **overrides) -> str:
    """VMCOREINFO of a synthetic dump of ``kernel`` with ``layout_defaults``."""
    return _vmcoreinfo(layout_defaults(kernel, **overrides))


def _vmcoreinfo(s: dict) -> str:
    fam: Family = s["fam"]
    pg = fam.pg
    lines = [
        f"OSRELEASE={fam.osrelease}",
        "BUILD-ID=4e1d1f0c5b6a7e2d9f00112233445566778899aa",
        f"PAGESIZE={PAGE}",
        f"SYMBOL(init_uts_ns)={s['uts_va']:x}",
        "OFFSET(uts_namespace.name)=0",
        f"SYMBOL(_stext)={s['stext']:x}",
    ]
    patched = s.get("patched", False)
    if fam.vmemmap_symbol or patched:  # our kernel patch adds both to 6.1 as 6.9+ spell them
        lines.append(f"NUMBER(VMALLOC_START)=0x{s['vmalloc']:x}")
        lines.append(f"SYMBOL(vmemmap)={s.get('vmemmap_symbol') or s['vmemmap']:x}")
    else:
        lines.append(f"SYMBOL(vmap_area_list)={s['stext'] + 0x1E00000:x}")
    lines += [
        f"SYMBOL(mem_section)={s['mem_section']:x}",
        f"LENGTH(mem_section)={s['nr_roots']}",
        "SIZE(mem_section)=16",
        "OFFSET(mem_section.section_mem_map)=0",
        f"NUMBER(SECTION_SIZE_BITS)={s['section_bits']}",
        f"NUMBER(MAX_PHYSMEM_BITS)={52 if s['five'] else 46}",
        *([f"NUMBER(SECTION_MAP_LAST_BIT)={s.get('section_map_last_bit', 5)}"] if patched else []),
        f"SIZE(page)={s.get('spage', SPAGE)}",
        "SIZE(pglist_data)=172032",
        "SIZE(zone)=1600",
        "SIZE(free_area)=88",
        "SIZE(list_head)=16",
        "SIZE(nodemask_t)=128",
        f"OFFSET(page.flags)={OFF_FLAGS}",
        f"OFFSET(page._refcount)={OFF_REFCOUNT}",
        f"OFFSET(page.mapping)={OFF_MAPPING}",
        f"OFFSET(page.lru)={OFF_LRU}",
        f"OFFSET(page._mapcount)={OFF_MAPCOUNT}",
        f"OFFSET(page.private)={OFF_PRIVATE}",
    ]
    if fam.hugetlb_dtor and not fam.folio_offsets:
        lines += [
            f"OFFSET(page.compound_dtor)={OFF_DTOR}",
            f"OFFSET(page.compound_order)={OFF_ORDER}",
        ]
    if fam.folio_offsets:
        lines += [
            f"OFFSET(folio._folio_dtor)={s.get('spage', SPAGE) + OFF_DTOR}",
            f"OFFSET(folio._folio_order)={s.get('spage', SPAGE) + OFF_ORDER}",
        ]
    key = "compound_info" if fam.compound_info else "compound_head"
    lines += [
        f"OFFSET(page.{key})={OFF_LRU}",
        "OFFSET(pglist_data.node_zones)=0",
        "OFFSET(pglist_data.nr_zones)=171232",
        "OFFSET(pglist_data.node_start_pfn)=171240",
        "OFFSET(pglist_data.node_spanned_pages)=171256",
        "OFFSET(pglist_data.node_id)=171264",
        "OFFSET(zone.free_area)=192",
        "OFFSET(zone.vm_stat)=1408",
        "OFFSET(zone.spanned_pages)=96",
        "OFFSET(free_area.free_list)=0",
        "OFFSET(list_head.next)=0",
        "OFFSET(list_head.prev)=8",
        "LENGTH(zone.free_area)=11",
        "NUMBER(NR_FREE_PAGES)=0",
    ]
    for flag in ("lru", "private", "swapcache", "swapbacked"):
        lines.append(f"NUMBER(PG_{flag})={pg[flag]}")
    if "slab" in pg and fam.slab_type is None:
        lines.append(f"NUMBER(PG_slab)={pg['slab']}")
    if s["hwpoison"]:
        lines.append(f"NUMBER(PG_hwpoison)={pg['hwpoison']}")
    lines.append(f"NUMBER(PG_head_mask)={1 << pg['head']}")
    if patched:
        lines.append(f"NUMBER({fam.anon_key})={1 << s.get('anon_bit', 0)}")
        lines.append(f"NUMBER(PG_reserved)={pg['reserved']}")
    lines.append(f"NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)={_num(fam, fam.buddy)}")
    if patched and fam.buddy & 0xFFFFFF:  # 6.1-6.11: PageType() base/mask encoding
        base = 0xF0000000 if fam.buddy == 0xFFFFFF7F else 0x80000000
        lines.append(f"NUMBER(PAGE_TYPE_BASE)={base}")
        lines.append(f"NUMBER(PAGE_MAPCOUNT_RESERVE)={-128 if base == 0xF0000000 else -65536}")
    elif patched:  # 6.12+: the type is the top byte
        lines.append(f"NUMBER(PAGE_TYPE_SHIFT)={s.get('page_type_shift', 24)}")
    if fam.slab_type is not None:
        lines.append(f"NUMBER(PAGE_SLAB_MAPCOUNT_VALUE)={_num(fam, fam.slab_type)}")
    if s["hugetlb"]:
        if fam.hugetlb_dtor:
            lines.append(f"NUMBER(HUGETLB_PAGE_DTOR)={HUGETLB_DTOR}")
        if fam.pg_hugetlb:
            lines.append(f"NUMBER(PG_hugetlb)={pg['hugetlb']}")
    if fam.hugetlb_type is not None:
        lines.append(f"NUMBER(PAGE_HUGETLB_MAPCOUNT_VALUE)={_num(fam, fam.hugetlb_type)}")
    if s["hugetlb"] or not fam.offline_needs_hugetlb:
        lines.append(f"NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)={_num(fam, fam.offline)}")
    if s["unaccepted"]:
        lines.append(f"NUMBER(PAGE_UNACCEPTED_MAPCOUNT_VALUE)={_num(fam, 0xF7000000)}")
    lines += [
        f"NUMBER(phys_base)={_signed64(s['phys_base'])}",
        f"SYMBOL(init_top_pgt)={s['init_top_pgt']:x}",
        f"NUMBER(pgtable_l5_enabled)={1 if s['five'] else 0}",
        f"KERNELOFFSET={s['kernel_offset']:x}",
        "NUMBER(KERNEL_IMAGE_SIZE)=1073741824",
        f"NUMBER(sme_mask)={s['sme_mask']}",
        *(
            [f"NUMBER(page_offset_base)=0x{s.get('page_offset', 0xFFFF888000000000):x}"]
            if patched
            else []
        ),
        "CRASHTIME=1764130000",
    ]
    return "\n".join(lines) + "\n"


def _signed64(v: int) -> int:
    v &= U64
    return v - (1 << 64) if v >> 63 else v


def _merge(ram: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for a, b in sorted(ram):
        if a >= b:
            continue
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


_WORDS = (
    b"kernel panic sysrq crash dump page frame buddy slab vmcore mapping offset "
    b"struct memory section filter zone node order folio tail head lru anon swap "
    b"cache private hugetlb offline poison the of and to in is for with on"
).split()


def _pools(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    text = np.empty((64, PAGE), np.uint8)
    for i in range(len(text)):
        words = rng.choice(len(_WORDS), 900)
        t = b" ".join(_WORDS[w] for w in words)
        t = (t + b"\n") * (PAGE // len(t) + 1)
        text[i] = np.frombuffer(t[:PAGE], np.uint8)
    rand = rng.integers(0, 256, (256, PAGE), dtype=np.uint8)
    rand[:, 0] |= 1  # never all zero
    return text, rand


@dataclass
class _StructPages:
    """The struct page array being written, and what each PFN was made to be (``kind``)."""

    fam: Family
    sp: np.ndarray  # (span, SIZE(page)) bytes, vmemmap order
    kind: np.ndarray  # K_* per PFN
    vmemmap_base: int

    def __post_init__(self) -> None:
        self.u64 = self.sp.view(np.uint64)
        self.u32 = self.sp.view(np.uint32)
        self.flags = self.u64[:, OFF_FLAGS // 8]

    def spva(self, pfn):
        """The vmemmap address of the struct page of ``pfn``."""
        return np.uint64(self.vmemmap_base) + np.asarray(pfn, np.uint64) * np.uint64(
            self.sp.shape[1]
        )

    def bit(self, name: str) -> np.uint64:
        return np.uint64(1 << self.fam.pg[name])

    def set_compound(
        self,
        heads: np.ndarray,
        order: int,
        head_kind: int,
        *,
        dtor: int = 1,
        hugetlb_page: bool = False,
        mapping: np.ndarray | int = 0,
        head_flags: int = 0,
        slab: bool = False,
    ) -> None:
        """Heads + tails of aligned compound pages of ``order``, in the family's encoding."""
        n = 1 << order
        heads = np.asarray(heads, np.int64)
        if len(heads) == 0:
            return
        members = (heads[:, None] + np.arange(n)[None, :]).reshape(-1)
        self.kind[members] = head_kind
        tails = (heads[:, None] + np.arange(1, n)[None, :]).reshape(-1)
        headof = np.repeat(heads, n - 1)
        self.u64[tails, OFF_LRU // 8] = self.spva(headof) | np.uint64(1)
        self.flags[tails] = 0
        self.flags[heads] |= self.bit("head") | np.uint64(head_flags)
        self.u64[heads, OFF_MAPPING // 8] = mapping
        p1 = heads + 1
        if self.fam.order_in_flags:
            f1 = np.uint64(order)
            if hugetlb_page and self.fam.pg_hugetlb:
                f1 |= self.bit("hugetlb")
            self.flags[p1] = f1
        else:
            self.sp[p1, OFF_DTOR] = HUGETLB_DTOR if hugetlb_page else dtor
            self.sp[p1, OFF_ORDER] = order
        if hugetlb_page and self.fam.hugetlb_type is not None:
            self.u32[heads, OFF_MAPCOUNT // 4] = self.fam.hugetlb_type
        if slab:
            if self.fam.slab_type is not None:
                self.u32[heads, OFF_MAPCOUNT // 4] = self.fam.slab_type
            else:
                self.flags[heads] |= self.bit("slab")

    def set_buddy(self, heads: np.ndarray, order: int) -> None:
        heads = np.asarray(heads, np.int64)
        n = 1 << order
        self.kind[(heads[:, None] + np.arange(n)[None, :]).reshape(-1)] = K_BUDDY
        self.u32[heads, OFF_MAPCOUNT // 4] = self.fam.buddy
        self.u32[heads, OFF_REFCOUNT // 4] = 0
        self.u64[heads, OFF_PRIVATE // 8] = order
        tails = (heads[:, None] + np.arange(1, n)[None, :]).reshape(-1)
        self.u32[tails, OFF_REFCOUNT // 4] = 0


def _mem_sections(
    alloc: _Alloc, da, present: list[int], five_level: bool, section_bits: int,
    vmemmap_base: int, section_flags: int,
) -> tuple[int, int, list[tuple[int, np.ndarray]]]:  # fmt: skip
    """The mem_section root array and section arrays, in the direct map: (physical address of
    the roots, how many roots, the (paddr, data) writes)."""
    per_root = PAGE // 16
    nr_roots = (1 << ((52 if five_level else 46) - section_bits)) // per_root
    roots_pages = -(-nr_roots * 8 // PAGE)
    roots_pa = alloc.alloc(roots_pages) << PAGE_SHIFT
    roots = np.zeros(nr_roots, np.uint64)
    sec_arrays: dict[int, np.ndarray] = {}
    writes: list[tuple[int, np.ndarray]] = []
    for s in present:
        r = s // per_root
        if r not in sec_arrays:
            pa = alloc.alloc(1) << PAGE_SHIFT
            sec_arrays[r] = np.zeros(2 * per_root, np.uint64)
            roots[r] = da(pa)
            writes.append((pa, sec_arrays[r]))
        # coded mem_map = vmemmap address of struct page 0 (kernel subtracts the section pfn)
        sec_arrays[r][2 * (s % per_root)] = vmemmap_base | section_flags  # default PRESENT|
        # HAS_MEM_MAP|ONLINE|EARLY
    writes.append((roots_pa, roots))

    return roots_pa, nr_roots, writes


def _map_vmemmap(
    alloc: _Alloc, pt: _PageTables, rng: np.random.Generator, sp: np.ndarray,
    present: list[int], sec_pages: int, spage: int, leaf: str, vmemmap_base: int, span: int,
) -> list[tuple[int, np.ndarray]]:  # fmt: skip
    """Back the struct page array ``sp`` with physical pages mapped at ``vmemmap_base`` with
    ``leaf``-sized leaves; the (paddr, bytes) writes."""
    vm_writes: list[tuple[int, np.ndarray]] = []
    if PAGE % spage:  # struct pages straddle vmemmap pages: map the bytes, leaf by leaf
        if leaf not in ("2M", "4K"):
            raise ValueError(f"SIZE(page)={spage} is only generated with 2M or 4K leaves")
        gsz = 1 << 21 if leaf == "2M" else PAGE
        flat = sp.reshape(-1)
        sec_b = sec_pages * spage
        grains = sorted(
            {g for s in present for g in range(s * sec_b // gsz, -(-(s + 1) * sec_b // gsz))}
        )
        npg = gsz // PAGE
        base = alloc.alloc(len(grains) * npg, npg)
        order = np.arange(len(grains)) if leaf == "2M" else rng.permutation(len(grains))
        for i, g in enumerate(grains):
            pa = (base + int(order[i]) * npg) << PAGE_SHIFT
            pt.map(vmemmap_base + g * gsz, pa, gsz)
            vm_writes.append((pa, flat[g * gsz : (g + 1) * gsz]))
    elif leaf == "2M":
        per = (1 << 21) // spage
        blocks = sorted(
            {(s * sec_pages) // per + i for s in present for i in range(max(1, sec_pages // per))}
        )
        base = alloc.alloc(len(blocks) * 512, 512)
        for i, blk in enumerate(blocks):
            pa = (base + i * 512) << PAGE_SHIFT
            pt.map(vmemmap_base + blk * (1 << 21), pa, 1 << 21)
            lo = blk * per
            vm_writes.append((pa, sp[lo : lo + per].reshape(-1)))
    elif leaf == "4K":
        per = PAGE // spage
        groups = [
            g for s in present for g in range(s * sec_pages // per, (s + 1) * sec_pages // per)
        ]
        base = alloc.alloc(len(groups))
        order = rng.permutation(len(groups))
        for i, g in enumerate(groups):
            pa = (base + int(order[i])) << PAGE_SHIFT
            pt.map(vmemmap_base + g * PAGE, pa, PAGE)
            vm_writes.append((pa, sp[g * per : (g + 1) * per].reshape(-1)))
    elif leaf == "1G":
        per = (1 << 30) // spage
        for blk in sorted({(s * sec_pages) // per for s in present}):
            lo = blk * per
            hi = min(span, lo + per)
            need = (hi - lo) * spage // PAGE
            base = alloc.alloc(need, 1 << 18)
            pt.map(vmemmap_base + blk * (1 << 30), base << PAGE_SHIFT, 1 << 30)
            vm_writes.append((base << PAGE_SHIFT, sp[lo:hi].reshape(-1)))
    else:
        raise ValueError(f"leaf must be 4K, 2M or 1G, not {leaf!r}")

    return vm_writes


def _map_kernel(
    pt: _PageTables, ram: list[tuple[int, int]], leaf: str, da, stext: int, kernel_pa: int,
    image_pages: int,
) -> None:  # fmt: skip
    """The direct map of RAM and the kernel's high mapping of its image."""
    gran = (1 << 30) if leaf == "1G" else (1 << 21)
    for a, b in ram:
        for g in range((a << PAGE_SHIFT) // gran, -(-(b << PAGE_SHIFT) // gran)):
            pt.map(da(g * gran), g * gran, gran)
    for off in range(0, image_pages << PAGE_SHIFT, 1 << 21):
        pt.map(stext + off, kernel_pa + off, 1 << 21)


def _init_struct_pages(
    p: _StructPages, is_ram: np.ndarray, used: np.ndarray, img0: int, image_pages: int, span: int
) -> np.ndarray:
    """Every struct page a plain kernel page (holes reserved), the allocator's and the image's
    own pages reserved; returns those metadata PFNs."""
    p.flags[:] = 0
    p.u32[:, OFF_MAPCOUNT // 4] = 0xFFFFFFFF
    p.u32[:, OFF_REFCOUNT // 4] = 1
    p.flags[~is_ram] = 1 << p.fam.pg["reserved"]
    p.u32[~is_ram, OFF_REFCOUNT // 4] = 1

    # page metadata placed by the allocator and the image: reserved, kept
    meta = used.copy()
    p.kind[meta & is_ram] = K_META
    p.kind[img0 : img0 + image_pages] = K_IMAGE
    p.kind[: min(span, 0x100)][is_ram[: min(span, 0x100)]] = K_RESERVED
    p.flags[meta] |= p.bit("reserved")

    return meta


def _place_blocks(
    p: _StructPages, rng: np.random.Generator, is_ram: np.ndarray, used: np.ndarray,
    span: int, hugetlb: bool, unaccepted: bool, anon_map, file_map,
) -> np.ndarray:  # fmt: skip
    """Whole free 512-page blocks: big buddy blocks, THPs, hugetlb pages, page-cache folios,
    unaccepted memory; returns the first PFNs of the blocks left for mixed pages."""
    # free PFNs for classes, in 512-page blocks fully inside RAM and unused
    nblk = span // 512
    free_blk = (is_ram & ~used).reshape(nblk, 512).all(axis=1)
    # leave the partial blocks as plain kernel pages
    blk_ids = np.flatnonzero(free_blk)
    choice = rng.choice(6, size=len(blk_ids), p=[0.18, 0.12, 0.08, 0.06, 0.02, 0.54])
    if not hugetlb:
        choice[choice == 2] = 5
    if not unaccepted:
        choice[choice == 4] = 0
    else:  # whole MAX_ORDER (1024-page) blocks: pairs of free 512-page blocks
        ids = set(blk_ids.tolist())
        pairs = np.array([b for b in blk_ids if b % 2 == 0 and b + 1 in ids], np.int64)
        pick = pairs[rng.random(len(pairs)) < 0.08] if len(pairs) else pairs
        if len(pairs) and not len(pick):
            pick = pairs[:1]
        pos = np.searchsorted(blk_ids, pick)
        choice[pos] = 4
        choice[pos + 1] = 4

    starts = blk_ids * 512
    # 0: big buddy (order 9, or order 10 on even blocks whose neighbour is also buddy)
    b = starts[choice == 0]
    pair = np.isin(b + 512, b) & (b % 1024 == 0)
    o10 = b[pair]
    o9 = b[~pair & ~np.isin(b - 512, o10)]
    p.set_buddy(o10, 10)
    p.set_buddy(o9, 9)
    # 1: anon THP order 9
    p.set_compound(
        starts[choice == 1],
        9,
        K_THP,
        dtor=THP_DTOR,
        mapping=anon_map,
        head_flags=(1 << p.fam.pg["lru"]) | (1 << p.fam.pg["swapbacked"]),
    )
    # 2: hugetlb 2M, in use or free in the pool
    h = starts[choice == 2]
    hk = rng.random(len(h)) < 0.5
    p.set_compound(h[hk], 9, K_HUGETLB, hugetlb_page=True, mapping=anon_map)
    p.set_compound(h[~hk], 9, K_HUGETLB_FREE, hugetlb_page=True)
    # 3: page-cache folio of order 9
    p.set_compound(
        starts[choice == 3], 9, K_FILE_FOLIO, mapping=file_map, head_flags=1 << p.fam.pg["lru"]
    )
    # 4: unaccepted memory: one marker per MAX_ORDER (order 10) block, at its first page
    un = starts[choice == 4]
    un = un[un % 1024 == 0]
    un = un[np.isin(un + 512, starts[choice == 4])]
    for u in (un, un + 512):
        p.kind[(u[:, None] + np.arange(512)[None, :]).reshape(-1)] = K_UNACCEPTED
    p.u32[un, OFF_MAPCOUNT // 4] = 0xF7000000
    leftover4 = starts[choice == 4]
    leftover4 = leftover4[~np.isin(leftover4, np.concatenate([un, un + 512]))]
    p.set_buddy(leftover4, 9)

    return starts[choice == 5]


def _place_mixed(
    p: _StructPages, rng: np.random.Generator, mixed: np.ndarray, hwpoison: bool,
    anon_map, file_map, slab_cache, da,
) -> None:  # fmt: skip
    """16-page groups of the ``mixed`` blocks: split buddy blocks, slab, small folios and single
    pages of every kind."""
    groups = (mixed[:, None] + np.arange(0, 512, 16)[None, :]).reshape(-1)
    gk = rng.choice(5, size=len(groups), p=[0.15, 0.1, 0.1, 0.05, 0.6])
    # g0: split buddy 8+4+2+1 (+1 single kept kernel page)
    g = groups[gk == 0]
    p.set_buddy(g, 3)
    p.set_buddy(g + 8, 2)
    p.set_buddy(g + 12, 1)
    p.set_buddy(g + 14, 0)
    # g1: slab compound order 3 x2 (6.12: type on the head only)
    g = groups[gk == 1]
    tricky = p.fam.slab_type is None  # <= 6.9: a buddy-looking _mapcount under PG_slab
    for sub in (g, g + 8):
        p.set_compound(sub, 3, K_SLAB, mapping=slab_cache, slab=True)
        p.u64[sub, OFF_PRIVATE // 8] = 3
        if tricky:
            p.u32[sub[::2], OFF_MAPCOUNT // 4] = p.fam.buddy
            p.kind[(sub[::2, None] + np.arange(8)).reshape(-1)] = K_SLAB_TRICKY
    # g2: page-cache folios of order 2, four of them
    g = groups[gk == 2]
    for k in range(4):
        p.set_compound(
            g + 4 * k,
            2,
            K_FILE_FOLIO,
            mapping=file_map,
            head_flags=(1 << p.fam.pg["lru"]) | ((1 << p.fam.pg["private"]) if k == 3 else 0),
        )
        if k == 3:
            p.kind[((g + 12)[:, None] + np.arange(4)).reshape(-1)] = K_CACHE_PRIV
    # g3: anon folios of order 4
    p.set_compound(
        groups[gk == 3],
        4,
        K_THP,
        dtor=1,
        mapping=anon_map,
        head_flags=(1 << p.fam.pg["lru"]) | (1 << p.fam.pg["swapbacked"]),
    )
    # g4: single pages of assorted kinds
    singles = (groups[gk == 4][:, None] + np.arange(16)[None, :]).reshape(-1)
    single_kinds = np.array(
        [
            K_KERNEL,
            K_SLAB,
            K_PGTABLE,
            K_CACHE,
            K_CACHE_PRIV,
            K_SWAPCACHE,
            K_OWNER_PRIV,
            K_ANON,
            K_HWPOISON,
            K_HWPOISON_CACHE,
            K_OFFLINE,
            K_FAKEHEAD_CACHE,
            K_BUDDY,
            K_SLAB_TRICKY,
        ]
    )
    probs = np.array([20, 8, 3, 14, 6, 3, 3, 20, 1, 1, 2, 1, 16, 2], float)
    if not hwpoison:
        probs[[8, 9]] = 0
    sk = single_kinds[rng.choice(len(single_kinds), size=len(singles), p=probs / probs.sum())]
    p.kind[singles] = sk
    sel = singles[sk == K_SLAB]
    if p.fam.slab_type is not None:
        p.u32[sel, OFF_MAPCOUNT // 4] = p.fam.slab_type
    else:
        p.flags[sel] |= p.bit("slab")
    if p.fam.name != "6.1":  # 6.2+: slab.slabs overlays mapping and may be odd (MDF 5f17bdd)
        p.u64[sel, OFF_MAPPING // 8] = np.uint64(7)
    else:
        p.u64[sel, OFF_MAPPING // 8] = slab_cache
    sel = singles[sk == K_SLAB_TRICKY]
    if p.fam.slab_type is None:  # PG_slab set and _mapcount looks like buddy: slab wins
        p.flags[sel] |= p.bit("slab")
        p.u32[sel, OFF_MAPCOUNT // 4] = p.fam.buddy
        p.u64[sel, OFF_MAPPING // 8] = slab_cache
    else:
        p.kind[sel] = K_SLAB
        p.u32[sel, OFF_MAPCOUNT // 4] = p.fam.slab_type
    sel = singles[sk == K_PGTABLE]
    p.u32[sel, OFF_MAPCOUNT // 4] = {0xFFFFFF7F: PGTABLE_TYPE_61, 0xBFFFFFFF: 0xEFFFFFFF}.get(
        p.fam.buddy, 0xF2000000
    )
    sel = singles[sk == K_CACHE]
    p.flags[sel] |= p.bit("lru")
    p.u64[sel, OFF_MAPPING // 8] = file_map
    sel = singles[sk == K_CACHE_PRIV]
    p.flags[sel] |= p.bit("lru") | p.bit("private")
    p.u64[sel, OFF_MAPPING // 8] = file_map
    p.u64[sel, OFF_PRIVATE // 8] = np.uint64(da(0x7655000))
    sel = singles[sk == K_SWAPCACHE]  # in swap cache, off the LRU (isolated)
    p.flags[sel] |= p.bit("swapcache") | p.bit("swapbacked")
    sel = singles[sk == K_OWNER_PRIV]  # PG_owner_priv_1 without swapbacked: e.g. PG_checked
    p.flags[sel] |= p.bit("swapcache")
    sel = singles[sk == K_ANON]
    p.flags[sel] |= p.bit("lru") | p.bit("swapbacked")
    p.u64[sel, OFF_MAPPING // 8] = anon_map
    p.u32[sel, OFF_MAPCOUNT // 4] = 0
    sel = singles[sk == K_HWPOISON]
    p.flags[sel] |= p.bit("hwpoison")
    sel = singles[sk == K_HWPOISON_CACHE]
    p.flags[sel] |= p.bit("hwpoison") | p.bit("lru")
    p.u64[sel, OFF_MAPPING // 8] = file_map
    sel = singles[sk == K_OFFLINE]
    p.u32[sel, OFF_MAPCOUNT // 4] = p.fam.offline
    # A "fake head": PG_head on a cache page whose page[1] claims order 2 while the pfn is
    # not 4-aligned (HVO copies, docs/page-types.md §5): the order is rejected -> 1 page.
    fake = singles[sk == K_FAKEHEAD_CACHE]
    p.kind[fake] = K_CACHE
    p.flags[fake] |= p.bit("lru")
    p.u64[fake, OFF_MAPPING // 8] = file_map
    nxt_plain = np.isin(fake + 1, singles[sk == K_KERNEL])
    sel = fake[(fake % 4 != 0) & (fake % 512 != 511) & nxt_plain]
    p.kind[sel] = K_FAKEHEAD_CACHE
    p.flags[sel] |= p.bit("head")
    nxt = sel + 1
    if p.fam.order_in_flags:
        p.flags[nxt] = (p.flags[nxt] & ~np.uint64(0xFF)) | np.uint64(2)
    else:
        p.sp[nxt, OFF_ORDER] = 2
    sel = singles[sk == K_BUDDY]
    p.set_buddy(sel, 0)
    sel = singles[sk == K_KERNEL]
    p.u32[sel, OFF_REFCOUNT // 4] = 1


def _place_image(
    p: _StructPages, img0: int, image_pages: int, init_free: bool, image_trap: bool,
    init_cache: bool, file_map,
) -> None:  # fmt: skip
    """Inside the kernel image: freed ``__init`` memory, the BSS trap page, a reused page."""
    # kernel image: reserved pages; freed __init memory is buddy; one BSS page with PG_lru
    # and a mapping (MDF issue 21)
    if init_free:
        p.set_buddy(np.array([img0 + image_pages - 64]), 4)
        p.flags[img0 + image_pages - 64 : img0 + image_pages - 48] = 0
    if image_trap:
        trap = img0 + image_pages - 3
        p.flags[trap] |= p.bit("lru")
        p.u64[trap, OFF_MAPPING // 8] = file_map
        p.kind[trap] = K_IMAGE_TRAP
    if init_cache:
        reused = img0 + image_pages - 80
        p.flags[reused] = p.bit("lru")  # freed to the buddy allocator: PG_reserved is gone
        p.u64[reused, OFF_MAPPING // 8] = file_map
        p.kind[reused] = K_CACHE


def _page_contents(
    rng: np.random.Generator,
    span: int,
    content: str,
    is_ram: np.ndarray,
    meta: np.ndarray,
    img0: int,
    image_pages: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What each page holds: (text pool, random pool, content kind, pool index) per PFN."""
    text_pool, rand_pool = _pools(rng)
    probs = {"mixed": [0.5, 0.25, 0.25], "sparse": [0.9, 0.05, 0.05], "zero": [1, 0, 0]}
    if content not in probs:
        raise ValueError(f"content must be one of {sorted(probs)}")
    ckind = rng.choice(3, size=span, p=probs[content]).astype(np.uint8)
    ckind[~is_ram] = 0
    ckind[meta] = 0
    ckind[img0 : img0 + image_pages] = 1
    cidx = rng.integers(0, 1 << 16, size=span, dtype=np.uint16)

    return text_pool, rand_pool, ckind, cidx


def make_vmcore(
    path: str | os.PathLike,
    *,
    kernel: str = "6.1",
    ram: list[tuple[int, int]] | None = None,
    five_level: bool = False,
    kernel_offset: int = 0x18200000,
    kernel_pa: int = 0x3000000,
    page_offset: int | None = None,
    vmemmap_base: int | None = None,
    leaf: str = "2M",
    sme_mask: int = 0,
    seed: int = 0,
    content: str = "mixed",
    hugetlb: bool = True,
    hwpoison: bool = True,
    unaccepted: bool | None = None,
    image_trap: bool = True,
    nr_cpus: int = 2,
    text_segment: bool = True,
    section_bits: int = 27,
    init_free: bool = True,
    partial_end: bool = False,
    init_cache: bool = False,
    spage: int = SPAGE,
    patched: bool = False,
    anon_bit: int = 0,
    section_flags: int = 0xF,
    section_map_last_bit: int = 5,
    vmemmap_symbol: int | None = None,
) -> Synth:
    """Write a synthetic ELF vmcore to ``path`` and return what it holds.

    ``ram``: sorted [start_pfn, end_pfn) RAM ranges (default: a PC-like 384 MiB with the
    legacy hole).  ``kernel_offset``: KASLR slide of the kernel text (KERNELOFFSET);
    ``kernel_pa``: physical address of ``_text`` (2 MiB aligned), which fixes phys_base.
    ``leaf``: page size of the vmemmap mapping ("4K" shuffles the backing pages, so struct
    pages are physically contiguous only per 64 PFNs; "1G" needs RAM at a 1 GiB boundary).
    ``content``: "mixed" (≈50% zero, 25% text, 25% random), "sparse" (≈90% zero) or "zero".
    ``hugetlb``: CONFIG_HUGETLB_PAGE (6.1-6.8 export OFFLINE only with it).
    ``image_trap``: put a kernel-image page with PG_lru and a mapping (makedumpfile issue 21)
    that must still be kept; makedumpfile itself would drop it, so oracle tests turn it off.
    ``init_free``: an order-4 buddy block inside _text.._end (freed ``__init`` memory): free.
    ``spage``: SIZE(page); 56 (no MEMCG) makes struct pages straddle vmemmap pages ("2M"
    leaves: physically contiguous anyway; "4K": split over two shuffled pages).
    ``init_cache``: a freed ``__init`` page inside _text.._end reused as page cache (no
    PG_reserved, unlike the image's own pages): excluded like any cache page.
    ``patched``: VMCOREINFO carries our kernel patch's exports (PAGE_MAPPING_ANON,
    SECTION_MAP_LAST_BIT, PAGE_TYPE_BASE/MAPCOUNT_RESERVE or PAGE_TYPE_SHIFT, SYMBOL(vmemmap),
    VMALLOC_START, page_offset_base).  ``anon_bit``: bit of page->mapping that marks anon pages
    (and the exported PAGE_MAPPING_ANON).  ``section_flags``: low bits set in every present
    section_mem_map; ``section_map_last_bit`` the exported SECTION_MAP_LAST_BIT.
    ``vmemmap_symbol``: SYMBOL(vmemmap) to export instead of the true vmemmap base.
    ``partial_end``: the first RAM PT_LOAD ends 1 KiB short of its last page, as
    /proc/vmcore's does at 0x9fc00; that page holds text in its first 3 KiB (zeros after)
    and is judged by its struct page like any other.
    """
    fam = family(kernel)
    rng = np.random.default_rng(seed)
    ram = _merge(ram if ram is not None else [(1, 0x9F), (0x100, 0x18000)])
    if unaccepted is None:
        unaccepted = fam.unaccepted
    unaccepted = unaccepted and fam.unaccepted
    max_pfn = ram[-1][1]
    sec_pages = 1 << (section_bits - PAGE_SHIFT)
    nsec = -(-max_pfn // sec_pages)
    span = nsec * sec_pages  # struct pages exist for whole present sections

    if page_offset is None:
        page_offset = 0xFF11000000000000 if five_level else 0xFFFF888000000000
    if vmemmap_base is None:
        vmemmap_base = 0xFFD4000000000000 if five_level else 0xFFFFEA0000000000
    vmalloc = 0xFFA0000000000000 if five_level else 0xFFFFC90000000000
    if kernel_pa % (1 << 21) or kernel_offset % (1 << 21):
        raise ValueError("kernel_pa and kernel_offset must be 2 MiB aligned")
    stext = KERNEL_TEXT_VA + kernel_offset
    phys_base = (kernel_pa - (stext - START_KERNEL_MAP)) & U64
    image_pages = 24 << (20 - PAGE_SHIFT)  # 24 MiB _text.._end

    is_ram = np.zeros(span, bool)
    for a, b in ram:
        is_ram[a:b] = True
    used = np.zeros(span, bool)
    kind = np.full(span, K_HOLE, np.uint8)
    kind[is_ram] = K_KERNEL
    img0 = kernel_pa >> PAGE_SHIFT
    if not is_ram[img0 : img0 + image_pages].all() or img0 + image_pages > span:
        raise ValueError("kernel image must lie in RAM")
    used[img0 : img0 + image_pages] = True
    used[: min(span, 0x100)] = True  # keep the first MiB (BIOS, trampoline) as plain kernel
    alloc = _Alloc(is_ram, used, img0 + image_pages)

    # -- kernel image: init_top_pgt and init_uts_ns live in its .data
    top_pa = kernel_pa + (16 << 20)
    uts_pa = kernel_pa + (17 << 20)
    init_top_pgt = stext + (top_pa - kernel_pa)
    uts_va = stext + (uts_pa - kernel_pa)
    pt = _PageTables(alloc, top_pa, five_level, sme_mask)

    def da(pa: int) -> int:  # direct-map address
        return page_offset + pa

    present = [s for s in range(nsec) if is_ram[s * sec_pages : (s + 1) * sec_pages].any()]
    roots_pa, nr_roots, writes = _mem_sections(
        alloc, da, present, five_level, section_bits, vmemmap_base, section_flags
    )
    sp = np.zeros((span, spage), np.uint8)  # the struct page array
    vm_writes = _map_vmemmap(
        alloc, pt, rng, sp, present, sec_pages, spage, leaf, vmemmap_base, span
    )
    _map_kernel(pt, ram, leaf, da, stext, kernel_pa, image_pages)

    p = _StructPages(fam, sp, kind, vmemmap_base)
    meta = _init_struct_pages(p, is_ram, used, img0, image_pages, span)
    anon_map = np.uint64(da(0x7654320) | 1 << anon_bit)  # anon_vma | PAGE_MAPPING_ANON
    file_map = np.uint64(da(0x7654400))  # an address_space
    slab_cache = np.uint64(da(0x7654800))

    mixed = _place_blocks(p, rng, is_ram, used, span, hugetlb, unaccepted, anon_map, file_map)
    _place_mixed(p, rng, mixed, hwpoison, anon_map, file_map, slab_cache, da)
    _place_image(p, img0, image_pages, init_free, image_trap, init_cache, file_map)
    text_pool, rand_pool, ckind, cidx = _page_contents(
        rng, span, content, is_ram, meta, img0, image_pages
    )

    # utsname + the page tables
    uts = b""
    for f_ in (
        b"Linux",
        b"synth",
        fam.osrelease.encode(),
        b"#1 SMP PREEMPT_DYNAMIC synthetic",
        b"x86_64",
        b"(none)",
    ):
        uts += f_.ljust(65, b"\0")
    writes.append((uts_pa, np.frombuffer(uts, np.uint8)))
    for pa, tbl in pt.tables.items():
        writes.append((pa, tbl.view(np.uint8)))
        if pa != top_pa:
            kind[pa >> PAGE_SHIFT] = K_META
    # 5-level: the top table is in .data of the image too; the root/section arrays as bytes
    writes = [(pa, d.view(np.uint8).reshape(-1)) for pa, d in writes] + vm_writes
    writes.sort(key=lambda w: w[0])
    # image pages that carry metadata are still text-like around it: keep them as K_IMAGE

    s = dict(
        fam=fam,
        uts_va=uts_va,
        stext=stext,
        vmalloc=vmalloc,
        vmemmap=vmemmap_base,
        patched=patched,
        anon_bit=anon_bit,
        section_map_last_bit=section_map_last_bit,
        vmemmap_symbol=vmemmap_symbol,
        page_offset=page_offset,
        mem_section=da(roots_pa),
        nr_roots=nr_roots,
        section_bits=section_bits,
        five=five_level,
        spage=spage,
        hwpoison=hwpoison,
        hugetlb=hugetlb,
        unaccepted=unaccepted,
        phys_base=phys_base,
        init_top_pgt=init_top_pgt,
        kernel_offset=kernel_offset,
        sme_mask=sme_mask,
    )
    info = _vmcoreinfo(s)

    synth = Synth(
        path=os.fspath(path),
        kernel=kernel,
        family=fam,
        ram=ram,
        max_pfn=max_pfn,
        page_size=PAGE,
        vmcoreinfo=info,
        phys_base=phys_base,
        kernel_offset=kernel_offset,
        page_offset=page_offset,
        vmemmap_base=vmemmap_base,
        five_level=five_level,
        sme_mask=sme_mask,
        leaf=leaf,
        hugetlb=hugetlb,
        unaccepted=unaccepted,
        nr_cpus=nr_cpus,
        image_pfns=(img0, img0 + image_pages),
        kind=kind[:max_pfn].copy(),
        ckind=ckind[:max_pfn],
        cidx=cidx[:max_pfn],
        text_pool=text_pool,
        rand_pool=rand_pool,
        writes=writes,
        _write_starts=[w[0] for w in writes],
    )
    if partial_end:
        last = ram[0][1] - 1
        synth.ckind[last] = 1  # data in the part the dump holds, to see it read back
        synth.missing.append((((last + 1) << PAGE_SHIFT) - 0x400, (last + 1) << PAGE_SHIFT))
    _write_elf(synth, stext, kernel_pa, image_pages, text_segment, 0x400 if partial_end else 0)
    return synth


def _write_elf(
    s: Synth, stext: int, kernel_pa: int, image_pages: int, text_seg: bool, short: int
) -> None:
    """ELF64 core: PT_NOTE, [kernel text PT_LOAD], one PT_LOAD per RAM range.

    ``short``: bytes the first RAM PT_LOAD lacks at its end (a partial last page)."""
    notes = b""
    for cpu in range(s.nr_cpus):
        prstatus = bytearray(336)
        struct.pack_into("<i", prstatus, 32, 1000 + cpu)  # pr_pid
        notes += _note(b"CORE", 1, bytes(prstatus))
    notes += _note(b"VMCOREINFO", 0, s.vmcoreinfo.encode())
    segs = []  # (paddr, vaddr, npages)
    if text_seg:
        segs.append((kernel_pa, stext, image_pages))
    for a, b in s.ram:
        segs.append((a << PAGE_SHIFT, s.page_offset + (a << PAGE_SHIFT), b - a))
    nph = 1 + len(segs)
    off = 64 + 56 * nph
    note_off = off
    off += len(notes)
    off = -(-off // PAGE) * PAGE
    phdrs = struct.pack("<IIQQQQQQ", 4, 0, note_off, 0, 0, len(notes), len(notes), 0)
    placed = []
    first_ram = 1 if text_seg else 0
    for i, (paddr, vaddr, n) in enumerate(segs):
        size = n * PAGE - (short if i == first_ram else 0)
        phdrs += struct.pack("<IIQQQQQQ", 1, 7, off, vaddr & U64, paddr, size, size, 0)
        placed.append((paddr >> PAGE_SHIFT, n, off))
        off += n * PAGE
    ehdr = (
        b"\x7fELF"
        + bytes([2, 1, 1, 0])
        + bytes(8)
        + struct.pack("<HHIQQQIHHHHHH", 4, 62, 1, 0, 64, 0, 0, 64, 56, nph, 0, 0, 0)
    )
    fd = os.open(s.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, off)
        os.pwrite(fd, ehdr + phdrs + notes, 0)
        win = 16384  # pages per window (64 MiB)
        for pfn0, n, foff in placed:
            for w in range(0, n, win):
                cnt = min(win, n - w)
                p = pfn0 + w
                data = s.pages(p, cnt)
                nz = (
                    data.any(axis=1)
                    if s.ckind[p : p + cnt].any() or _touched(s, p, cnt)
                    else np.zeros(cnt, bool)
                )
                if not nz.any():
                    continue
                edges = np.flatnonzero(np.diff(np.concatenate([[0], nz.view(np.int8), [0]])))
                runs = edges.reshape(-1, 2)
                if len(runs) * 8 > cnt:
                    os.pwrite(fd, data, foff + w * PAGE)
                    continue
                for a, b in runs:
                    os.pwrite(fd, data[a:b], foff + (w + int(a)) * PAGE)
    finally:
        os.close(fd)


def _touched(s: Synth, pfn: int, count: int) -> bool:
    lo, hi = pfn << PAGE_SHIFT, (pfn + count) << PAGE_SHIFT
    i = max(0, bisect.bisect_right(s._write_starts, lo) - 1)
    while i < len(s.writes) and s.writes[i][0] < hi:
        pa, data = s.writes[i]
        if pa + len(data) > lo:
            return True
        i += 1
    return False
