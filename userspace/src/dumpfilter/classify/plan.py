"""The lookup tables of one encoding and dump level (``Plan``), made once per run.

Per page the key is never assembled bit by bit: one 64-bit word per page gets the masked
``flags`` with the other facts shifted into bit positions ``flags`` does not use (two shifts
each; the page type through one table lookup on ``_mapcount``), and a multiply-shift hash of
that word indexes a 64 KiB table of verdicts.  The multiplier is searched for when a plan is
made: any multiplier works whose hash never sends two words with different keys to one slot,
and every word that can occur is enumerated, so the table is exact.
"""

from __future__ import annotations

import threading

import numpy as np

from ..errors import DumpError
from ..pagetypes import Encoding
from .rules import (
    B_ANON,
    B_HEAD,
    B_HWP,
    B_LRU,
    B_PRIV,
    B_SLABF,
    B_SWAPB,
    B_SWAPC,
    B_TAIL,
    KEEP,
    L_BUDDY,
    L_UNACC,
    NKEYS,
    T_BUDDY,
    T_HUGETLB,
    T_OFFLINE,
    T_SHIFT,
    T_SLAB,
    T_UNACC,
    decide,
    type_code,
)

PGMM_CACHED = 512  # makedumpfile reads struct pages 512 at a time; page[1] must be in-block
STEP = 8192  # pages per numpy pass: their 512 KiB of struct pages stays in L2 between passes
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
        self.magic = find_multiplier(words, keys)
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
        """How ``_mapcount`` becomes the type code in the word (docs/page-types.md §3).

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


def find_multiplier(words: np.ndarray, keys: np.ndarray) -> np.uint64:
    """A multiplier whose top HASH_BITS never merge two words of different keys.

    Sparse random multipliers (the "magic bitboard" search) hit within a few dozen tries for
    the ~12 bits a key uses; the generator is seeded, so a plan is the same on every run.
    """
    state = [0xD0F1]
    table = np.zeros(1 << HASH_BITS, np.uint16)

    def draw() -> int:  # splitmix64: importing numpy.random would cost more than the search
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
