"""makedumpfile's per-page decision as a table: every combination of the facts a decision
depends on (a 12-bit key) mapped to the class it gets and how many pages it excludes.

The rules, first match wins (docs/page-types.md, "The decision"):

    tail                                  -> keep (judged through its head)
    FREE and buddy (not slab)             -> FREE, 1 << page.private pages
    FREE and unaccepted                   -> FREE, 1 << (LENGTH(zone.free_area) - 1) pages
    CACHE and cache and !private and !anon      -> CACHE, n
    CACHE_PRI and cache and !anon               -> CACHE_PRIVATE if private else CACHE, n
    USER and (anon or hugetlb)            -> USER, n
    hwpoison                              -> HWPOISON, n   (any dump level)
    offline (not slab)                    -> OFFLINE, n    (any dump level)
    else keep

where n = 1 << compound order for a valid head and 1 otherwise.  ``reference.py`` states the
same rules one page at a time.
"""

from __future__ import annotations

import numpy as np

from ..dumplevel import DumpLevel
from ..pageclass import PageClass

KEEP = np.uint8(PageClass.KEEP)

# The per-page key: the facts the decision depends on, packed in 12 bits.
B_TAIL, B_ANON, B_LRU, B_PRIV, B_SWAPC, B_SWAPB, B_HWP, B_SLABF, B_HEAD = (1 << i for i in range(9))
T_SHIFT = 9  # page-type code in bits 9..11
T_NONE, T_BUDDY, T_OFFLINE, T_UNACC, T_SLAB, T_HUGETLB = range(6)
T_MASK = 7 << T_SHIFT
NKEYS = 1 << 12
# How many pages a decision excludes
L_ONE, L_COMPOUND, L_BUDDY, L_UNACC = range(4)


def decide(level: int, huge: bool) -> tuple[np.ndarray, np.ndarray]:
    """makedumpfile's decision for every possible key: (class, length kind) tables.

    Evaluated once per encoding and level over all 4096 keys; pages then only index the
    tables.  First match wins, in the order of docs/page-types.md §4.3.
    """
    key = np.arange(NKEYS)
    code = key >> T_SHIFT
    buddy, offline = code == T_BUDDY, code == T_OFFLINE
    on = lambda bit: (key & bit) != 0  # noqa: E731
    slab = on(B_SLABF) | (code == T_SLAB)
    anon = on(B_ANON) & ~slab
    cache = on(B_LRU) | (on(B_SWAPC) & on(B_SWAPB))
    private = on(B_PRIV)
    lv = DumpLevel(level).excludes
    free, cache_only, all_cache, user = (
        DumpLevel.FREE,
        DumpLevel.CACHE,
        DumpLevel.CACHE_PRIVATE,
        DumpLevel.USER,
    )
    rules = [  # (condition, class, length kind)
        (on(B_TAIL), PageClass.KEEP, L_ONE),
        (lv(free) & buddy & ~slab, PageClass.FREE, L_BUDDY),
        (lv(free) & (code == T_UNACC), PageClass.FREE, L_UNACC),
        (lv(cache_only) & cache & ~private & ~anon, PageClass.CACHE, L_COMPOUND),
        (
            lv(all_cache) & cache & ~anon & private,
            PageClass.CACHE_PRIVATE,
            L_COMPOUND,
        ),
        (lv(all_cache) & cache & ~anon, PageClass.CACHE, L_COMPOUND),
        (lv(user) & (anon | huge), PageClass.USER, L_COMPOUND),
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
