"""Which page-type encoding a dump uses, chosen from which VMCOREINFO values are present.

Kernel versions differ in *where* slab, hugetlb and the compound order live
(docs/page-types.md §2-§4, with the kernel commits).  That is data here: ``ENCODINGS`` is a table of
rows, each naming the keys that identify it and how to read order / hugetlb / slab; the
first row whose required keys are present (and whose excluded keys are absent) wins.  The
classifier reads only the resulting :class:`Encoding`; there is no ``if version`` anywhere.
"""

from __future__ import annotations

from typing import NamedTuple

from .errors import DumpError
from .vmcoreinfo import VmcoreInfo


# NamedTuples, not frozen dataclasses: as immutable and hashable (a plan is cached per
# Encoding), and made at import without compiling generated methods, which for Encoding's
# 32 fields was most of this module's share of every start (bench/NOTES.md).
class Row(NamedTuple):
    """One kernel-version family: how to recognise it, how its struct pages are read."""

    name: str
    requires: tuple[str, ...]
    absent: tuple[str, ...]
    order: str  # "u8:OFFSET(page.compound_order)", "folio:_folio_order", "flags1"
    hugetlb: str  # "dtor:...", "flags1_bit", "head_type", "none"
    slab: str  # "flag" (NUMBER(PG_slab)) or "type" (PAGE_SLAB_MAPCOUNT_VALUE)
    types: str  # "exact" (compare the whole u32) or "top_byte" (6.12+: type in bits 24..31)


# Order matters: most specific first.  Kernel commits per row in docs/page-types.md §2.1.
ENCODINGS: tuple[Row, ...] = (
    Row(
        "6.12+ (page type in the top byte)",
        ("NUMBER(PAGE_SLAB_MAPCOUNT_VALUE)",),
        (),
        "flags1",
        "head_type",
        "type",
        "top_byte",
    ),
    Row(
        "6.10-6.11 (slab page type)",
        ("NUMBER(PAGE_SLAB_MAPCOUNT_VALUE)",),
        (),
        "flags1",
        "head_type",
        "type",
        "exact",
    ),
    Row(
        "6.9 (hugetlb page type)",
        ("NUMBER(PAGE_HUGETLB_MAPCOUNT_VALUE)", "NUMBER(PG_slab)"),
        (),
        "flags1",
        "head_type",
        "flag",
        "exact",
    ),
    Row(
        "6.6-6.8 (PG_hugetlb)",
        ("NUMBER(PG_hugetlb)", "NUMBER(PG_slab)"),
        (),
        "flags1",
        "flags1_bit",
        "flag",
        "exact",
    ),
    Row(
        "6.3-6.5 (folio order/dtor)",
        ("OFFSET(folio._folio_order)", "NUMBER(PG_slab)"),
        (),
        "folio",
        "dtor",
        "flag",
        "exact",
    ),
    Row(
        "4.16-6.2 (compound order/dtor)",
        ("OFFSET(page.compound_order)", "NUMBER(PG_slab)"),
        (),
        "page",
        "dtor",
        "flag",
        "exact",
    ),
    Row(
        "6.6-6.8 without HUGETLB_PAGE",
        ("NUMBER(PG_slab)",),
        (
            "OFFSET(page.compound_order)",
            "OFFSET(folio._folio_order)",
            "NUMBER(PAGE_HUGETLB_MAPCOUNT_VALUE)",
            "NUMBER(PG_hugetlb)",
        ),
        "flags1",
        "none",
        "flag",
        "exact",
    ),
)


# PG_reserved's bit when VMCOREINFO does not export NUMBER(PG_reserved) (stock kernels; our
# patch 1 exports it): in include/linux/page-flags.h ``enum pageflags`` PG_reserved immediately
# precedes PG_private (``PG_arch_1, PG_reserved, PG_private``) in Debian 6.1, 6.12 and
# mainline, whatever config bits come earlier, so its number is NUMBER(PG_private) + this offset.
PG_RESERVED_FROM_PRIVATE = -1


# page->mapping's anonymous bit when VMCOREINFO has no NUMBER(PAGE_MAPPING_ANON) (stock
# kernels): include/linux/page-flags.h ``#define PAGE_MAPPING_ANON 0x1`` in every kernel since
# 2.6 (mapping points at an anon_vma with bit 0 set; address_space pointers are 8-aligned).
PAGE_MAPPING_ANON_FALLBACK = 0x1

# The only type position the classifier reads: 6.12+ ``PAGE_TYPE_SHIFT`` (include/linux/
# page-flags.h, ``page_type >> 24`` holds PGTY_x) — it reads the top byte of _mapcount.
TOP_BYTE_SHIFT = 24


# x86_64 struct page: 64 bytes (56 without CONFIG_MEMCG, 80 with KMSAN's shadow pointers);
# the bounds only keep a corrupt value from making the scan read nonsense strides.
MIN_STRUCT_PAGE, MAX_STRUCT_PAGE = 16, 4096
MAX_NR_ORDERS = 16


def _is_top_byte(v: int) -> bool:
    """6.12+ type values: PGTY_x << 24, x in 0xf0..0xfe (docs/page-types.md §3)."""
    return (v & 0x00FFFFFF) == 0 and 0xF0 <= v >> 24 <= 0xFE


# The anonymous-mapping bit's name in VMCOREINFO: our 6.1/6.12 patches export it as
# PAGE_MAPPING_ANON, the 7.2 patch under the name 7.2's page-flags.h gives it.
ANON_KEYS = ("PAGE_MAPPING_ANON", "FOLIO_MAPPING_ANON")


def _anon_bit(vi: VmcoreInfo) -> int:
    """Bit number of PAGE_MAPPING_ANON: exported by our kernel patch, else the fallback."""
    key = next((k for k in ANON_KEYS if vi.has(f"NUMBER({k})")), ANON_KEYS[0])
    v = vi.opt("NUMBER", key)
    if v is None:
        v = PAGE_MAPPING_ANON_FALLBACK
    # a flag in the low bits of an 8-aligned pointer: one bit, 0..2
    if v not in (1, 2, 4):
        raise DumpError(f"VMCOREINFO NUMBER({key})={v} is not a mapping flag bit")
    return v.bit_length() - 1


def _type_scheme(vi: VmcoreInfo, buddy: int) -> tuple[bool, int | None]:
    """(top_byte, type_base) of the page-type encoding.

    Our kernel patch exports it: ``NUMBER(PAGE_TYPE_SHIFT)`` (6.12: the type is
    ``page_type >> PAGE_TYPE_SHIFT``) or ``NUMBER(PAGE_TYPE_BASE)`` with
    ``NUMBER(PAGE_MAPCOUNT_RESERVE)`` (6.1: ``PageType(page, flag)`` is
    ``(page_type & (PAGE_TYPE_BASE | flag)) == PAGE_TYPE_BASE``, types below the reserve).
    Without them (stock kernels) the scheme is inferred from PAGE_BUDDY_MAPCOUNT_VALUE's shape
    and each type is compared as the exact u32 (type_base None).
    """
    shift = vi.opt("NUMBER", "PAGE_TYPE_SHIFT")
    base = vi.opt("NUMBER", "PAGE_TYPE_BASE")
    if shift is not None:
        if shift != TOP_BYTE_SHIFT:
            raise DumpError(f"unsupported page-type encoding: NUMBER(PAGE_TYPE_SHIFT)={shift}")
        if not _is_top_byte(buddy):
            raise DumpError(
                f"VMCOREINFO PAGE_BUDDY_MAPCOUNT_VALUE={buddy:#x} is not a type in the top "
                f"byte, yet PAGE_TYPE_SHIFT={shift} (corrupt VMCOREINFO)"
            )
        return True, None
    if base is not None:
        base &= 0xFFFFFFFF
        reserve = vi.opt("NUMBER", "PAGE_MAPCOUNT_RESERVE")
        flag = ~buddy & 0xFFFFFFFF
        if (
            reserve is None
            or not -(1 << 31) <= reserve < 0
            or base == 0
            or buddy & base != base
            or flag & base
            or flag & (flag - 1)
            or buddy - (1 << 32) >= reserve
        ):
            raise DumpError(
                f"VMCOREINFO PAGE_TYPE_BASE={base:#x}, PAGE_MAPCOUNT_RESERVE={reserve} and "
                f"PAGE_BUDDY_MAPCOUNT_VALUE={buddy:#x} do not fit together"
            )
        return False, base
    return _is_top_byte(buddy), None


class Encoding(NamedTuple):
    """Everything the classifier needs, as plain numbers (None = not exported)."""

    name: str
    osrelease: str
    page_size: int
    struct_size: int
    off_flags: int
    off_mapping: int
    off_private: int
    off_mapcount: int
    off_compound_head: int
    pg_lru: int | None
    pg_private: int | None
    pg_reserved: int  # NUMBER(PG_reserved), else PG_private + PG_RESERVED_FROM_PRIVATE
    pg_swapcache: int | None
    pg_swapbacked: int | None
    pg_hwpoison: int | None
    pg_slab: int | None
    head_mask: int
    buddy: int
    slab_type: int | None
    offline: int | None
    hugetlb_type: int | None
    unaccepted: int | None
    top_byte: bool
    type_base: int | None  # NUMBER(PAGE_TYPE_BASE): kernel mask test instead of exact u32
    anon_bit: int  # bit number of PAGE_MAPPING_ANON in page->mapping
    order_kind: str  # "page1_u8" or "flags1"
    order_off: int | None  # byte offset inside page[1] for "page1_u8"
    hugetlb_kind: str  # "dtor", "flags1_bit", "head_type", "none"
    dtor_off: int | None
    hugetlb_dtor: int | None
    pg_hugetlb: int | None
    nr_orders: int  # LENGTH(zone.free_area)


def _reserved_bit(vi: VmcoreInfo, exported: int | None, private: int | None) -> int:
    """PG_reserved: exported by our kernel patch, else derived from PG_private (see above)."""
    if exported is not None:
        return exported
    if private is None:
        raise DumpError("VMCOREINFO has neither NUMBER(PG_reserved) nor NUMBER(PG_private)")
    b = private + PG_RESERVED_FROM_PRIVATE
    if not 0 <= b < 64:
        raise DumpError(f"VMCOREINFO NUMBER(PG_private)={private} leaves no PG_reserved bit")
    return b


def _need(vi: VmcoreInfo, key: str, why: str) -> None:
    if not vi.has(key):
        raise DumpError(f"VMCOREINFO has no {key} ({why}); cannot classify pages")


def detect(vi: VmcoreInfo) -> Encoding:
    """The encoding of this dump, or DumpError naming what is missing or unknown."""
    for key in (
        "SIZE(page)",
        "OFFSET(page.flags)",
        "OFFSET(page.mapping)",
        "OFFSET(page._mapcount)",
        "OFFSET(page.private)",
        "NUMBER(PG_lru)",
        "NUMBER(PG_private)",
        "NUMBER(PG_swapcache)",
        "NUMBER(PG_head_mask)",
        "LENGTH(zone.free_area)",
    ):
        _need(vi, key, "struct page layout")
    _need(vi, "NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)", "free-page detection, kernel 3.9+")
    if vi.has("OFFSET(page.compound_info)"):  # 7.1+ rename (MDF f50c015)
        ch_name = "compound_info"
    elif vi.has("OFFSET(page.compound_head)"):
        ch_name = "compound_head"
    else:
        raise DumpError(
            "VMCOREINFO has neither OFFSET(page.compound_head) nor "
            "OFFSET(page.compound_info); cannot tell tail pages"
        )
    buddy = vi.number_u32("PAGE_BUDDY_MAPCOUNT_VALUE")
    top, type_base = _type_scheme(vi, buddy)
    row = None
    for r in ENCODINGS:
        if all(vi.has(k) for k in r.requires) and not any(vi.has(k) for k in r.absent):
            if (r.types == "top_byte") == top:
                row = r
                break
    if row is None:
        raise DumpError(
            f"unknown page-type encoding (kernel {vi.osrelease or '?'}: "
            f"PAGE_BUDDY_MAPCOUNT_VALUE={buddy:#x}, no known combination of slab/hugetlb keys)"
        )
    # Page-type values must look like the family's scheme, or the dump is not understood.
    if not top and buddy not in (0xFFFFFF7F, 0xBFFFFFFF):
        raise DumpError(f"unknown page-type encoding: PAGE_BUDDY_MAPCOUNT_VALUE={buddy:#x}")

    spage = vi.size("page")
    if not MIN_STRUCT_PAGE <= spage <= MAX_STRUCT_PAGE:
        raise DumpError(f"VMCOREINFO SIZE(page)={spage} is implausible")
    order_off = dtor_off = None
    if row.order == "page":
        order_kind, order_off = "page1_u8", vi.offset("page.compound_order")
        dtor_off = vi.opt("OFFSET", "page.compound_dtor")
    elif row.order == "folio":  # offsets are from the folio (page[0]); page[1] starts at SIZE
        order_kind, order_off = "page1_u8", vi.offset("folio._folio_order") - spage
        d = vi.opt("OFFSET", "folio._folio_dtor")
        dtor_off = None if d is None else d - spage
    else:
        order_kind = "flags1"
    hugetlb_kind = row.hugetlb
    hugetlb_dtor = vi.opt("NUMBER", "HUGETLB_PAGE_DTOR")
    if hugetlb_kind == "dtor" and (hugetlb_dtor is None or dtor_off is None):
        hugetlb_kind = "none"  # no CONFIG_HUGETLB_PAGE: no hugetlb pages to find

    def u32(name: str) -> int | None:
        v = vi.opt("NUMBER", name)
        return None if v is None else v & 0xFFFFFFFF

    def bit(name: str) -> int | None:
        v = vi.opt("NUMBER", name)
        if v is None:
            return None
        if not 0 <= v < 64:
            raise DumpError(f"VMCOREINFO NUMBER({name})={v} is not a page-flag bit")
        return v

    names = ("flags", "mapping", "private", ch_name, "_mapcount")
    offs = [vi.offset(f"page.{n}") for n in names]
    off_flags = offs[0]
    for name, o in zip(names, offs, strict=True):
        if o + 8 > spage:
            raise DumpError(
                f"VMCOREINFO OFFSET(page.{name})={o} does not fit in SIZE(page)={spage}"
            )
    for member in (order_off, dtor_off):
        if member is not None and not 0 <= member < spage:
            raise DumpError("VMCOREINFO compound order/dtor offsets are out of range")
    nr_orders = vi.length("zone.free_area")
    # include/linux/mmzone.h: MAX_PAGE_ORDER + PAGE_SHIFT <= SECTION_SIZE_BITS (27 on x86_64),
    # so a buddy block is at most 2^15 pages and there are at most 16 orders.
    if not 1 <= nr_orders <= MAX_NR_ORDERS:
        raise DumpError(
            f"VMCOREINFO LENGTH(zone.free_area)={nr_orders} is implausible "
            f"(x86_64 has at most {MAX_NR_ORDERS} page orders)"
        )
    return Encoding(
        name=row.name,
        osrelease=vi.osrelease,
        page_size=vi.page_size,
        struct_size=spage,
        off_flags=off_flags,
        off_mapping=offs[1],
        off_private=offs[2],
        off_mapcount=offs[4],
        off_compound_head=offs[3],
        pg_lru=bit("PG_lru"),
        pg_private=bit("PG_private"),
        pg_reserved=_reserved_bit(vi, bit("PG_reserved"), bit("PG_private")),
        pg_swapcache=bit("PG_swapcache"),
        pg_swapbacked=bit("PG_swapbacked"),
        pg_hwpoison=bit("PG_hwpoison"),
        pg_slab=bit("PG_slab") if row.slab == "flag" else None,
        head_mask=vi.number("PG_head_mask") & ((1 << 64) - 1),
        buddy=buddy,
        slab_type=u32("PAGE_SLAB_MAPCOUNT_VALUE") if row.slab == "type" else None,
        offline=u32("PAGE_OFFLINE_MAPCOUNT_VALUE"),
        hugetlb_type=u32("PAGE_HUGETLB_MAPCOUNT_VALUE") if hugetlb_kind == "head_type" else None,
        unaccepted=u32("PAGE_UNACCEPTED_MAPCOUNT_VALUE"),
        top_byte=top,
        type_base=type_base,
        anon_bit=_anon_bit(vi),
        order_kind=order_kind,
        order_off=order_off,
        hugetlb_kind=hugetlb_kind,
        dtor_off=dtor_off,
        hugetlb_dtor=hugetlb_dtor,
        pg_hugetlb=bit("PG_hugetlb") if hugetlb_kind == "flags1_bit" else None,
        nr_orders=nr_orders,
    )
