"""numpy classification of one run of struct pages (no Python loop per page).

makedumpfile's per-PFN decision (``rules.py``; ``reference.py`` is the same decision one page
at a time, the readable specification) evaluated for every page at once.  One job a module:

- ``rules``: the decision as a table over a 12-bit key of the facts it depends on;
- ``plan``: per encoding and dump level, the hashed per-page word that indexes that table;
- ``structpage``: reading struct page members as numpy columns (``Run``);
- ``dense``: every page judged, STEP pages per pass; heads and buddy blocks one by one;
- ``sampled``: one struct page per 512-page block first, skipping covered blocks;
- ``paint``: "exclude n pages, continue after them" over a run and across runs (``Carry``).

Differences from makedumpfile 1.7.2, all deliberate: a slab page is never anon (6.2+ overlays
``slab.slabs`` on ``mapping``); a buddy order >= LENGTH(zone.free_area) is not trusted (the
page is not free-excluded); 6.12+ type values compare by top byte; a ``_mapcount`` that
passes several page-type tests (possible only with the PAGE_TYPE_BASE mask test, in corrupt
data) is no type at all.  docs/page-types.md explains each, with the kernel commits.
"""

from __future__ import annotations

import numpy as np

from ..pagetypes import Encoding
from .dense import classify_dense
from .paint import Carry
from .plan import plan_for
from .sampled import classify_sampled
from .structpage import Run


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
        out = classify_sampled(plan, raw, start_pfn, carry, next_page)
        if out is not None:
            return out
        carry.end_pfn, carry.cls = saved
    return classify_dense(plan, Run(raw), start_pfn, carry, next_page)


__all__ = ["Carry", "classify", "classify_dense", "classify_sampled", "plan_for"]
