"""Painting excluded ranges: "exclude n pages from here, continue after them".

Pages inside an excluded range are not tested themselves.  For ranges that nest or are
disjoint (true of aligned buddy blocks and compound pages) a range start is live exactly when
it is not inside the running maximum of earlier range ends, and the live ranges are written
with one ``np.repeat``.  Non-nesting ranges (only possible in corrupt data) fall back to a
loop over *range starts*.  ``Carry`` takes a range on past the end of what was classified.
"""

from __future__ import annotations

import numpy as np

from ..pageclass import PageClass
from .arrays import any_, ones
from .rules import KEEP


class Carry:
    """An excluded range that runs on past the end of what was classified so far."""

    __slots__ = ("end_pfn", "cls")

    def __init__(self, end_pfn: int = 0, cls: int = int(PageClass.KEEP)):
        self.end_pfn = end_pfn
        self.cls = cls


def paint(
    out: np.ndarray,
    starts: np.ndarray,
    lengths: np.ndarray,
    classes: np.ndarray,
    start_pfn: int,
    carry: Carry,
) -> np.ndarray:
    """Apply "exclude n pages from here, continue after them" for the ranges longer than
    one page (``starts``, ``lengths``, ``classes``) and a carried-in range.

    ``out`` holds every page's own class.  Only long ranges can cover other starts, so the
    running maximum of their ends decides which are live; live ones are painted over
    ``out`` (the starts they cover are not judged, as in makedumpfile's loop).
    """
    n = len(out)
    carry_rel = carry.end_pfn - start_pfn  # > 0: a range from earlier covers our first pages
    cr = min(max(carry_rel, 0), n)
    starts = np.concatenate([[0], starts])
    ends = np.concatenate([[max(carry_rel, 0)], starts[1:] + lengths])
    classes = np.concatenate([[carry.cls], classes]).astype(np.uint8)
    prev = np.maximum.accumulate(ends)
    covered = np.zeros(len(starts), bool)
    covered[1:] = prev[:-1] > starts[1:]
    if any_(ends[covered] > prev[:-1][covered[1:]]):
        return paint_sequential(
            out, starts[1:], ends[1:] - starts[1:], classes[1:], start_pfn, carry
        )
    live = ~covered
    live[0] = cr > 0
    starts, stops, classes = starts[live], np.minimum(ends[live], n), classes[live]
    if len(starts):
        # runs: [gap, range]* [gap]; pages inside a live range take its class
        vals = np.zeros(2 * len(starts) + 1, np.uint8)
        vals[1::2] = classes
        lens = np.empty(2 * len(starts) + 1, np.int64)
        prev_end = np.concatenate([[0], stops])
        lens[0:-1:2] = starts - prev_end[:-1]
        lens[1::2] = stops - starts
        lens[-1] = n - prev_end[-1]
        paint = vals.repeat(lens)
        np.copyto(out, paint, where=paint != 0)
        if live[0] and carry.cls == KEEP:  # a carried range that keeps (not from a scan)
            out[:cr] = KEEP
    last = ends[live][-1] if any_(live) else 0
    if last > n:
        carry.end_pfn, carry.cls = start_pfn + int(last), int(classes[-1])
    elif carry_rel <= n:
        carry.end_pfn = 0
    return out


def paint_sequential(
    out: np.ndarray,
    starts: np.ndarray,
    lengths: np.ndarray,
    classes: np.ndarray,
    start_pfn: int,
    carry: Carry,
) -> np.ndarray:
    """Exact sequential semantics for crossing ranges (corrupt data): a loop over starts."""
    n = len(out)
    all_starts = out.nonzero()[0]
    all_lengths = ones(len(all_starts))
    all_classes = out[all_starts]
    at = np.searchsorted(all_starts, starts)
    all_lengths[at] = lengths
    all_classes[at] = classes
    res = np.zeros(n, np.uint8)
    pos = max(carry.end_pfn - start_pfn, 0)
    res[: min(pos, n)] = carry.cls
    if pos <= n:  # else the carried range covers all of this run and goes on past it
        carry.end_pfn = 0
    for s, ln, c in zip(
        all_starts.tolist(), all_lengths.tolist(), all_classes.tolist(), strict=True
    ):
        if s < pos:
            continue
        e = s + ln
        res[s : min(e, n)] = c
        pos = e
        if e > n:
            carry.end_pfn, carry.cls = start_pfn + e, c
    return res
