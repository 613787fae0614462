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
< 64, PFN aligned to the order) and 1 otherwise.

How it is vectorised: the facts a decision depends on (tail bit, the flag bits, mapping's
PAGE_MAPPING_ANON bit, which page type ``_mapcount`` holds) are packed into a 12-bit key
per page with a few strided byte reads and table lookups; ``decide`` evaluates the rules
above once for all 4096 keys, so a page's class is one table lookup.  Heads are few:
page[1] is read only for them.  Pages inside an excluded range are not tested themselves
("continue at pfn + n"): for ranges that nest or are disjoint (true of aligned buddy blocks
and compound pages) a range start is live exactly when it is not inside the running maximum
of earlier range ends, and the live ranges are written with one ``np.repeat``.  Non-nesting
ranges (only possible in corrupt data) fall back to a loop over *range starts*.  Work is
done 32768 struct pages (2 MiB) at a time so the repeated strided reads hit the CPU cache.

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
STEP = 32768  # pages per numpy pass: 2 MiB of struct pages stays in cache between passes

# The per-page key: the facts the decision depends on, packed in 12 bits.
B_TAIL, B_ANON, B_LRU, B_PRIV, B_SWAPC, B_SWAPB, B_HWP, B_SLABF, B_HEAD = (1 << i for i in range(9))
T_SHIFT = 9  # page-type code in bits 9..11
T_NONE, T_BUDDY, T_OFFLINE, T_UNACC, T_SLAB, T_HUGETLB = range(6)
NKEYS = 1 << 12
# How many pages a decision excludes
L_ONE, L_COMPOUND, L_BUDDY, L_UNACC = range(4)


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


def decide(level: int, huge: bool) -> tuple[np.ndarray, np.ndarray]:
    """makedumpfile's decision for every possible key: (class, length kind) tables.

    Evaluated once per encoding and level over all 4096 keys; pages then only index the
    tables.  First match wins, in the order of kernel-page-types.md §3.3.
    """
    key = np.arange(NKEYS)
    code = key >> T_SHIFT
    on = lambda bit: (key & bit) != 0  # noqa: E731
    slab = on(B_SLABF) | (code == T_SLAB)
    anon = on(B_ANON) & ~slab
    cache = on(B_LRU) | (on(B_SWAPC) & on(B_SWAPB))
    private = on(B_PRIV)
    lv = lambda bit: bool(level & bit)  # noqa: E731
    rules = [  # (condition, class, length kind)
        (on(B_TAIL), PageClass.KEEP, L_ONE),
        (lv(DL_FREE) & (code == T_BUDDY) & ~slab, PageClass.FREE, L_BUDDY),
        (lv(DL_FREE) & (code == T_UNACC), PageClass.FREE, L_UNACC),
        (lv(DL_CACHE) & cache & ~private & ~anon, PageClass.CACHE, L_COMPOUND),
        (lv(DL_CACHE_PRIVATE) & cache & ~anon & private, PageClass.CACHE_PRIVATE, L_COMPOUND),
        (lv(DL_CACHE_PRIVATE) & cache & ~anon, PageClass.CACHE, L_COMPOUND),
        (lv(DL_USER) & (anon | huge), PageClass.USER, L_COMPOUND),
        (on(B_HWP), PageClass.HWPOISON, L_COMPOUND),
        ((code == T_OFFLINE) & ~slab, PageClass.OFFLINE, L_COMPOUND),
    ]
    conds = [np.broadcast_to(c, key.shape) for c, _, _ in rules]
    cls = np.select(conds, [int(c) for _, c, _ in rules], int(PageClass.KEEP)).astype(np.uint8)
    kind = np.select(conds, [k for _, _, k in rules], L_ONE).astype(np.uint8)
    return cls, kind


class Plan:
    """Lookup tables for one encoding and dump level."""

    def __init__(self, enc: Encoding, level: int):
        self.enc = enc
        self.level = level
        flag_bits = {
            B_LRU: enc.pg_lru,
            B_PRIV: enc.pg_private,
            B_SWAPC: enc.pg_swapcache,
            B_SWAPB: enc.pg_swapbacked,
            B_HWP: enc.pg_hwpoison,
            B_SLABF: enc.pg_slab,
        }
        bits: list[tuple[int, int]] = [(kb, b) for kb, b in flag_bits.items() if b is not None]
        bits += [(B_HEAD, i) for i in range(64) if enc.head_mask >> i & 1]
        self.const = B_SWAPB if enc.pg_swapbacked is None else 0  # < 4.10: swapcache alone
        self.byte_luts: list[tuple[int, np.ndarray]] = []
        for byte in sorted({b // 8 for _, b in bits}):
            lut = np.zeros(256, np.uint16)
            v = np.arange(256)
            for kb, b in bits:
                if b // 8 == byte:
                    lut[(v >> (b % 8)) & 1 == 1] |= kb
            self.byte_luts.append((enc.off_flags + byte, lut))
        self.types = [
            (t, v)
            for t, v in (
                (T_BUDDY, enc.buddy),
                (T_OFFLINE, enc.offline),
                (T_UNACC, enc.unaccepted),
                (T_SLAB, enc.slab_type),
                (T_HUGETLB, enc.hugetlb_type),
            )
            if v is not None
        ]
        # (type, mask, value): mask 0 = exact u32 compare (stock kernels); with the exported
        # NUMBER(PAGE_TYPE_BASE) the kernel's own 6.1 PageType() test,
        # (page_type & (PAGE_TYPE_BASE | flag)) == PAGE_TYPE_BASE with flag = ~value.
        base = enc.type_base
        self.type_tests = [
            (t, base | (~v & 0xFFFFFFFF), base)
            if base is not None and v & base == base and not (~v & base & 0xFFFFFFFF)
            else (t, 0, v)
            for t, v in self.types
        ]
        if enc.top_byte:
            self.top_lut = np.zeros(256, np.uint16)
            for t, v in self.types:
                self.top_lut[v >> 24] = t << T_SHIFT
        self.cls, self.len = decide(level, False)
        self.cls_huge, self.len_huge = decide(level, True)
        # the sampling unit: 512 pages catches THPs and order-9 blocks as well as top-order
        # ones (which cover two units); page[1] of a unit's first page is in its own block
        self.granule = PGMM_CACHED if enc.nr_orders - 1 >= 9 else 0


_PLANS: dict[tuple[Encoding, int], Plan] = {}


def plan_for(enc: Encoding, level: int) -> Plan:
    p = _PLANS.get((enc, level))
    if p is None:
        p = _PLANS[(enc, level)] = Plan(enc, level)
    return p


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

    Like makedumpfile ("continue at pfn + n") the struct pages inside an excluded range are
    not read: the first struct page of every 512-page block is judged first, and blocks that
    a free block of order >= 9, a THP or a larger compound page covers are filled in without
    touching the rest of their struct pages (on an idle machine most free memory is in
    max-order blocks).  The other blocks are classified page by page.  Corrupt data where a
    range crosses a block edge falls back to classifying every page, so the answer is always
    the sequential one.
    """
    plan = plan_for(enc, level)
    if plan.granule and len(raw) >= 4 * plan.granule:
        saved = carry.end_pfn, carry.cls
        out = _classify_sampled(plan, raw, start_pfn, carry, next_page)
        if out is not None:
            return out
        carry.end_pfn, carry.cls = saved
    return _classify_dense(plan, raw, start_pfn, carry, next_page)


class _Crossing(Exception):
    """A range crosses a sampling-block edge (corrupt data): use the dense scan."""


def _classify_dense(
    plan: Plan,
    raw: np.ndarray,
    start_pfn: int,
    carry: Carry,
    next_page: np.ndarray | None,
    bound: int = 0,
) -> np.ndarray:
    """Every page of ``raw`` judged, STEP pages per numpy pass (``bound``: see _expand)."""
    n = len(raw)
    out = np.empty(n, np.uint8)
    for a in range(0, n, STEP):
        b = min(a + STEP, n)
        nxt = raw[b] if b < n else next_page
        out[a:b] = _classify_step(plan, raw[a:b], start_pfn + a, carry, nxt, bound)
    return out


def _classify_sampled(
    plan: Plan, raw: np.ndarray, start_pfn: int, carry: Carry, next_page: np.ndarray | None
) -> np.ndarray | None:
    """Judge the first struct page of every block (G pages at G-aligned PFNs) first.

    A range of >= G pages starting there is a buddy block of order >= log2(G), unaccepted
    memory or a compound page of such an order: multiples of G (checked) that start on a
    block edge, so they cover whole blocks, and the running maximum of their ends tells
    which of them are live (a start inside a live range is not judged).  Only the other
    blocks are read in full; a range there that crosses a block edge (only in corrupt data)
    aborts.  None when sampling saves little or the data breaks these assumptions.
    """
    G = plan.granule
    n = len(raw)
    c_end = max(carry.end_pfn - start_pfn, 0)
    r0 = c_end + (-(start_pfn + c_end)) % G  # first block start not under the carried range
    K = (n - r0) // G
    if K < 2:
        return None
    r_end = r0 + K * G
    rows = np.arange(r0, r_end, G)
    sample = raw[rows]
    key = _keys(plan, sample)
    cls = plan.cls[key]
    if not cls.any():
        return None
    heads = np.flatnonzero((key & (B_HEAD | B_TAIL)) == B_HEAD)
    pfns = start_pfn + rows
    if len(heads):
        heads = heads[pfns[heads] % PGMM_CACHED != PGMM_CACHED - 1]
    order_pg = huge_pg = None
    if len(heads):
        order_pg, huge_pg = _compound(plan, key, cls, heads, raw[rows[heads] + 1], pfns[heads])
    starts, length = _lengths(plan, sample, key, cls, order_pg, huge_pg)
    big = length >= G
    if not big.any():
        return None
    bs, bl = starts[big], length[big]
    if np.any(bl % G):
        return None
    brow = rows[bs]
    bend = brow + bl
    prev = np.maximum.accumulate(np.concatenate([[0], bend]))[:-1]
    live = prev <= brow
    lb, le, lc = brow[live], bend[live], cls[bs[live]]
    # block classes: runs of [keep gap][covered]..., covered blocks carry their range's class
    gs = (lb - r0) // G
    ge = np.minimum((le - r0) // G, K)
    vals = np.zeros(2 * len(gs) + 1, np.uint8)
    vals[1::2] = lc
    lens = np.empty(2 * len(gs) + 1, np.int64)
    lens[0::2] = np.concatenate([gs, [K]]) - np.concatenate([[0], ge])
    lens[1::2] = ge - gs
    gcls = np.repeat(vals, lens)
    fine = gcls == KEEP
    if np.count_nonzero(fine) * 8 > K * 7:  # copying the fine blocks would cost more
        return None

    out = np.empty(n, np.uint8)
    if r0:  # before the first block: the carried range, then pages judged one by one
        out[:r0] = _classify_dense(plan, raw[:r0], start_pfn, carry, raw[r0])
        if carry.end_pfn > start_pfn + r0:
            return None
    mid = out[r0:r_end].reshape(K, G)
    mid[~fine] = gcls[~fine, None]
    if fine.any():
        blocks = raw[r0:r_end].reshape(K, G, raw.shape[1])[fine].reshape(-1, raw.shape[1])
        inner = Carry()
        try:
            res = _classify_dense(plan, blocks, start_pfn + r0, inner, None, bound=G)
        except _Crossing:
            return None
        if inner.end_pfn:
            return None
        mid[fine] = res.reshape(-1, G)
    last_end = int(le[-1])
    carry.end_pfn = 0
    if last_end > r_end:  # a range of the last covered blocks runs on past them
        out[r_end : min(last_end, n)] = lc[-1]
        if last_end > n:
            carry.end_pfn, carry.cls = start_pfn + last_end, int(lc[-1])
            return out
    t0 = max(r_end, last_end)
    if t0 < n:
        out[t0:] = _classify_dense(plan, raw[t0:], start_pfn + t0, carry, next_page)
    return out


def _keys(plan: Plan, raw: np.ndarray) -> np.ndarray:
    """The 12-bit key of every page: a few strided byte reads and table lookups."""
    enc = plan.enc
    n = len(raw)
    key = (raw[:, enc.off_compound_head] & 1).astype(np.uint16)
    tmp = np.empty(n, np.uint16)
    anon = raw[:, enc.off_mapping] >> enc.anon_bit if enc.anon_bit else raw[:, enc.off_mapping]
    np.multiply(anon & 1, B_ANON, out=tmp, casting="unsafe")
    key |= tmp
    if plan.const:
        key |= plan.const
    for off, lut in plan.byte_luts:
        key |= lut.take(raw[:, off])
    if enc.top_byte:
        key |= plan.top_lut.take(raw[:, enc.off_mapcount + 3])
    elif plan.types:
        mc = field(raw, enc.off_mapcount, "<u4")
        for t, mask, want in plan.type_tests:
            hit = (mc & np.uint32(mask)) == np.uint32(want) if mask else mc == np.uint32(want)
            np.multiply(hit, t << T_SHIFT, out=tmp, casting="unsafe")
            key |= tmp
    return key


def _classify_step(
    plan: Plan,
    raw: np.ndarray,
    start_pfn: int,
    carry: Carry,
    next_page: np.ndarray | None,
    bound: int = 0,
) -> np.ndarray:
    """One pass; ``bound`` > 0: raise _Crossing if any range crosses a multiple of it."""
    n = len(raw)
    key = _keys(plan, raw)
    cls = plan.cls.take(key)

    # compound heads (sparse): order and hugetlb from page[1]
    order_pg = huge_pg = None
    heads = np.flatnonzero(key & B_HEAD)  # one pass; heads are few, tails among them fewer
    if len(heads):
        in_block = (start_pfn + heads) % PGMM_CACHED != PGMM_CACHED - 1
        heads = heads[((key[heads] & B_TAIL) == 0) & in_block]
        if len(heads) and heads[-1] == n - 1 and next_page is None:
            heads = heads[:-1]
    if len(heads):
        rows = heads + 1
        if rows[-1] == n:
            p1 = np.concatenate([raw[rows[:-1]], np.asarray(next_page).reshape(1, -1)])
        else:
            p1 = raw[rows]
        order_pg, huge_pg = _compound(plan, key, cls, heads, p1, start_pfn + heads)

    if not cls.any() and carry.end_pfn <= start_pfn:
        return cls
    starts, length = _lengths(plan, raw, key, cls, order_pg, huge_pg)
    if bound and len(starts):
        first = start_pfn + starts
        if np.any(first // bound != (first + length - 1) // bound):
            raise _Crossing
    return _expand(cls, starts, length, start_pfn, carry)


def _compound(
    plan: Plan, key: np.ndarray, cls: np.ndarray, heads: np.ndarray, p1: np.ndarray, hp
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row compound order and hugetlb-ness, from the page[1] rows ``p1`` of ``heads``.

    An order is trusted only when < 63 and the head PFN ``hp`` is aligned to it; hugetlb
    heads take the USER-if-huge decision (``cls`` updated in place).
    """
    enc = plan.enc
    n = len(key)
    if enc.order_kind == "flags1":
        o = p1[:, enc.off_flags].astype(np.int64)
    else:
        o = p1[:, enc.order_off].astype(np.int64)
    if enc.hugetlb_kind == "dtor":
        huge = p1[:, enc.dtor_off] == enc.hugetlb_dtor
    elif enc.hugetlb_kind == "flags1_bit":
        huge = (field(p1, enc.off_flags, "<u8") >> np.uint64(enc.pg_hugetlb)) & 1 != 0
    elif enc.hugetlb_kind == "head_type":
        huge = (key[heads] >> T_SHIFT) == T_HUGETLB
    else:
        huge = np.zeros(len(heads), bool)
    bad = (o >= 63) | ((hp & ((np.int64(1) << np.minimum(o, 62)) - 1)) != 0)
    order_pg = np.zeros(n, np.int64)
    order_pg[heads] = np.where(bad, 0, o)
    huge_pg = np.zeros(n, bool)
    huge_pg[heads] = huge
    hh = heads[huge]
    cls[hh] = plan.cls_huge[key[hh]]
    return order_pg, huge_pg


def _lengths(
    plan: Plan,
    raw: np.ndarray,
    key: np.ndarray,
    cls: np.ndarray,
    order_pg: np.ndarray | None,
    huge_pg: np.ndarray | None,
):
    """Range starts (pages that exclude) and how many pages each excludes."""
    enc = plan.enc
    starts = np.flatnonzero(cls)
    k = key[starts]
    kind = plan.len[k]
    if huge_pg is not None:
        hs = huge_pg[starts]
        kind[hs] = plan.len_huge[k[hs]]
    length = np.ones(len(starts), np.int64)
    if order_pg is not None:
        comp = kind == L_COMPOUND
        length[comp] = np.int64(1) << order_pg[starts[comp]]
    length[kind == L_UNACC] = 1 << (enc.nr_orders - 1)
    bud = np.flatnonzero(kind == L_BUDDY)
    if len(bud):
        private = field(raw, enc.off_private, "<u8")[starts[bud]]
        ok = private < np.uint64(enc.nr_orders)
        length[bud[ok]] = np.int64(1) << private[ok].astype(np.int64)
        if not ok.all():  # an order the buddy allocator cannot have: not trusted as free
            badi = starts[bud[~ok]]
            plain = key[badi] & np.uint16(0xFFFF & ~(7 << T_SHIFT))
            cls[badi] = plan.cls[plain]
            return _lengths(plan, raw, key & _mask_at(len(key), badi), cls, order_pg, huge_pg)
    return starts, length


def _mask_at(n: int, idx: np.ndarray) -> np.ndarray:
    """A key mask that clears the page-type code at ``idx`` (rare: untrusted buddy orders)."""
    m = np.full(n, 0xFFFF, np.uint16)
    m[idx] = 0xFFFF & ~(7 << T_SHIFT)
    return m


def _expand(
    cls: np.ndarray, starts: np.ndarray, length: np.ndarray, start_pfn: int, carry: Carry
) -> np.ndarray:
    """Apply "exclude n pages from here, continue after them" to the whole run at once."""
    n = len(cls)
    carry_rel = carry.end_pfn - start_pfn  # > 0: a range from earlier covers our first pages
    ends = starts + length
    prev = np.maximum.accumulate(np.concatenate([[max(carry_rel, 0)], ends]))[:-1]
    covered = prev > starts
    if np.any(ends[covered] > prev[covered]):
        full_len = np.ones(n, np.int64)
        full_len[starts] = length
        return _expand_sequential(cls, full_len, start_pfn, carry)
    live = ~covered
    ls, le, lc = starts[live], np.minimum(ends[live], n), cls[starts[live]]
    cr = min(max(carry_rel, 0), n)
    # runs: [carry][gap, range]* [gap]
    vals = np.empty(2 * len(ls) + 2, np.uint8)
    lens = np.empty(2 * len(ls) + 2, np.int64)
    vals[0], lens[0] = carry.cls if cr else KEEP, cr
    vals[1:-1:2], vals[2:-1:2], vals[-1] = KEEP, lc, KEEP
    prev_end = np.concatenate([[cr], le])
    lens[1:-1:2] = ls - prev_end[:-1]
    lens[2:-1:2] = le - ls
    lens[-1] = n - prev_end[-1]
    out = np.repeat(vals, lens)
    if len(ls) and ends[live][-1] > n:
        carry.end_pfn, carry.cls = start_pfn + int(ends[live][-1]), int(lc[-1])
    elif carry_rel <= n:
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
