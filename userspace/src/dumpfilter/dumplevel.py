"""The dump level (``-d``): which pages a dump leaves out, in one place.

makedumpfile's bit mask: 1 zero pages, 2 page cache without private data, 4 all page cache,
8 user process data, 16 free pages.  Hardware-poisoned and offline pages are left out at every
level; holes are not RAM.  Every question about a level is answered here: which classes are
kept (``keep_table``, ``kept``: the writers and ``--split``), whether the writers test pages
for zeros, which classes the scans may exclude (``excludes``, the rule table of
``classify.rules``) and what the kernel interface is asked (``kernel_request``).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .pageclass import PageClass


class DumpLevel(int):
    """A dump level 0-31; an ``int`` (headers, reports and JSON carry the number itself)."""

    ZERO = 0x01
    CACHE = 0x02  # page cache without private data
    CACHE_PRIVATE = 0x04  # all page cache, private or not
    USER = 0x08
    FREE = 0x10
    ALL = 0x1F

    def __new__(cls, value: int = 0) -> DumpLevel:
        value = int(value)
        if not 0 <= value <= cls.ALL:
            raise ValueError(f"dump level {value} out of range (0-31)")
        return super().__new__(cls, value)

    def excludes(self, bit: int) -> bool:
        """Whether this level has ``bit`` (one of ZERO .. FREE) set."""
        return bool(self & bit)

    @property
    def tests_zero_pages(self) -> bool:
        """Zero pages are found from the data by the writers (no scan produces ZERO)."""
        return self.excludes(self.ZERO)

    def keep_table(self) -> np.ndarray:
        """Lookup table PageClass value -> kept (bool).

        Bit 2 excludes page cache without private data; bit 4 excludes all page cache
        (private or not, as makedumpfile's ``DL_EXCLUDE_CACHE_PRI`` test does); bit 8 user
        pages; bit 16 free pages.  ZERO never reaches this table: the writers decide it.
        """
        t = np.ones(256, dtype=bool)
        t[PageClass.HOLE] = False
        t[PageClass.HWPOISON] = False
        t[PageClass.OFFLINE] = False
        t[PageClass.CACHE] = not self & (self.CACHE | self.CACHE_PRIVATE)
        t[PageClass.CACHE_PRIVATE] = not self.excludes(self.CACHE_PRIVATE)
        t[PageClass.USER] = not self.excludes(self.USER)
        t[PageClass.FREE] = not self.excludes(self.FREE)
        return t

    def kept(self, classes: np.ndarray) -> np.ndarray:
        """``keep_table()[classes]`` for an array of PageClass values, as a bool array.

        Computed as bit ``c`` of a mask of the kept classes, shifted right by ``c``: the
        writers ask this of every PFN twice (bitmaps, then data), and numpy's fancy indexing
        into a 256-entry table costs about five times more a page than the shift.  PageClass
        values are below 16 (pageclass.py), so a uint16 mask holds them all.
        """
        return ((_kept_mask(int(self)) >> classes) & 1).astype(bool)

    def kernel_request(self) -> int:
        """The class mask the kernel interface (``/proc/vmcore_pfn_lists``) is asked for:
        bit ``1 << c`` for each class of struct pages this level leaves out (the kernel
        classifies, the level's meaning stays here).  HOLE is no class of struct pages and
        ZERO is found in the data by the writers."""
        t = self.keep_table()
        skip = (PageClass.HOLE, PageClass.ZERO)
        return sum(1 << int(c) for c in PageClass if c not in skip and not t[c])


@lru_cache(maxsize=DumpLevel.ALL + 1)
def _kept_mask(level: int) -> np.uint16:
    """Bit ``c`` set for each PageClass ``c`` that ``level`` keeps: made once per level, not
    once per window of each writer pass."""
    table = DumpLevel(level).keep_table()
    return np.uint16(sum(1 << int(c) for c in PageClass if table[c]))
