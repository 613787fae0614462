"""Struct pages as numpy arrays: one member of every page, or of chosen rows, without copies.

A run of struct pages is an ``(n, SIZE(page))`` uint8 array, rows in PFN order, usually a view
of the input's mapping.  Members are read through strided views (``field``), or through views
typed as the member when it is aligned, which numpy handles several times faster.
"""

from __future__ import annotations

import numpy as np


def field(raw: np.ndarray, off: int, dtype: str) -> np.ndarray:
    """A strided view of one struct page member: raw is (n, SIZE(page)) uint8, no copy."""
    w = np.dtype(dtype).itemsize
    return raw[:, off : off + w].view(dtype)[:, 0]


class Run:
    """n struct pages, consecutive in PFN order: column reads and row gathers.

    Either rows of one (n, SIZE(page)) array, or the block-page blocks ``sel`` of one: the
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
        several times faster than on w-byte slices viewed afterwards."""
        if dtype not in self._views:
            w = np.dtype(dtype).itemsize
            ok = not self.raw.shape[1] % w and self.raw.flags.c_contiguous
            self._views[dtype] = (self.raw.view(dtype), w) if ok else None
        v = self._views[dtype]
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
