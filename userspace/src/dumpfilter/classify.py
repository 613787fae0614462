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

How it is vectorised.  The facts a decision depends on (tail bit, the flag bits, mapping's
PAGE_MAPPING_ANON bit, which page type ``_mapcount`` holds) form a 12-bit key; ``decide``
evaluates the rules above once for all 4096 keys.  Per page the key is never assembled bit
by bit: one 64-bit word per page gets the masked ``flags`` with the other facts shifted into
bit positions ``flags`` does not use (two shifts each; the page type through one table
lookup on ``_mapcount``), and a multiply-shift hash of that word indexes a 64 KiB table of
verdicts.  The multiplier is searched for when a plan is made (a few hundred microseconds):
any multiplier works whose hash never sends two words with different keys to one slot, and
every word that can occur is enumerated, so the table is exact.  About a dozen array passes
per page, all into reused scratch arrays (no fresh memory to fault in per window).

Pages inside an excluded range are not tested themselves ("continue at pfn + n"): for
ranges that nest or are disjoint (true of aligned buddy blocks and compound pages) a range
start is live exactly when it is not inside the running maximum of earlier range ends, and
the live ranges are written with one ``np.repeat``.  Non-nesting ranges (only possible in
corrupt data) fall back to a loop over *range starts*.  Verdicts are made 8192 struct pages
(512 KiB) at a time so the strided reads hit the CPU cache.

Differences from makedumpfile 1.7.2, all deliberate: a slab page is never anon (6.2+ overlays
``slab.slabs`` on ``mapping``, MDF 5f17bdd); a buddy order >= LENGTH(zone.free_area) is not
trusted (the page is not free-excluded); 6.12+ type values compare by top byte (§3.8); a
``_mapcount`` that passes several page-type tests (possible only with the PAGE_TYPE_BASE mask
test, in corrupt data) is no type at all.
"""

from __future__ import annotations

import threading
from functools import partial

import numpy as np

from .errors import DumpError
from .pageclass import DL_CACHE, DL_CACHE_PRIVATE, DL_FREE, DL_USER, PageClass
from .pagetypes import Encoding

KEEP = np.uint8(PageClass.KEEP)
PGMM_CACHED = 512  # makedumpfile reads struct pages 512 at a time; page[1] must be in-block
JUDGE_ROWS = 8192  # heads and buddies judged at once: bounds the temporaries of a dense run
STEP = 8192  # pages per numpy pass: their 512 KiB of struct pages stays in L2 between passes

# The per-page key: the facts the decision depends on, packed in 12 bits.
B_TAIL, B_ANON, B_LRU, B_PRIV, B_SWAPC, B_SWAPB, B_HWP, B_SLABF, B_HEAD = (1 << i for i in range(9))
T_SHIFT = 9  # page-type code in bits 9..11
T_NONE, T_BUDDY, T_OFFLINE, T_UNACC, T_SLAB, T_HUGETLB = range(6)
T_MASK = 7 << T_SHIFT
NKEYS = 1 << 12
# How many pages a decision excludes
L_ONE, L_COMPOUND, L_BUDDY, L_UNACC = range(4)
# The verdict byte of a key: class, length kind, "needs page[1]" (an order or hugetlb-ness
# could change the outcome), "may exclude more than itself" (page[1] needed, a buddy block,
# unaccepted memory); a page nobody excludes has verdict 0
V_CLS, V_KIND_SHIFT, V_P1, V_LONG = 0x0F, 4, 0x40, 0x80
HASH_BITS = 16
MAX_KEY_BITS = 16  # bits a word may use: 2**16 words are enumerated when a plan is made
MAGIC_TRIES = 2000  # kernels' 11-13 bits need tens of tries; a bound keeps bad input quick
TYPE_LUT_MAX = 1 << 16  # largest ~_mapcount index the low-bits page-type table may take
_U64 = np.uint64
_MASK64 = (1 << 64) - 1


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
    buddy, offline = code == T_BUDDY, code == T_OFFLINE
    on = lambda bit: (key & bit) != 0  # noqa: E731
    slab = on(B_SLABF) | (code == T_SLAB)
    anon = on(B_ANON) & ~slab
    cache = on(B_LRU) | (on(B_SWAPC) & on(B_SWAPB))
    private = on(B_PRIV)
    lv = lambda bit: bool(level & bit)  # noqa: E731
    rules = [  # (condition, class, length kind)
        (on(B_TAIL), PageClass.KEEP, L_ONE),
        (lv(DL_FREE) & buddy & ~slab, PageClass.FREE, L_BUDDY),
        (lv(DL_FREE) & (code == T_UNACC), PageClass.FREE, L_UNACC),
        (lv(DL_CACHE) & cache & ~private & ~anon, PageClass.CACHE, L_COMPOUND),
        (lv(DL_CACHE_PRIVATE) & cache & ~anon & private, PageClass.CACHE_PRIVATE, L_COMPOUND),
        (lv(DL_CACHE_PRIVATE) & cache & ~anon, PageClass.CACHE, L_COMPOUND),
        (lv(DL_USER) & (anon | huge), PageClass.USER, L_COMPOUND),
        (on(B_HWP), PageClass.HWPOISON, L_COMPOUND),
        (offline & ~slab, PageClass.OFFLINE, L_COMPOUND),
    ]
    # the index of the first rule that holds; the last row (keep, one page) always does
    holds = np.ones((len(rules) + 1, NKEYS), bool)  # the last row stays all true
    for i, (c, _, _) in enumerate(rules):
        holds[i] = c
    first = holds.argmax(axis=0)
    cls = np.array([int(c) for _, c, _ in rules] + [int(PageClass.KEEP)], np.uint8)[first]
    kind = np.array([k for _, _, k in rules] + [L_ONE], np.uint8)[first]
    return cls, kind


def type_code(types: list[int]) -> int:
    """The key's type code for the page types whose tests hold for one ``_mapcount``.

    A page has at most one type.  Only the PAGE_TYPE_BASE mask test (6.1-6.11 with our
    patch) lets a value pass several tests (e.g. the base alone passes them all): such a
    value is corrupt, and it is no page type at all (makedumpfile would take whichever
    test it happens to make first)."""
    return types[0] if len(types) == 1 else T_NONE


class Plan:
    """Lookup tables for one encoding and dump level: the hashed word -> key -> verdict."""

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
        const = B_SWAPB if enc.pg_swapbacked is None else 0  # < 4.10: swapcache alone
        self.fmask = _U64(sum(1 << b for b in {b for _, b in bits}))
        # the other facts go to the highest bits flags does not use: tail, anon, type code
        free = [b for b in range(63, -1, -1) if not int(self.fmask) >> b & 1]
        if len(free) < 5:
            raise DumpError("VMCOREINFO PG_* numbers leave no room for the page key")
        self.w_tail, self.w_anon, self.w_type = free[0], free[1], free[2:5]
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
        self._type_table()
        # every word the per-page pass can produce, and the key each one stands for
        word_bits = [(kb, b) for kb, b in bits]
        word_bits += [(B_TAIL, self.w_tail), (B_ANON, self.w_anon)]
        word_bits += [(1 << (T_SHIFT + i), b) for i, b in enumerate(self.w_type)]
        positions = sorted({b for _, b in word_bits})
        if len(positions) > MAX_KEY_BITS:  # a kernel has one PG_head bit: corrupt VMCOREINFO
            raise DumpError(
                f"VMCOREINFO page flags use {len(positions) - 5} bits "
                f"(NUMBER(PG_head_mask)={enc.head_mask:#x}); at most {MAX_KEY_BITS - 5} expected"
            )
        combo = np.arange(1 << len(positions), dtype=np.uint64)
        words = np.zeros(len(combo), np.uint64)
        keys = np.full(len(combo), const, np.uint16)
        for i, b in enumerate(positions):
            on = (combo >> _U64(i)) & _U64(1)
            words |= on << _U64(b)
            for kb, wb in word_bits:
                if wb == b:
                    keys |= on.astype(np.uint16) * np.uint16(kb)
        self.magic = _find_magic(words, keys)
        with np.errstate(over="ignore"):
            slot = (words * self.magic) >> _U64(64 - HASH_BITS)
        self.key_lut = np.zeros(1 << HASH_BITS, np.uint16)
        self.key_lut[slot] = keys
        self.cls, self.len = decide(level, False)
        self.cls_huge, self.len_huge = decide(level, True)
        k = np.arange(NKEYS)
        head = ((k & (B_HEAD | B_TAIL)) == B_HEAD) & ((self.cls != KEEP) | (self.cls_huge != KEEP))
        long = head | (self.len == L_BUDDY) | (self.len == L_UNACC)
        verdict = self.cls | (self.len << V_KIND_SHIFT)
        verdict |= np.where(head, V_P1, 0).astype(np.uint8)
        verdict |= np.where(long, V_LONG, 0).astype(np.uint8)
        self.verdict = verdict.astype(np.uint8)[self.key_lut]
        self.unaccepted = bool((self.len == L_UNACC).any())  # else no row needs that length
        # the sampling unit: 512 pages catches THPs and order-9 blocks as well as top-order
        # ones (which cover two units); page[1] of a unit's first page is in its own block
        self.granule = PGMM_CACHED if enc.nr_orders - 1 >= 9 else 0
        self._scratch = threading.local()

    def _type_table(self) -> None:
        """How ``_mapcount`` becomes the type code in the word (kernel-page-types.md §3.8).

        6.12+: a table on the top byte.  Older kernels: types are values near 0xffffffff,
        so ``~_mapcount`` is small for them (< 64 Ki) and a table on it decides every test
        at once, out-of-range values being clipped onto a last entry that means no type.
        With PAGE_TYPE_BASE the test ignores other bits: the table is on ``~_mapcount``
        masked to BASE and the low bits, where any BASE bit clips to "no type".
        """
        enc = self.enc
        shift = [_U64(1 << b) for b in self.w_type]

        def word(t: int) -> np.uint64:
            return _U64(sum(int(s) for i, s in enumerate(shift) if t >> i & 1))

        self.type_mode, self.zmask = "none", None
        if not self.types:
            return
        if enc.top_byte:
            self.type_lut = np.zeros(256, np.uint64)
            for t, v in self.types:
                self.type_lut[v >> 24] = word(t)
            self.type_mode = "top"
            return
        # a word for every combination of type tests that hold (bit i: test i)
        self.hit_words = np.array(
            [word(type_code([t for i, (t, _) in enumerate(self.types) if h >> i & 1]))
             for h in range(1 << len(self.types))],
            np.uint64,
        )  # fmt: skip
        exact = [(i, ~v & 0xFFFFFFFF) for i, (_, m, v) in enumerate(self.type_tests) if not m]
        masked = [(i, m & ~v & 0xFFFFFFFF) for i, (_, m, v) in enumerate(self.type_tests) if m]
        base = self.enc.type_base or 0
        low = max([f for _, f in exact + masked])
        cap = 1 << low.bit_length()
        if (exact and masked) or cap > TYPE_LUT_MAX or (masked and base & (cap - 1)):
            self.type_mode = "generic"  # no encoding we know; correct, just slower
            return
        hits = np.zeros(cap + 1, np.intp)  # the last entry: clipped values, no type
        z = np.arange(cap)
        for i, f in exact:
            hits[f] |= 1 << i
        for i, f in masked:
            hits[:cap] |= np.where((z & f) == f, 1 << i, 0)
        self.type_lut = self.hit_words[hits]
        self.zmask = np.intp(base | (cap - 1)) if masked else None
        self.type_mode = "low"

    def scratch(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per-thread reused work arrays for ``n`` <= STEP pages (word, temp, index, verdict).

        Indices are intp: np.take would otherwise copy them to intp first."""
        s = getattr(self._scratch, "arrays", None)
        if s is None or len(s[0]) < n:
            m = max(n, STEP)
            s = (np.empty(m, np.uint64), np.empty(m, np.uint64), np.empty(m, np.intp))
            s += (np.empty(m, np.uint8),)
            self._scratch.arrays = s
        return s[0][:n], s[1][:n], s[2][:n], s[3][:n]


def _find_magic(words: np.ndarray, keys: np.ndarray) -> np.uint64:
    """A multiplier whose top HASH_BITS never merge two words of different keys.

    Sparse random multipliers (the "magic bitboard" search) hit within a few dozen tries for
    the ~12 bits a key uses; the generator is seeded, so a plan is the same on every run.
    """
    state = [0xD0F1]
    table = np.zeros(1 << HASH_BITS, np.uint16)

    def draw() -> int:  # splitmix64: numpy.random alone costs ~10 ms to import
        state[0] = z = (state[0] + 0x9E3779B97F4A7C15) & _MASK64
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9 & _MASK64
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB & _MASK64
        return z ^ (z >> 31)

    for _ in range(MAGIC_TRIES):
        m = draw() & draw() & draw()
        magic = _U64(m | 1)
        with np.errstate(over="ignore"):
            slot = (words * magic) >> _U64(64 - HASH_BITS)
        table[slot] = keys
        if np.array_equal(table[slot], keys):
            return magic
    raise DumpError("no page-key hash for these VMCOREINFO PG_* numbers")


_PLANS: dict[tuple[Encoding, int], Plan] = {}


def plan_for(enc: Encoding, level: int) -> Plan:
    p = _PLANS.get((enc, level))
    if p is None:
        p = _PLANS[(enc, level)] = Plan(enc, level)
    return p


def _any(mask: np.ndarray) -> bool:
    """``mask.any()`` minus numpy's Python-level reduction wrapper: a scan makes hundreds
    of such tests on short arrays, where the wrapper costs more than the test."""
    return bool(np.count_nonzero(mask))


def _all(mask: np.ndarray) -> bool:
    """``mask.all()``, the same way as ``_any``."""
    return np.count_nonzero(mask) == mask.size


def _ones(n: int) -> np.ndarray:
    """``np.ones(n, np.int64)`` in two C calls (np.ones itself is Python-level)."""
    a = np.empty(n, np.int64)
    a.fill(1)
    return a


class Run:
    """n struct pages, consecutive in PFN order: column reads and row gathers.

    Either rows of one (n, SIZE(page)) array, or the G-page blocks ``sel`` of one: the
    blocks the sampled scan must judge page by page, read where they lie (no copy of them).
    """

    __slots__ = ("raw", "sel", "g", "n", "_views")

    def __init__(self, raw: np.ndarray, sel: np.ndarray | None = None, g: int = 0, views=None):
        self.raw, self.sel, self.g = raw, sel, g
        self.n = len(raw) if sel is None else len(sel) * g
        # typed views of ``raw`` by dtype, made once: a classify call reads four members
        # of every run and sub-run, and making a view costs more than reading a small one
        self._views: dict[str, tuple[np.ndarray, int] | None] = {} if views is None else views

    def __len__(self) -> int:
        return self.n

    def _typed(self, off: int, dtype: str) -> tuple[np.ndarray, int] | None:
        """All rows of ``raw`` viewed as the member's own type, and the member's column,
        when it is aligned in a contiguous array: ufuncs and gathers on such a view run
        2-7x faster than on w-byte slices viewed afterwards."""
        v = self._views.get(dtype, False)
        if v is False:
            w = np.dtype(dtype).itemsize
            ok = not self.raw.shape[1] % w and self.raw.flags.c_contiguous
            v = self._views[dtype] = (self.raw.view(dtype), w) if ok else None
        if v is None or off % v[1]:
            return None
        return v[0], off // v[1]

    def col(self, off: int, dtype: str) -> np.ndarray:
        """One member of every struct page (a strided view, or gathered from the blocks)."""
        t = self._typed(off, dtype)
        if t is not None:
            typed, c = t
            if self.sel is None:
                return typed[:, c]
            return typed.reshape(-1, self.g, typed.shape[1])[self.sel, :, c].reshape(-1)
        if self.sel is None:
            return field(self.raw, off, dtype)
        w = np.dtype(dtype).itemsize
        blocks = self.raw.reshape(-1, self.g, self.raw.shape[1])
        return blocks[self.sel, :, off : off + w].reshape(-1, w).view(dtype)[:, 0]

    def locate(self, idx: np.ndarray) -> np.ndarray:
        """The rows of ``raw`` that rows ``idx`` of the run are, for ``member`` (made once
        for several reads; in place, since a dense run may have tens of thousands)."""
        if self.sel is None:
            return idx
        at = self.sel[idx // self.g]
        at *= self.g
        at += idx % self.g
        return at

    def member(self, idx: np.ndarray, off: int, dtype: str, *, located: bool = False):
        """One member of the struct pages at rows ``idx`` of the run, or at rows ``idx``
        of ``raw`` if ``located`` (only those bytes are read)."""
        at = idx if located else self.locate(idx)
        t = self._typed(off, dtype)
        if t is None:
            return field(self.raw[at], off, dtype)
        typed, c = t
        return typed[at, c]

    def after(self, b: int) -> np.ndarray | None:
        """The struct page after row ``b - 1``, when the run is plain rows (blocks mode:
        None; no range and no page[1] there crosses a block edge)."""
        return self.raw[b] if self.sel is None else None

    def sub(self, a: int, b: int) -> Run:
        if a == 0 and b >= self.n:
            return self
        if self.sel is None:
            return Run(self.raw[a:b])
        return Run(self.raw, self.sel[a // self.g : b // self.g], self.g, self._views)


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
    return _classify_dense(plan, Run(raw), start_pfn, carry, next_page)


class _Crossing(Exception):
    """A range crosses a sampling-block edge (corrupt data): use the dense scan."""


def _classify_dense(
    plan: Plan,
    run: Run | np.ndarray,
    start_pfn: int,
    carry: Carry,
    next_page: np.ndarray | None,
    bound: int = 0,
) -> np.ndarray:
    """Every page of ``run`` judged (``bound``: see _judge).

    Verdicts are made STEP pages at a time (the strided reads stay in the CPU cache); the
    few rows that may exclude more than themselves, and their hashed words, are collected
    and judged a group of STEP chunks at a time, once a group has JUDGE_ROWS of them (the
    carry takes a range on from one group to the next).  Judging costs ~80 bytes of
    temporaries per row: a whole dense GiB at once (20 000 such rows on a fragmented
    machine) raised the heap's high-water mark by 1.5 MiB, faulted in by every process.
    """
    if not isinstance(run, Run):
        run = Run(run)
    n = len(run)
    verdicts = np.empty(n, np.uint8)
    sps: list[np.ndarray] = []
    words: list[np.ndarray] = []
    g0 = k = 0  # the group being collected: its first row, its rows to judge one by one
    for a in range(0, n, STEP):
        b = min(a + STEP, n)
        word, verdict = _verdicts(plan, run.sub(a, b))
        verdicts[a:b] = verdict
        sp = (verdict >= V_P1).nonzero()[0]
        if len(sp):
            words.append(word[sp])
            sps.append(sp + (a - g0))
            k += len(sp)
        if b == n or k >= JUDGE_ROWS:
            sp, wsp = _joined(sps, np.intp), _joined(words, np.uint64)
            sps.clear()
            words.clear()
            nxt = next_page if b == n else run.after(b)
            res = _judge(
                plan, run.sub(g0, b), verdicts[g0:b], sp, wsp, start_pfn + g0, carry, nxt, bound
            )
            verdicts[g0:b] = res
            g0, k = b, 0
    return verdicts


def _joined(parts: list[np.ndarray], dtype) -> np.ndarray:
    """The pieces as one array, without a copy when there is only one."""
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


def _verdicts(plan: Plan, run: Run) -> tuple[np.ndarray, np.ndarray]:
    """(hashed word, verdict byte) of every page, in the plan's scratch arrays."""
    enc = plan.enc
    word, tmp, low, verdict = plan.scratch(len(run))
    # anon and tail bits: shifted to bit 63 (dropping the rest), then down to their slot
    mapping = run.col(enc.off_mapping, "<u8")
    if enc.anon_bit:
        np.right_shift(mapping, _U64(enc.anon_bit), out=word)
        np.left_shift(word, _U64(63), out=word)
    else:
        np.left_shift(mapping, _U64(63), out=word)
    if plan.w_anon != 63:
        np.right_shift(word, _U64(63 - plan.w_anon), out=word)
    np.left_shift(run.col(enc.off_compound_head, "<u8"), _U64(63), out=tmp)
    if plan.w_tail != 63:
        np.right_shift(tmp, _U64(63 - plan.w_tail), out=tmp)
    np.bitwise_or(word, tmp, out=word)
    np.bitwise_and(run.col(enc.off_flags, "<u8"), plan.fmask, out=tmp)
    np.bitwise_or(word, tmp, out=word)
    if plan.type_mode == "top":
        plan.type_lut.take(run.col(enc.off_mapcount + 3, "u1"), out=tmp, mode="clip")
        np.bitwise_or(word, tmp, out=word)
    elif plan.type_mode == "low":
        np.invert(run.col(enc.off_mapcount, "<u4"), out=low)
        if plan.zmask is not None:
            np.bitwise_and(low, plan.zmask, out=low)
        plan.type_lut.take(low, out=tmp, mode="clip")
        np.bitwise_or(word, tmp, out=word)
    elif plan.type_mode == "generic":
        mc = run.col(enc.off_mapcount, "<u4")
        low[:] = 0
        for i, (_, mask, want) in enumerate(plan.type_tests):
            hit = (mc & np.uint32(mask)) == np.uint32(want) if mask else mc == np.uint32(want)
            low |= hit.astype(np.intp) << i
        plan.hit_words.take(low, out=tmp)
        np.bitwise_or(word, tmp, out=word)
    np.multiply(word, plan.magic, out=word)
    np.right_shift(word, _U64(64 - HASH_BITS), out=word)
    plan.verdict.take(word.view(np.intp), out=verdict, mode="clip")  # < 2**16: no cast
    return word, verdict


def _judge(
    plan: Plan,
    run: Run,
    verdict: np.ndarray,
    sp: np.ndarray,
    wsp: np.ndarray,
    start_pfn: int,
    carry: Carry,
    next_page: np.ndarray | None,
    bound: int = 0,
) -> np.ndarray:
    """Classes of a run from its verdicts; ``sp`` are the rows whose verdict has V_P1 or
    V_LONG, ``wsp`` their hashed words.  ``bound`` > 0: raise _Crossing if any range
    crosses a multiple of it.

    A page's verdict already holds its class when it excludes only itself (most pages);
    only the rows that may exclude more (compound heads, buddy blocks, unaccepted memory)
    are looked at one by one, and the ranges longer than a page are painted over the rest.
    """
    vsp = verdict[sp]
    out = np.bitwise_and(verdict, V_CLS, out=verdict)
    ls, ll, lc = sp[:0], sp[:0], out[:0]
    if len(sp):
        ll, lc = _long(plan, run, wsp, sp, vsp, start_pfn, next_page)
        out[sp] = lc
        keep = (ll > 1) & (lc != KEEP)
        ls, ll, lc = sp[keep], ll[keep], lc[keep]
    if not len(ls) and carry.end_pfn <= start_pfn:
        carry.end_pfn = 0
        return out
    if bound and len(ls):
        first = start_pfn + ls
        if _any(first // bound != (first + ll - 1) // bound):
            raise _Crossing
    return _paint(out, ls, ll, lc, start_pfn, carry)


def _ranges(
    plan: Plan,
    run: Run,
    word: np.ndarray,
    verdict: np.ndarray,
    start_pfn: int,
    page1,
    pfns: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Range starts (rows that exclude), how many pages each excludes, and their classes,
    for sampled rows: ``page1(rows)`` gives their page[1], ``pfns`` their PFNs."""
    nz = verdict.nonzero()[0]
    v = verdict[nz]
    cls = v & np.uint8(V_CLS)
    length = _ones(len(nz))
    sp = (v >= V_P1).nonzero()[0]
    if len(sp):
        rows = nz[sp]
        length[sp], cls[sp] = _long(
            plan, run, word[rows], rows, v[sp], start_pfn, None, page1, pfns
        )
    live = cls != KEEP
    return nz[live], length[live], cls[live]


def _long(
    plan: Plan,
    run: Run,
    words: np.ndarray,
    rows: np.ndarray,
    v: np.ndarray,
    start_pfn: int,
    next_page: np.ndarray | None,
    page1=None,
    pfns: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(length, class) of the ``rows`` whose verdicts ``v`` (hashed words ``words``) may
    exclude more than one page.

    ``page1(rows, off, dtype)`` reads a member of the struct page after each row (default:
    the next row of ``run``, ``next_page`` after the last); ``pfns`` the PFN of every row
    (default consecutive).
    """
    enc = plan.enc
    n = len(run)
    cls = v & np.uint8(V_CLS)
    kind = v >> np.uint8(V_KIND_SHIFT) & np.uint8(3)
    heads = None  # (rows, compound orders) of the heads whose page[1] was read
    hi = (v & np.uint8(V_P1)).nonzero()[0]  # compound heads: page[1] matters
    if len(hi):
        hp = rows[hi]
        hpfn = start_pfn + hp if pfns is None else pfns[hp]
        ok = hpfn % PGMM_CACHED != PGMM_CACHED - 1
        if page1 is None and next_page is None:
            ok &= hp != n - 1
        if not _all(ok):
            hi, hp, hpfn = hi[ok], hp[ok], hpfn[ok]
    length = _ones(len(rows))
    if len(hi):
        p1 = partial(page1, hp) if page1 is not None else _after(run, hp, next_page)
        o, huge = _compound(plan, words[hi], p1, hpfn)
        heads = hi, o, huge
        if _any(huge):
            hh = hi[huge]
            k = plan.key_lut[words[hh]]
            cls[hh] = plan.cls_huge[k]
            kind[hh] = plan.len_huge[k]
        length[hi] = np.where(kind[hi] == L_COMPOUND, np.int64(1) << o, 1)
    if plan.unaccepted:
        length[kind == L_UNACC] = 1 << (enc.nr_orders - 1)
    bud = (kind == L_BUDDY).nonzero()[0]
    if len(bud):
        private = run.member(rows[bud], enc.off_private, "<u8")
        ok = private < np.uint64(enc.nr_orders)
        if _all(ok):
            length[bud] = np.left_shift(np.uint64(1), private)
        else:  # an order the buddy allocator cannot have: not trusted as free
            length[bud[ok]] = np.left_shift(np.uint64(1), private[ok])
            bi = bud[~ok]
            k = plan.key_lut[words[bi]] & np.uint16(0xFFFF & ~T_MASK)
            cls[bi] = plan.cls[k]
            comp = plan.len[k] == L_COMPOUND
            length[bi] = 1
            if heads is not None:  # such a row may also be a compound head, maybe hugetlb
                full = np.zeros(len(rows), np.int64)
                full[heads[0]] = heads[1]
                hb = np.zeros(len(rows), bool)
                hb[heads[0]] = heads[2]
                hb = hb[bi]
                if _any(hb):
                    cls[bi] = np.where(hb, plan.cls_huge[k], cls[bi])
                    comp = np.where(hb, plan.len_huge[k], plan.len[k]) == L_COMPOUND
                length[bi] = np.where(comp, np.int64(1) << full[bi], 1)
    return length, cls


def _after(run: Run, rows: np.ndarray, next_page: np.ndarray | None):
    """Reader of members of the struct page after each of ``rows`` (``next_page`` after
    the run's last row)."""

    at_end = rows[-1] == len(run) - 1
    loc = run.locate((rows[:-1] if at_end else rows) + 1)

    def read(off: int, dtype: str) -> np.ndarray:
        if at_end:
            last = field(np.asarray(next_page).reshape(1, -1), off, dtype)
            return np.concatenate([run.member(loc, off, dtype, located=True), last])
        return run.member(loc, off, dtype, located=True)

    return read


def _compound(plan: Plan, words: np.ndarray, p1, hp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Compound order and hugetlb-ness of heads (hashed words ``words``, PFNs ``hp``);
    ``p1(off, dtype)`` reads a member of each head's page[1].

    An order is trusted only when < 63 and the head PFN is aligned to it.
    """
    enc = plan.enc
    if enc.order_kind == "flags1":
        o = p1(enc.off_flags, "u1").astype(np.int64)
    else:
        o = p1(enc.order_off, "u1").astype(np.int64)
    if enc.hugetlb_kind == "dtor":
        huge = p1(enc.dtor_off, "u1") == enc.hugetlb_dtor
    elif enc.hugetlb_kind == "flags1_bit":
        huge = (p1(enc.off_flags, "<u8") >> np.uint64(enc.pg_hugetlb)) & 1 != 0
    elif enc.hugetlb_kind == "head_type":
        huge = (plan.key_lut[words] >> T_SHIFT) == T_HUGETLB
    else:
        huge = np.zeros(len(hp), bool)
    bad = (o >= 63) | ((hp & ((np.int64(1) << np.minimum(o, 62)) - 1)) != 0)
    return np.where(bad, 0, o), huge


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
    sample = Run(raw[rows])
    whole = Run(raw)
    word, verdict = _verdicts(plan, sample)
    starts, length, cls = _ranges(
        plan,
        sample,
        word,
        verdict,
        start_pfn,
        lambda i, off, dt: whole.member(rows[i] + 1, off, dt),
        rows + start_pfn,
    )
    big = length >= G
    if not _any(big):
        return None
    bs, bl, bc = starts[big], length[big], cls[big]
    if _any(bl % G):
        return None
    brow = rows[bs]
    bend = brow + bl
    prev = np.maximum.accumulate(np.concatenate([[0], bend]))[:-1]
    live = prev <= brow
    lb, le, lc = brow[live], bend[live], bc[live]
    # block classes: runs of [keep gap][covered]..., covered blocks carry their range's class
    gs = (lb - r0) // G
    ge = np.minimum((le - r0) // G, K)
    vals = np.zeros(2 * len(gs) + 1, np.uint8)
    vals[1::2] = lc
    lens = np.empty(2 * len(gs) + 1, np.int64)
    lens[0::2] = np.concatenate([gs, [K]]) - np.concatenate([[0], ge])
    lens[1::2] = ge - gs
    gcls = vals.repeat(lens)
    fine = gcls == KEEP
    if np.count_nonzero(fine) * 8 > K * 7:  # skipping so few blocks is not worth it
        return None

    out = np.empty(n, np.uint8)
    if r0:  # before the first block: the carried range, then pages judged one by one
        out[:r0] = _classify_dense(plan, raw[:r0], start_pfn, carry, raw[r0])
        if carry.end_pfn > start_pfn + r0:
            return None
    mid = out[r0:r_end].reshape(K, G)
    mid[~fine] = gcls[~fine, None]
    sel = fine.nonzero()[0]
    if len(sel):
        # the fine blocks back to back: PFNs modulo G (all a block-bound range depends on)
        # are those of the blocks' own PFNs
        inner = Carry()
        try:
            res = _classify_dense(plan, Run(raw[r0:r_end], sel, G), start_pfn + r0, inner, None, G)
        except _Crossing:
            return None
        if inner.end_pfn:
            return None
        mid[sel] = res.reshape(-1, G)
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


def _paint(
    out: np.ndarray,
    ls: np.ndarray,
    ll: np.ndarray,
    lc: np.ndarray,
    start_pfn: int,
    carry: Carry,
) -> np.ndarray:
    """Apply "exclude n pages from here, continue after them" for the ranges longer than
    one page (``ls``/``ll``/``lc``: starts, lengths, classes) and a carried-in range.

    ``out`` holds every page's own class.  Only long ranges can cover other starts, so the
    running maximum of their ends decides which are live; live ones are painted over
    ``out`` (the starts they cover are not judged, as in makedumpfile's loop).
    """
    n = len(out)
    carry_rel = carry.end_pfn - start_pfn  # > 0: a range from earlier covers our first pages
    cr = min(max(carry_rel, 0), n)
    ls = np.concatenate([[0], ls])
    ends = np.concatenate([[max(carry_rel, 0)], ls[1:] + ll])
    lc = np.concatenate([[carry.cls], lc]).astype(np.uint8)
    prev = np.maximum.accumulate(ends)
    covered = np.zeros(len(ls), bool)
    covered[1:] = prev[:-1] > ls[1:]
    if _any(ends[covered] > prev[:-1][covered[1:]]):
        return _paint_sequential(out, ls[1:], ends[1:] - ls[1:], lc[1:], start_pfn, carry)
    live = ~covered
    live[0] = cr > 0
    ls, le, lc = ls[live], np.minimum(ends[live], n), lc[live]
    if len(ls):
        # runs: [gap, range]* [gap]; pages inside a live range take its class
        vals = np.zeros(2 * len(ls) + 1, np.uint8)
        vals[1::2] = lc
        lens = np.empty(2 * len(ls) + 1, np.int64)
        prev_end = np.concatenate([[0], le])
        lens[0:-1:2] = ls - prev_end[:-1]
        lens[1::2] = le - ls
        lens[-1] = n - prev_end[-1]
        paint = vals.repeat(lens)
        np.copyto(out, paint, where=paint != 0)
        if live[0] and carry.cls == KEEP:  # a carried range that keeps (not from a scan)
            out[:cr] = KEEP
    last = ends[live][-1] if _any(live) else 0
    if last > n:
        carry.end_pfn, carry.cls = start_pfn + int(last), int(lc[-1])
    elif carry_rel <= n:
        carry.end_pfn = 0
    return out


def _paint_sequential(
    out: np.ndarray, ls: np.ndarray, ll: np.ndarray, lc: np.ndarray, start_pfn: int, carry: Carry
) -> np.ndarray:
    """Exact sequential semantics for crossing ranges (corrupt data): a loop over starts."""
    n = len(out)
    starts = out.nonzero()[0]
    length = _ones(len(starts))
    cls = out[starts]
    at = np.searchsorted(starts, ls)
    length[at] = ll
    cls[at] = lc
    res = np.zeros(n, np.uint8)
    pos = max(carry.end_pfn - start_pfn, 0)
    res[: min(pos, n)] = carry.cls
    if pos <= n:  # else the carried range covers all of this run and goes on past it
        carry.end_pfn = 0
    for s, ln, c in zip(starts.tolist(), length.tolist(), cls.tolist(), strict=True):
        if s < pos:
            continue
        e = s + ln
        res[s : min(e, n)] = c
        pos = e
        if e > n:
            carry.end_pfn, carry.cls = start_pfn + e, c
    return res
