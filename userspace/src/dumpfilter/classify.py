"""numpy classification of one run of struct pages (no Python loop per page).

makedumpfile's per-PFN decision (kernel-page-types.md §3.3), evaluated for every page at
once, first match wins:

    tail                                  -> keep (judged through its head)
    FREE and buddy (not slab)             -> FREE, 1 << page.private pages
    FREE and unaccepted                   -> FREE, 1 << (LENGTH(zone.free_area) - 1) pages
    CACHE and cache and !private and !anon      -> CACHE, n
    CACHE_PRI and cache and !anon               -> CACHE_PRIVATE if private else CACHE, n
    USER and (anon or hugetlb)            -> USER, n
    hwpoison                              -> HWPOISON, n   (any dump level)
    offline (not slab)                    -> OFFLINE, n    (any dump level)
    else keep

where n = 1 << compound order for a valid head (page[1] in the same 512-entry block, order
< 64, PFN aligned to the order) and 1 otherwise.  Pages inside an excluded range are not
tested themselves ("continue at pfn + n").  That sequential rule is vectorised: for ranges
that nest or are disjoint (true of aligned buddy blocks and compound pages) a range start
is live exactly when it is not inside the running maximum of earlier range ends, and every
page takes the class of the last live start before it if it lies below that range's end.
Non-nesting ranges (only possible in corrupt data) fall back to a loop over *range starts*.

Differences from makedumpfile 1.7.2, all deliberate: a slab page is never anon (6.2+ overlays
``slab.slabs`` on ``mapping``, MDF 5f17bdd); a buddy order >= LENGTH(zone.free_area) is not
trusted (the page is not free-excluded); 6.12+ type values compare by top byte (§3.8).
"""

from __future__ import annotations

import numpy as np

from .pageclass import DL_CACHE, DL_CACHE_PRIVATE, DL_FREE, DL_USER, PageClass
from .pagetypes import Encoding

KEEP = np.uint8(PageClass.KEEP)
PGMM_CACHED = 512  # makedumpfile reads struct pages 512 at a time; page[1] must be in-block


def field(raw: np.ndarray, off: int, dtype: str) -> np.ndarray:
    """A strided view of one struct page member: raw is (n, SIZE(page)) uint8, no copy."""
    w = np.dtype(dtype).itemsize
    return raw[:, off : off + w].view(dtype)[:, 0]


class Carry:
    """An excluded range that runs on past the end of what was classified so far."""

    __slots__ = ("end_pfn", "cls")

    def __init__(self, end_pfn: int = 0, cls: int = int(PageClass.KEEP)):
        self.end_pfn = end_pfn
        self.cls = cls


def _has_type(enc: Encoding, mc: np.ndarray, value: int | None) -> np.ndarray | None:
    if value is None:
        return None
    if enc.top_byte:
        return (mc >> np.uint32(24)) == np.uint32(value >> 24)
    return mc == np.uint32(value)


def _bit(flags: np.ndarray, bit: int | None) -> np.ndarray | None:
    if bit is None:
        return None
    return (flags & np.uint64(1 << bit)) != 0


def classify(
    enc: Encoding,
    raw: np.ndarray,
    start_pfn: int,
    level: int,
    carry: Carry,
    next_page: np.ndarray | None = None,
) -> np.ndarray:
    """PageClass per page of ``raw`` (struct pages of PFNs start_pfn..), updating ``carry``.

    ``next_page`` is the struct page that follows ``raw`` (PFN start_pfn + len(raw)) when it
    is known; a head in the last row needs it as page[1].
    """
    n = len(raw)
    pfn = np.arange(start_pfn, start_pfn + n, dtype=np.int64)
    flags = field(raw, enc.off_flags, "<u8")
    mc = field(raw, enc.off_mapcount, "<u4")
    tail = (field(raw, enc.off_compound_head, "<u8") & np.uint64(1)) != 0

    slab = _bit(flags, enc.pg_slab)
    if slab is None:
        slab = _has_type(enc, mc, enc.slab_type)
    if slab is None:
        slab = np.zeros(n, bool)

    # ---- compound heads: order (and hugetlb) from page[1]
    order = np.zeros(n, np.int64)
    huge = np.zeros(n, bool)
    heads = np.flatnonzero(
        ((flags & np.uint64(enc.head_mask)) != 0) & ~tail & ((pfn % PGMM_CACHED) != PGMM_CACHED - 1)
    )
    if len(heads):
        if heads[-1] == n - 1 and next_page is None:
            heads = heads[:-1]
        rows = heads + 1
        if len(rows) and rows[-1] == n:
            p1 = np.concatenate([raw[rows[:-1]], next_page.reshape(1, -1)])
        else:
            p1 = raw[rows]
        if enc.order_kind == "flags1":
            p1flags = field(p1, enc.off_flags, "<u8")
            o = (p1flags & np.uint64(0xFF)).astype(np.int64)
        else:
            o = p1[:, enc.order_off].astype(np.int64)
        if enc.hugetlb_kind == "dtor":
            huge[heads] = p1[:, enc.dtor_off] == enc.hugetlb_dtor
        elif enc.hugetlb_kind == "flags1_bit":
            huge[heads] = (field(p1, enc.off_flags, "<u8") >> np.uint64(enc.pg_hugetlb)) & 1 != 0
        elif enc.hugetlb_kind == "head_type":
            huge[heads] = _has_type(enc, mc[heads], enc.hugetlb_type)
        hp = pfn[heads]
        bad = (o >= 63) | ((hp & ((np.int64(1) << np.minimum(o, 62)) - 1)) != 0)
        order[heads] = np.where(bad, 0, o)
    npages = np.int64(1) << order

    # ---- per-page predicates, in makedumpfile's order
    conds: list[np.ndarray] = []
    classes: list[np.ndarray | int] = []
    lengths: list[np.ndarray | int] = []
    live = ~tail
    if level & DL_FREE:
        buddy = _has_type(enc, mc, enc.buddy) & ~slab
        private = field(raw, enc.off_private, "<u8")
        valid = private < np.uint64(enc.nr_orders)
        conds.append(live & buddy & valid)
        classes.append(PageClass.FREE)
        lengths.append(np.int64(1) << np.minimum(private, 62).astype(np.int64))
        unacc = _has_type(enc, mc, enc.unaccepted)
        if unacc is not None:
            conds.append(live & unacc)
            classes.append(PageClass.FREE)
            lengths.append(1 << (enc.nr_orders - 1))
    if level & (DL_CACHE | DL_CACHE_PRIVATE | DL_USER):
        mapping = field(raw, enc.off_mapping, "<u8")
        anon = ((mapping & np.uint64(1)) != 0) & ~slab
        priv = _bit(flags, enc.pg_private)
        if level & (DL_CACHE | DL_CACHE_PRIVATE):
            cache = _bit(flags, enc.pg_lru)
            swap = _bit(flags, enc.pg_swapcache)
            if enc.pg_swapbacked is not None:
                swap &= _bit(flags, enc.pg_swapbacked)
            cache |= swap
            if level & DL_CACHE:
                conds.append(live & cache & ~priv & ~anon)
                classes.append(PageClass.CACHE)
                lengths.append(npages)
            if level & DL_CACHE_PRIVATE:
                conds.append(live & cache & ~anon)
                classes.append(
                    np.where(priv, np.uint8(PageClass.CACHE_PRIVATE), np.uint8(PageClass.CACHE))
                )
                lengths.append(npages)
        if level & DL_USER:
            conds.append(live & (anon | huge))
            classes.append(PageClass.USER)
            lengths.append(npages)
    hwp = _bit(flags, enc.pg_hwpoison)
    if hwp is not None:
        conds.append(live & hwp)
        classes.append(PageClass.HWPOISON)
        lengths.append(npages)
    off = _has_type(enc, mc, enc.offline)
    if off is not None:
        conds.append(live & off & ~slab)
        classes.append(PageClass.OFFLINE)
        lengths.append(npages)

    if not conds:
        cls = np.zeros(n, np.uint8)
        length = np.ones(n, np.int64)
    else:
        cls = np.select(
            conds, [np.broadcast_to(np.asarray(c, np.uint8), n) for c in classes], default=KEEP
        ).astype(np.uint8, copy=False)
        length = np.select(
            conds, [np.broadcast_to(np.asarray(x, np.int64), n) for x in lengths], default=1
        )
    return _expand(cls, length, start_pfn, carry)


def _expand(cls: np.ndarray, length: np.ndarray, start_pfn: int, carry: Carry) -> np.ndarray:
    """Apply "exclude n pages from here, continue after them" to the whole run at once."""
    n = len(cls)
    starts = np.flatnonzero(cls != KEEP)
    carry_rel = carry.end_pfn - start_pfn  # > 0: a range from earlier covers our first pages
    if len(starts) == 0 and carry_rel <= 0:
        return cls
    out = np.zeros(n, np.uint8)
    ends = starts + length[starts]
    # running maximum of the ends of *earlier* ranges (plus the carried one)
    prev = np.maximum.accumulate(np.concatenate([[max(carry_rel, 0)], ends]))[:-1]
    covered = prev > starts
    if np.any(ends[covered] > prev[covered]):
        return _expand_sequential(cls, length, start_pfn, carry)
    live = starts[~covered]
    live_end = ends[~covered]
    if carry_rel > 0:
        out[: min(carry_rel, n)] = carry.cls
    if len(live):
        # each page: the last live start at or before it, if the page is below its end
        idx = np.zeros(n, np.int64)
        idx[live] = np.arange(1, len(live) + 1)
        last = np.maximum.accumulate(idx)
        has = last > 0
        pos = np.flatnonzero(has)
        k = last[pos] - 1
        inside = pos < live_end[k]
        out[pos[inside]] = cls[live[k[inside]]]
        tail_end = int(live_end[-1])
        if tail_end > n:
            carry.end_pfn, carry.cls = start_pfn + tail_end, int(cls[live[-1]])
            return out
    if carry_rel > n:
        carry.end_pfn = start_pfn + carry_rel  # unchanged, still running
    else:
        carry.end_pfn = 0
    return out


def _expand_sequential(
    cls: np.ndarray, length: np.ndarray, start_pfn: int, carry: Carry
) -> np.ndarray:
    """Exact sequential semantics for crossing ranges (corrupt data): a loop over starts."""
    n = len(cls)
    out = np.zeros(n, np.uint8)
    pos = max(carry.end_pfn - start_pfn, 0)
    out[: min(pos, n)] = carry.cls
    carry.end_pfn = 0
    for s in np.flatnonzero(cls != KEEP):
        s = int(s)
        if s < pos:
            continue
        e = s + int(length[s])
        out[s : min(e, n)] = cls[s]
        pos = e
        if e > n:
            carry.end_pfn, carry.cls = start_pfn + e, int(cls[s])
    return out
