"""makedumpfile's page loop written out one page at a time: the readable specification.

This is what the vectorised classifier (the rest of this package) computes, stated the way
makedumpfile's ``__exclude_unnecessary_pages`` states it: walk the PFNs, judge each page that
is not inside an excluded range, and when a page is excluded, skip the pages its range covers
("continue at pfn + n").  It is slow (a Python loop per page) and used only by the tests, as
the oracle the vectorised scan must match on valid and corrupt struct pages.  Each rule is in
the order of ``rules.py``; docs/page-types.md explains them per kernel release.
"""

from __future__ import annotations

from typing import cast

import numpy as np

from ..dumplevel import DumpLevel
from ..pageclass import PageClass
from ..pagetypes import Encoding


def reference(
    enc: Encoding,
    level: int,
    raw: np.ndarray,
    start_pfn: int,
    carry_end: int,
    carry_cls: int,
    next_page: np.ndarray | None,
) -> tuple[np.ndarray, int, int]:
    """Classes of the struct pages ``raw`` (PFNs ``start_pfn``..) at dump ``level``, a range
    of class ``carry_cls`` running into them up to ``carry_end``; ``next_page``: the struct
    page after the last row, if known.  Returns (classes, end of a range that runs on past
    the last row or 0, its class)."""
    rows = [bytes(r) for r in raw] + ([bytes(next_page)] if next_page is not None else [])
    n = len(raw)

    def u(i: int, off: int, size: int) -> int:
        return int.from_bytes(rows[i][off : off + size], "little")

    def is_type(mc: int | None, v: int | None) -> bool:
        if v is None or mc is None:
            return False
        if enc.top_byte:
            return mc >> 24 == v >> 24
        base = enc.type_base
        if base is not None and v & base == base and not ~v & base & 0xFFFFFFFF:
            return mc & (base | (~v & 0xFFFFFFFF)) == base  # 6.1 PageType() with the base
        return mc == v

    excludes = DumpLevel(level).excludes
    out = [int(PageClass.KEEP)] * n
    i = max(carry_end - start_pfn, 0)
    out[: min(i, n)] = [carry_cls] * min(i, n)
    end, end_cls = 0, int(PageClass.KEEP)
    while i < n:
        flags, mc = u(i, enc.off_flags, 8), u(i, enc.off_mapcount, 4)

        def bit(b, flags=flags):
            return b is not None and flags >> b & 1 == 1

        if u(i, enc.off_compound_head, 8) & 1:  # a tail: judged through its head
            i += 1
            continue
        # a page has at most one type: a value passing several tests is none (corrupt)
        held = [v for v in (enc.buddy, enc.offline, enc.unaccepted, enc.slab_type,
                            enc.hugetlb_type) if is_type(mc, v)]  # fmt: skip
        page_type = mc if len(held) == 1 else None
        slab = bit(enc.pg_slab) or is_type(page_type, enc.slab_type)
        anon = u(i, enc.off_mapping, 8) >> enc.anon_bit & 1 == 1 and not slab
        order, huge = 0, False
        if flags & enc.head_mask and (start_pfn + i) % 512 != 511 and i + 1 < len(rows):
            if enc.order_kind == "flags1":
                order = u(i + 1, enc.off_flags, 1)
            else:
                order = u(i + 1, cast(int, enc.order_off), 1)
            if enc.hugetlb_kind == "dtor":
                huge = u(i + 1, cast(int, enc.dtor_off), 1) == enc.hugetlb_dtor
            elif enc.hugetlb_kind == "flags1_bit":
                huge = u(i + 1, enc.off_flags, 8) >> cast(int, enc.pg_hugetlb) & 1 == 1
            elif enc.hugetlb_kind == "head_type":
                huge = is_type(page_type, enc.hugetlb_type)
            if order >= 63 or (start_pfn + i) % (1 << order):
                order = 0
        swapbacked = enc.pg_swapbacked is None or bit(enc.pg_swapbacked)
        cache = bit(enc.pg_lru) or (bit(enc.pg_swapcache) and swapbacked)
        private = bit(enc.pg_private)
        order_ok = u(i, enc.off_private, 8) < enc.nr_orders
        buddy = is_type(page_type, enc.buddy) and not slab and order_ok
        nr = 1 << order
        if excludes(DumpLevel.FREE) and buddy:
            cls, nr = PageClass.FREE, 1 << u(i, enc.off_private, 8)
        elif excludes(DumpLevel.FREE) and is_type(page_type, enc.unaccepted):
            cls, nr = PageClass.FREE, 1 << (enc.nr_orders - 1)
        elif excludes(DumpLevel.CACHE) and cache and not private and not anon:
            cls = PageClass.CACHE
        elif excludes(DumpLevel.CACHE_PRIVATE) and cache and not anon:
            cls = PageClass.CACHE_PRIVATE if private else PageClass.CACHE
        elif excludes(DumpLevel.USER) and (anon or huge):
            cls = PageClass.USER
        elif bit(enc.pg_hwpoison):
            cls = PageClass.HWPOISON
        elif is_type(page_type, enc.offline) and not slab:
            cls = PageClass.OFFLINE
        else:
            i += 1
            continue
        out[i : min(i + nr, n)] = [int(cls)] * (min(i + nr, n) - i)
        if i + nr > n:
            end, end_cls = start_pfn + i + nr, int(cls)
        i += nr
    return np.array(out, np.uint8), end, end_cls
