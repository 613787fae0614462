"""dumpfilter's page classes agree with /proc/kpageflags captured just before the panic.

kpageflags (Documentation/admin-guide/mm/pagemap.rst) is the crashed kernel's own opinion of
each page.  Mapping (docs/page-types.md §4): free = BUDDY (only the first page of a
free block carries it; the rest of the block has no flags), user = ANON or HUGE (THP tails
report ANON through their folio), cache = LRU and not ANON, offline = OFFLINE.
The snapshot is taken a few milliseconds before the crash by busybox `cat`, so a small drift
is allowed: TOLERANCE pages plus 0.2 % of RAM per comparison.  khugepaged is stopped before
the snapshot (guest/init.sh): one THP collapse in between moves about a thousand pages.
The workload's own pages (their PFNs read from /proc/self/pagemap in the guest) must be
classified exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import host_classes
from e2elib import KPF, RawVmcore, has, kpageflags
from kdumpvm import CycleResult

CACHE, CACHE_PRIVATE, USER, FREE, OFFLINE = 1, 2, 3, 4, 6
TOLERANCE = 256


def _setup(cycle: CycleResult):
    cls = host_classes(cycle)
    raw = RawVmcore(cycle.path("vmcore"))
    flags = kpageflags(cycle.path("kpageflags"))[: len(cls)]
    ram = raw.ram()[: len(cls)]
    allowed = TOLERANCE + int(ram.sum()) // 500
    return cls, flags, ram, allowed


def _pfns(cycle: CycleResult, region: str) -> np.ndarray:
    return np.load(cycle.path(f"pfns_{region}.npy")).astype(np.int64)


def test_workload_populated_every_page_kind(cycle: CycleResult):
    """Sanity of the oracle itself: the guest really had anon, THP, hugetlb and cache pages."""
    flags = kpageflags(cycle.path("kpageflags"))
    assert has(flags[_pfns(cycle, "anon")], KPF.ANON).all()
    thp = flags[_pfns(cycle, "thp")]
    assert has(thp, KPF.THP).mean() > 0.9, "THP did not back the MADV_HUGEPAGE region"
    assert has(thp, KPF.COMPOUND_TAIL).any()
    assert has(flags[_pfns(cycle, "hugetlb")], KPF.HUGE).all()
    cache = flags[_pfns(cycle, "cache")]
    assert (has(cache, KPF.LRU) & ~has(cache, KPF.ANON)).all()


@pytest.mark.parametrize("region", ["anon", "thp", "hugetlb"])
def test_workload_user_pages_are_classified_user(cycle: CycleResult, region: str):
    cls = host_classes(cycle)
    pfns = _pfns(cycle, region)
    wrong = pfns[cls[pfns] != USER]
    assert wrong.size == 0, f"{wrong.size}/{pfns.size} {region} pages not USER, e.g. " + ", ".join(
        f"{p}:{cls[p]}" for p in wrong[:10]
    )


def test_workload_page_cache_is_classified_cache(cycle: CycleResult):
    cls = host_classes(cycle)
    pfns = _pfns(cycle, "cache")
    wrong = pfns[(cls[pfns] != CACHE) & (cls[pfns] != CACHE_PRIVATE)]
    assert wrong.size == 0, f"{wrong.size} cache pages misclassified: {cls[wrong[:10]]}"


def test_free_pages_agree_with_kpageflags_buddy(cycle: CycleResult):
    cls, flags, ram, allowed = _setup(cycle)
    ours = cls == FREE
    buddy = has(flags, KPF.BUDDY) & ram
    heads_missed = int(np.count_nonzero(buddy & ~ours))
    # Pages we call free must be a buddy head or an unflagged page inside a free block.
    not_free = int(np.count_nonzero(ours & ~buddy & (flags != 0)))
    assert ours.sum() > 10_000, "the guest had free memory; none found"
    assert heads_missed <= allowed, f"{heads_missed} BUDDY pages not classified free"
    assert not_free <= allowed, f"{not_free} pages classified free carry page flags"
    # Every run of free pages starts at a buddy head.
    starts = np.flatnonzero(ours & ~np.concatenate(([False], ours[:-1])))
    bad = int(np.count_nonzero(~buddy[starts]))
    assert bad <= allowed, f"{bad} free runs do not start at a BUDDY page"


def test_user_pages_agree_with_kpageflags_anon_or_huge(cycle: CycleResult):
    cls, flags, ram, allowed = _setup(cycle)
    ours = cls == USER
    theirs = (has(flags, KPF.ANON) | has(flags, KPF.HUGE)) & ~has(flags, KPF.SLAB) & ram
    diff = int(np.count_nonzero(ours ^ theirs))
    assert diff <= allowed, (
        f"user: {np.count_nonzero(ours & ~theirs)} only ours, "
        f"{np.count_nonzero(theirs & ~ours)} only kpageflags (allowed {allowed})"
    )


def test_cache_pages_agree_with_kpageflags_lru_not_anon(cycle: CycleResult):
    cls, flags, ram, allowed = _setup(cycle)
    ours = (cls == CACHE) | (cls == CACHE_PRIVATE)
    theirs = has(flags, KPF.LRU) & ~has(flags, KPF.ANON) & ~has(flags, KPF.HUGE) & ram
    diff = int(np.count_nonzero(ours ^ theirs))
    assert diff <= allowed, (
        f"cache: {np.count_nonzero(ours & ~theirs)} only ours, "
        f"{np.count_nonzero(theirs & ~ours)} only kpageflags (allowed {allowed})"
    )


def test_offline_pages_agree_with_kpageflags(cycle: CycleResult):
    cls, flags, ram, allowed = _setup(cycle)
    ours = cls == OFFLINE
    theirs = has(flags, KPF.OFFLINE) & ram
    assert int(np.count_nonzero(ours ^ theirs)) <= allowed
