"""classify(): makedumpfile's per-page rules on hand-built struct pages, per encoding."""

from __future__ import annotations

import numpy as np
import pytest
import synthvmcore as sv
from fakes import (
    enc_for,
)

from dumpfilter.classify import Carry, classify
from dumpfilter.classify.reference import reference
from dumpfilter.pageclass import PageClass as C
from dumpfilter.pagetypes import detect
from dumpfilter.vmcoreinfo import VmcoreInfo

VMEMMAP = 0xFFFFEA0000000000


class Pages:
    """A (n, 64) struct page array written through the family's encoding."""

    def __init__(self, kernel: str, n: int = 64, **kw):
        self.enc, self.fam = enc_for(kernel, **kw)
        self.raw = np.zeros((n, 64), np.uint8)
        self.u64 = self.raw.view(np.uint64)
        self.u32 = self.raw.view(np.uint32)
        self.u32[:, 12] = 0xFFFFFFFF  # _mapcount -1

    def flag(self, i, *names):
        for nm in names:
            self.u64[i, 0] |= np.uint64(1 << self.fam.pg[nm])

    def buddy(self, i, order):
        self.u32[i, 12] = self.fam.buddy
        self.u64[i, 5] = order

    def compound(self, head, order, *, huge=False, dtor=1):
        for t in range(head + 1, head + (1 << order)):
            self.u64[t, 1] = (VMEMMAP + head * 64) | 1
        self.flag(head, "head")
        if self.fam.order_in_flags:
            self.u64[head + 1, 0] = order | (
                (1 << self.fam.pg["hugetlb"]) if huge and self.fam.pg_hugetlb else 0
            )
        else:
            self.raw[head + 1, 16] = sv.HUGETLB_DTOR if huge else dtor
            self.raw[head + 1, 17] = order
        if huge and self.fam.hugetlb_type is not None:
            self.u32[head, 12] = self.fam.hugetlb_type

    def run(self, level, start_pfn=0, carry=None, next_page=None):
        return classify(self.enc, self.raw, start_pfn, level, carry or Carry(), next_page)


ALL = sv.KERNELS


@pytest.mark.parametrize("kernel", ALL)
def test_buddy_page_excluded_with_its_order(kernel):
    p = Pages(kernel)
    p.buddy(8, 3)
    got = p.run(16)
    assert (got[8:16] == C.FREE).all() and (got[:8] == C.KEEP).all() and got[16] == C.KEEP
    assert (p.run(31 & ~16)[8:16] == C.KEEP).all()


@pytest.mark.parametrize("kernel", ALL)
def test_buddy_order_beyond_free_area_is_not_trusted(kernel):
    p = Pages(kernel)
    p.buddy(0, 11)  # LENGTH(zone.free_area) = 11: orders 0..10
    assert (p.run(31) == C.KEEP).all()


@pytest.mark.parametrize("kernel", ["6.1", "6.3", "6.6"])
def test_an_untrusted_buddy_that_heads_a_hugetlb_page_is_user_data(kernel):
    """Not free (its order is beyond free_area), so judged as what else it is: the head of
    a hugetlb page (page[1] says so), which is user data before it is hwpoison."""
    p = Pages(kernel)
    p.compound(8, 2, huge=True)
    p.buddy(8, 11)
    p.flag(8, "hwpoison")
    got = p.run(31)
    assert (got[8:12] == C.USER).all() and (got[:8] == C.KEEP).all() and got[12] == C.KEEP


@pytest.mark.parametrize("kernel", ["6.1", "6.3", "6.6", "6.9"])
def test_slab_flag_wins_over_a_buddy_looking_mapcount(kernel):
    p = Pages(kernel)
    p.buddy(4, 2)
    p.flag(4, "slab")
    assert (p.run(31) == C.KEEP).all()


@pytest.mark.parametrize("kernel", ["6.10", "6.12", "7.1"])
def test_slab_type_head_and_tails_are_kept(kernel):
    p = Pages(kernel)
    p.compound(8, 3)
    p.u32[8, 12] = p.fam.slab_type
    p.u64[8, 3] = 7  # slab.slabs overlays mapping: odd, but slab is never anon
    assert (p.run(31) == C.KEEP).all()


@pytest.mark.parametrize("kernel", ALL)
def test_tails_follow_their_head(kernel):
    p = Pages(kernel)
    p.compound(16, 4)
    p.flag(16, "lru", "swapbacked")
    p.u64[16, 3] = 0xFFFF888001234561  # anon_vma | PAGE_MAPPING_ANON
    got = p.run(8)
    assert (got[16:32] == C.USER).all() and (got[:16] == C.KEEP).all() and got[32] == C.KEEP
    # the same tails without an excluded head are kept, never judged alone
    p.u64[16, 3] = 0
    p.u64[16, 0] = 0
    p.flag(16, "head")
    p.u64[17:32, 3] = 0xFFFF888001234561
    assert (p.run(31)[16:32] == C.KEEP).all()


@pytest.mark.parametrize("kernel", ["7.1", "7.2"])
def test_tails_holding_a_head_mask_follow_their_head(kernel):
    """With CONFIG_HUGETLB_PAGE_OPTIMIZE_VMEMMAP and a power-of-2 struct page (Debian's 7.2
    and 7.3 builds) a tail's compound_info is the mask that turns its address into its
    head's, | 1, not the head's address (include/linux/page-flags.h,
    compound_info_has_mask()); bit 0 is all the scan reads.  Real 7.x slab tails also look
    anonymous (page[1]'s _entire_mapcount, -1, where page.mapping is)."""

    def masked(p, head, order):
        p.compound(head, order)
        mask = ~((64 << order) - 1) & (1 << 64) - 1  # 64-byte struct pages
        p.u64[head + 1 : head + (1 << order), 1] = mask | 1

    p = Pages(kernel)
    for head, order in ((8, 1), (16, 2), (24, 3)):
        masked(p, head, order)
        p.u32[head, 12] = p.fam.slab_type
        p.u64[head + 1, 2:4] = 0x00000000FFFFFFFF
    assert (p.run(31) == C.KEEP).all()
    masked(p, 40, 3)
    p.flag(40, "lru", "swapbacked")
    p.u64[40, 3] = 0xFFFF888001234561  # anon_vma | FOLIO_MAPPING_ANON
    got = p.run(8)
    assert (got[40:48] == C.USER).all() and (got[:40] == C.KEEP).all() and got[48] == C.KEEP


@pytest.mark.parametrize("kernel", ALL)
def test_hugetlb_is_user_data_in_each_encoding(kernel):
    p = Pages(kernel, n=1024)
    p.compound(512, 9, huge=True)
    got = p.run(8)
    assert (got[512:] == C.USER).all() and (got[:512] == C.KEEP).all()
    assert (p.run(31 & ~8)[512:] == C.KEEP).all()


def test_hugetlb_dtor_not_exported_means_no_hugetlb():
    p = Pages("6.1", n=1024, hugetlb=False)
    p.compound(512, 9, huge=True)
    assert (p.run(31) == C.KEEP).all()


@pytest.mark.parametrize("kernel", ALL)
def test_cache_private_and_order_of_tests(kernel):
    p = Pages(kernel)
    p.flag(1, "lru")  # plain cache
    p.flag(2, "lru", "private")  # cache with private data
    p.flag(3, "swapcache", "swapbacked")  # swap cache, off the LRU
    p.flag(4, "swapcache")  # PG_owner_priv_1 alone: not cache
    p.flag(5, "lru", "hwpoison")  # cache wins over hwpoison when CACHE is asked for
    got2, got4, got0 = p.run(2), p.run(4), p.run(0)
    assert list(got2[1:6]) == [C.CACHE, C.KEEP, C.CACHE, C.KEEP, C.CACHE]
    assert list(got4[1:6]) == [C.CACHE, C.CACHE_PRIVATE, C.CACHE, C.KEEP, C.CACHE]
    assert list(got0[1:6]) == [C.KEEP, C.KEEP, C.KEEP, C.KEEP, C.HWPOISON]


@pytest.mark.parametrize("kernel", ALL)
def test_offline_always_excluded_when_exported(kernel):
    p = Pages(kernel)
    p.u32[7, 12] = p.fam.offline
    assert p.run(0)[7] == C.OFFLINE


def test_offline_not_detectable_on_6_1_without_hugetlb_page():
    p = Pages("6.1", hugetlb=False)
    p.u32[7, 12] = p.fam.offline
    assert p.run(31)[7] == C.KEEP


def test_fake_head_with_misaligned_order_excludes_one_page():
    p = Pages("6.12")
    p.flag(5, "head", "lru")
    p.u64[6, 0] = 2  # page[1] claims order 2, but pfn 5 is not 4-aligned
    got = p.run(2)
    assert got[5] == C.CACHE and (got[6:9] == C.KEEP).all()


def test_head_in_last_slot_of_a_512_block_is_order_zero():
    p = Pages("6.1", n=1024)
    p.flag(511, "head", "lru")
    p.raw[512, 17] = 1  # page[1] is in the next 512-entry block: makedumpfile never reads it
    got = p.run(2)
    assert got[511] == C.CACHE and got[512] == C.KEEP


def test_range_runs_on_into_the_next_chunk():
    p = Pages("6.12", n=64)
    p.buddy(32, 7)  # 128 pages from pfn 32: 32 in this chunk, 96 in the next
    carry = Carry()
    a = p.run(16, start_pfn=1024 + 0, carry=carry)
    assert (a[32:] == C.FREE).all() and carry.end_pfn == 1024 + 32 + 128
    q = Pages("6.12", n=128)
    q.buddy(10, 0)  # inside the carried range: not tested on its own
    q.flag(100, "lru")
    b = q.run(31, start_pfn=1024 + 64, carry=carry)
    assert (b[:96] == C.FREE).all() and b[100] == C.CACHE and b[96] == C.KEEP
    assert carry.end_pfn == 0


def test_head_at_chunk_end_reads_page1_from_next_page():
    nxt = np.zeros(64, np.uint8)
    nxt.view(np.uint64)[0] = 1  # page[1].flags: order 1
    p = Pages("6.9", n=8)
    p.flag(6, "head", "lru")  # order 1 at pfn 6 (aligned): pages 6 and 7
    p.u64[7, 0] = 1
    assert (p.run(2)[6:8] == C.CACHE).all()
    q = Pages("6.9", n=8)
    q.flag(7, "head", "lru")  # pfn 7: page[1] is the next chunk's first struct page
    carry = Carry()
    got = q.run(2, start_pfn=8, carry=carry, next_page=nxt)  # pfn 15: order 1 misaligned
    assert got[7] == C.CACHE and carry.end_pfn == 0
    got = q.run(2, start_pfn=8 - 7 + 6, carry=carry, next_page=nxt)  # head at pfn 14: aligned
    assert got[7] == C.CACHE and carry.end_pfn == 16 and carry.cls == C.CACHE


def test_crossing_ranges_in_corrupt_data_use_sequential_semantics():
    p = Pages("6.1", n=64)
    p.buddy(0, 2)  # covers 0..3
    p.buddy(2, 3)  # starts inside the first range: skipped, so 4..9 are judged alone
    p.flag(5, "lru")
    got = p.run(16 | 2)
    assert (got[0:4] == C.FREE).all() and got[4] == C.KEEP and got[5] == C.CACHE
    assert (got[6:10] == C.KEEP).all()


def test_a_carried_range_longer_than_a_corrupt_run_goes_on_past_it():
    p = Pages("6.1", n=64)
    p.buddy(8, 7)  # misaligned order 7: ends past the carried range (sequential path)
    p.buddy(9, 1)
    carry = Carry((1 << 20) + 100, int(C.FREE))
    got = classify(p.enc, p.raw, 1 << 20, 31, carry)
    assert (got == C.FREE).all()  # every page inside the carried range, none judged
    assert (carry.end_pfn, carry.cls) == ((1 << 20) + 100, int(C.FREE))


@pytest.mark.parametrize("kernel", ["6.16", "7.1"])
def test_unaccepted_memory_is_free_as_a_max_order_block(kernel):
    p = Pages(kernel, n=2048)
    p.u32[1024, 12] = 0xF7000000
    got = p.run(16)
    assert (got[1024:] == C.FREE).all() and (got[:1024] == C.KEEP).all()
    assert (p.run(15) == C.KEEP).all()


def test_top_byte_types_tolerate_low_bits_in_use():
    p = Pages("6.12")
    p.u32[3, 12] = p.fam.buddy | 0x1234  # an owner reusing the low 24 bits
    p.u64[3, 5] = 0
    assert p.run(16)[3] == C.FREE


def test_swapcache_without_swapbacked_export_counts_as_cache():
    enc, fam = enc_for("6.1")
    enc = enc._replace(pg_swapbacked=None)
    raw = np.zeros((4, 64), np.uint8)
    raw.view(np.uint32)[:, 12] = 0xFFFFFFFF
    raw.view(np.uint64)[1, 0] = 1 << fam.pg["swapcache"]
    assert classify(enc, raw, 0, 2, Carry())[1] == C.CACHE


def _random_pages(kernel: str, rng, n: int, corrupt: bool) -> Pages:
    """Aligned buddy blocks and compound pages of every order, cache/anon pages between."""
    p = Pages(kernel, n=n)
    pos = 0
    while pos < n:
        order = int(rng.choice([0, 0, 1, 3, 9, 10, 10, 11]))
        size = 1 << order
        pos = -(-pos // size) * size
        if pos + size > n:
            break
        kind = rng.integers(4)
        if kind == 0:
            p.buddy(pos, min(order, 10))
        elif kind == 1 and order:
            p.compound(pos, order, huge=bool(rng.integers(2)))
            p.flag(pos, "lru")
        elif kind == 2:
            p.flag(pos, "lru")
        pos += size
    if corrupt:  # buddy orders at misaligned PFNs: ranges that cross max-order blocks
        for i in rng.integers(0, n, 3):
            p.buddy(int(i), 10)
    return p


@pytest.mark.parametrize("kernel", ["6.1", "6.9", "6.12", "6.16"])
@pytest.mark.parametrize("corrupt", [False, True])
def test_sampled_scan_equals_judging_every_page(kernel, corrupt):
    """Skipping the struct pages of covered max-order blocks never changes a verdict."""
    from dumpfilter.classify import classify_dense, classify_sampled, plan_for

    rng = np.random.default_rng(7)
    sampled = 0
    for trial in range(6):
        p = _random_pages(kernel, rng, 1 << 14, corrupt)
        start = int(rng.choice([0, 1 << 20, (1 << 20) + 64 * int(rng.integers(1, 16))]))
        carry_end = start + int(rng.integers(0, 3000)) if trial % 2 else 0
        got_c, want_c = Carry(carry_end, int(C.FREE)), Carry(carry_end, int(C.FREE))
        nxt = p.raw[0].copy()
        got = classify(p.enc, p.raw, start, 31, got_c, nxt)
        want = classify_dense(plan_for(p.enc, 31), p.raw, start, want_c, nxt)
        assert np.array_equal(got, want), (trial, np.flatnonzero(got != want)[:5])
        assert (got_c.end_pfn, got_c.cls) == (want_c.end_pfn, want_c.cls)
        plan = plan_for(p.enc, 31)
        sampled += classify_sampled(plan, p.raw, start, Carry(carry_end), nxt) is not None
    assert sampled > 0 or corrupt  # the skipping path really ran on valid data


@pytest.mark.parametrize("patched", [False, True])
def test_anon_pages_are_judged_by_the_exported_mapping_anon_bit(patched):
    p = Pages("6.1", patched=patched, anon_bit=1 if patched else 0)
    p.flag([1, 2], "lru")
    p.u64[1, 3] = (
        0xFFFF888007654320 | 2
    )  # mapping; bit 1: anon only where PAGE_MAPPING_ANON says so
    p.u64[2, 3] = 0xFFFF888007654320 | 1
    got = p.run(8)
    assert got[1] == (C.USER if patched else C.KEEP)
    assert got[2] == (C.KEEP if patched else C.USER)


@pytest.mark.parametrize("patched", [False, True])
def test_exported_page_type_base_uses_the_kernels_mask_test(patched):
    p = Pages("6.1", patched=patched)
    p.buddy(3, 0)
    p.u32[3, 12] = p.fam.buddy & ~0x8000  # 6.1 PageBuddy: (type & (BASE | PG_buddy)) == BASE
    assert p.run(16)[3] == (C.FREE if patched else C.KEEP)


@pytest.mark.parametrize("anon_bit", [0, 1])
def test_patched_dump_classifies_every_pfn_as_placed(synth_factory, anon_bit):
    from dumpfilter import scan, source

    synth = synth_factory(kernel="6.1", patched=True, anon_bit=anon_bit)
    for level in (8, 31):
        with source.open_source(synth.path) as src:
            got = np.concatenate([a for _, a in scan.userspace_scan(src, level).windows(None)])
        assert (got == synth.expected_classes(level)).all()


def _noisy_pages(kernel: str, rng, n: int, **kw) -> Pages:
    """Valid blocks and compound pages, then random flag bits, page types (exact values,
    values one bit off, mask-test edge values), mapping bits, tails, orders and page[1]s."""
    p = _random_pages(kernel, rng, n, corrupt=True) if not kw else Pages(kernel, n=n, **kw)
    m = rng.random(n) < rng.choice([0.02, 0.3])
    p.u64[m, 0] ^= rng.integers(0, 1 << 40, m.sum(), dtype=np.uint64)
    values = [p.fam.buddy, 0xFFFFFFFF, 0, 7, 0xF0000000, 0xF0000080, 0xE0000000]
    values += [v for v in (p.fam.offline, p.fam.hugetlb_type, p.fam.slab_type) if v]
    values += [getattr(p.fam, "unaccepted", None) or 0]
    m = rng.random(n) < 0.15
    flip = rng.choice(np.array([0, 0, 1, 0x80, 0x100, 1 << 31], np.uint32), m.sum())
    p.u32[m, 12] = rng.choice(np.array(values, np.uint64), m.sum()).astype(np.uint32) ^ flip
    for col, frac, hi in ((3, 0.1, 1 << 63), (5, 0.08, 14)):
        m = rng.random(n) < frac
        p.u64[m, col] = rng.integers(0, hi, m.sum(), dtype=np.uint64)
    m = rng.random(n) < 0.03
    p.u64[m, 1] |= np.uint64(1)
    m = rng.random(n) < 0.03
    p.raw[m, 16:18] = rng.integers(0, 256, (m.sum(), 2), dtype=np.uint8)
    return p


@pytest.mark.parametrize("kernel", ALL)
@pytest.mark.parametrize("patched", [False, True])
def test_every_page_is_judged_as_makedumpfiles_loop_would(kernel, patched):
    """The vectorised scan (hashed keys, sampling, painting) against the one-page-at-a-time
    loop, on valid and corrupt struct pages, with and without carried ranges."""
    rng = np.random.default_rng([ALL.index(kernel), int(patched)])  # fixed: a failure reproduces
    for trial in range(4):
        p = _noisy_pages(kernel, rng, 3000 + 2048 * trial, **({"patched": True} if patched else {}))
        start = int(
            rng.choice([0, 1 << 20, (1 << 20) + 511, (1 << 20) + 64 * int(rng.integers(16))])
        )
        nxt = p.raw[int(rng.integers(len(p.raw)))].copy() if trial % 2 else None
        carry_end = start + int(rng.integers(0, 1500)) if trial >= 2 else 0
        for level in (31, 8, 1):
            got_c = Carry(carry_end, int(C.FREE))
            got = classify(p.enc, p.raw, start, level, got_c, nxt)
            want, end, end_cls = reference(p.enc, level, p.raw, start, carry_end, int(C.FREE), nxt)
            bad = np.flatnonzero(got != want)
            assert not len(bad), (trial, level, bad[:5], got[bad[:5]], want[bad[:5]])
            assert (got_c.end_pfn, got_c.cls) == (end, end_cls) or got_c.end_pfn == end == 0


@pytest.mark.parametrize("kernel", ["6.1", "6.12"])
def test_judging_heads_and_buddies_in_small_groups_changes_nothing(kernel, monkeypatch):
    """Groups of one STEP chunk each: ranges carried from one group into the next."""
    import dumpfilter.classify.dense as cl

    monkeypatch.setattr(cl, "STEP", cl.PGMM_CACHED)
    monkeypatch.setattr(cl, "JUDGE_ROWS", 1)
    rng = np.random.default_rng(11)
    for trial in range(4):
        p = _noisy_pages(kernel, rng, 5000 + 1024 * trial)
        start = (1 << 20) + 64 * trial
        carry_end = start + 700 if trial % 2 else 0
        got_c = Carry(carry_end, int(C.FREE))
        got = classify(p.enc, p.raw, start, 31, got_c, None)
        want, end, end_cls = reference(p.enc, 31, p.raw, start, carry_end, int(C.FREE), None)
        bad = np.flatnonzero(got != want)
        assert not len(bad), (trial, bad[:5], got[bad[:5]], want[bad[:5]])
        assert (got_c.end_pfn, got_c.cls) == (end, end_cls) or got_c.end_pfn == end == 0


@pytest.mark.parametrize("mask", [0xFFFFF << 32, (1 << 64) - 1])
def test_a_head_mask_of_many_bits_is_one_error_line(mask):
    """A corrupt NUMBER(PG_head_mask) cannot make the plan enumerate 2**64 words."""
    from dumpfilter.errors import DumpError

    text = "\n".join(
        f"NUMBER(PG_head_mask)={mask}" if ln.startswith("NUMBER(PG_head_mask)") else ln
        for ln in sv.vmcoreinfo_text("6.1").splitlines()
    )
    enc = detect(VmcoreInfo.parse(text))
    with pytest.raises(DumpError, match="VMCOREINFO (page flags use|PG_. numbers leave)"):
        classify(enc, np.zeros((8, 64), np.uint8), 0, 31, Carry())


@pytest.mark.parametrize("size", [68, 72, 80])
def test_struct_page_sizes_other_than_64_give_the_same_verdicts(size):
    """Debug configurations grow struct page; sizes that are not a multiple of 8 take the
    byte-slice reads instead of typed views.  Same pages, padded rows: same classes."""
    from dumpfilter.classify import classify_sampled, plan_for

    rng = np.random.default_rng(size)
    for p in (_noisy_pages("6.1", rng, 6000), _random_pages("6.1", rng, 1 << 14, False)):
        padded = np.zeros((len(p.raw), size), np.uint8)
        padded[:, :64] = p.raw
        for level in (31, 8):
            want = classify(p.enc, p.raw, 1 << 20, level, Carry(), None)
            got = classify(p.enc, padded, 1 << 20, level, Carry(), None)
            assert np.array_equal(got, want), level
    # the last pages (valid data) went through the sampled scan's in-place block reads
    assert classify_sampled(plan_for(p.enc, 31), padded, 1 << 20, Carry(), None) is not None
