"""The sampled scan: the first struct page of every 512-page block judged first.

Blocks that a free block of order >= 9, a THP or a larger compound page covers are filled in
without touching the rest of their struct pages (on an idle machine most free memory is in
max-order blocks); only the other blocks are read in full, by the dense scan.
"""

from __future__ import annotations

import numpy as np

from .arrays import any_, ones
from .dense import RangeCrossesBlock, classify_dense, long_ranges, page_verdicts
from .paint import Carry
from .plan import V_CLS, V_P1, Plan
from .rules import KEEP
from .structpage import Run


def sampled_ranges(
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
    length = ones(len(nz))
    long_rows = (v >= V_P1).nonzero()[0]
    if len(long_rows):
        rows = nz[long_rows]
        length[long_rows], cls[long_rows] = long_ranges(
            plan, run, word[rows], rows, v[long_rows], start_pfn, None, page1, pfns
        )
    live = cls != KEEP
    return nz[live], length[live], cls[live]


def classify_sampled(
    plan: Plan, raw: np.ndarray, start_pfn: int, carry: Carry, next_page: np.ndarray | None
) -> np.ndarray | None:
    """Judge the first struct page of every block (block pages at block-aligned PFNs) first.

    A range of >= block pages starting there is a buddy block of order >= log2(block), unaccepted
    memory or a compound page of such an order: multiples of block (checked) that start on a
    block edge, so they cover whole blocks, and the running maximum of their ends tells
    which of them are live (a start inside a live range is not judged).  Only the other
    blocks are read in full; a range there that crosses a block edge (only in corrupt data)
    aborts.  None when sampling saves little or the data breaks these assumptions.
    """
    block = plan.granule
    n = len(raw)
    c_end = max(carry.end_pfn - start_pfn, 0)
    r0 = c_end + (-(start_pfn + c_end)) % block  # first block start not under the carried range
    nblocks = (n - r0) // block
    if nblocks < 2:
        return None
    r_end = r0 + nblocks * block
    rows = np.arange(r0, r_end, block)
    sample = Run(raw[rows])
    whole = Run(raw)
    word, verdict = page_verdicts(plan, sample)
    starts, length, cls = sampled_ranges(
        plan,
        sample,
        word,
        verdict,
        start_pfn,
        lambda i, off, dt: whole.member(rows[i] + 1, off, dt),
        rows + start_pfn,
    )
    big = length >= block
    if not any_(big):
        return None
    bs, bl, bc = starts[big], length[big], cls[big]
    if any_(bl % block):
        return None
    brow = rows[bs]
    bend = brow + bl
    prev = np.maximum.accumulate(np.concatenate([[0], bend]))[:-1]
    live = prev <= brow
    live_rows, live_ends, live_classes = brow[live], bend[live], bc[live]
    # block classes: runs of [keep gap][covered]..., covered blocks carry their range's class
    gs = (live_rows - r0) // block
    ge = np.minimum((live_ends - r0) // block, nblocks)
    vals = np.zeros(2 * len(gs) + 1, np.uint8)
    vals[1::2] = live_classes
    lens = np.empty(2 * len(gs) + 1, np.int64)
    lens[0::2] = np.concatenate([gs, [nblocks]]) - np.concatenate([[0], ge])
    lens[1::2] = ge - gs
    gcls = vals.repeat(lens)
    fine = gcls == KEEP
    if np.count_nonzero(fine) * 8 > nblocks * 7:  # skipping so few blocks is not worth it
        return None

    out = np.empty(n, np.uint8)
    if r0:  # before the first block: the carried range, then pages judged one by one
        out[:r0] = classify_dense(plan, raw[:r0], start_pfn, carry, raw[r0])
        if carry.end_pfn > start_pfn + r0:
            return None
    mid = out[r0:r_end].reshape(nblocks, block)
    mid[~fine] = gcls[~fine, None]
    sel = fine.nonzero()[0]
    if len(sel):
        # the fine blocks back to back: PFNs modulo block (all a block-bound range depends on)
        # are those of the blocks' own PFNs
        inner = Carry()
        try:
            res = classify_dense(
                plan, Run(raw[r0:r_end], sel, block), start_pfn + r0, inner, None, block
            )
        except RangeCrossesBlock:
            return None
        if inner.end_pfn:
            return None
        mid[sel] = res.reshape(-1, block)
    last_end = int(live_ends[-1])
    carry.end_pfn = 0
    if last_end > r_end:  # a range of the last covered blocks runs on past them
        out[r_end : min(last_end, n)] = live_classes[-1]
        if last_end > n:
            carry.end_pfn, carry.cls = start_pfn + last_end, int(live_classes[-1])
            return out
    t0 = max(r_end, last_end)
    if t0 < n:
        out[t0:] = classify_dense(plan, raw[t0:], start_pfn + t0, carry, next_page)
    return out
