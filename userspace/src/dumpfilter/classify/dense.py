"""The dense scan: every struct page of a run judged, STEP pages per numpy pass.

A page's verdict byte already holds its class when it excludes only itself (most pages);
only the rows that may exclude more (compound heads, buddy blocks, unaccepted memory) are
looked at one by one: their length from page[1] or ``page.private``, then painted.
"""

from __future__ import annotations

from functools import partial
from typing import cast

import numpy as np

from .arrays import all_, any_, joined, ones
from .paint import Carry, paint
from .plan import _U64, HASH_BITS, PGMM_CACHED, STEP, V_CLS, V_KIND_SHIFT, V_P1, Plan
from .rules import KEEP, L_BUDDY, L_COMPOUND, L_UNACC, T_HUGETLB, T_MASK, T_SHIFT
from .structpage import Run, field

JUDGE_ROWS = 8192  # heads and buddies judged at once: bounds the temporaries of a dense run


class RangeCrossesBlock(Exception):
    """A range crosses a sampling-block edge (corrupt data): use the dense scan."""


def classify_dense(
    plan: Plan,
    run: Run | np.ndarray,
    start_pfn: int,
    carry: Carry,
    next_page: np.ndarray | None,
    bound: int = 0,
) -> np.ndarray:
    """Every page of ``run`` judged (``bound``: see judge).

    Verdicts are made STEP pages at a time (the strided reads stay in the CPU cache); the
    few rows that may exclude more than themselves, and their hashed words, are collected
    and judged a group of STEP chunks at a time, once a group has JUDGE_ROWS of them (the
    carry takes a range on from one group to the next).  Judging makes temporaries per
    row: bounding the group bounds the heap's high-water mark, which every scan process
    faults in.
    """
    if not isinstance(run, Run):
        run = Run(run)
    n = len(run)
    verdicts = np.empty(n, np.uint8)
    long_row_parts: list[np.ndarray] = []
    words: list[np.ndarray] = []
    g0 = k = 0  # the group being collected: its first row, its rows to judge one by one
    for a in range(0, n, STEP):
        b = min(a + STEP, n)
        word, verdict = page_verdicts(plan, run.sub(a, b))
        verdicts[a:b] = verdict
        long_rows = (verdict >= V_P1).nonzero()[0]
        if len(long_rows):
            words.append(word[long_rows])
            long_row_parts.append(long_rows + (a - g0))
            k += len(long_rows)
        if b == n or k >= JUDGE_ROWS:
            long_rows, long_words = joined(long_row_parts, np.intp), joined(words, np.uint64)
            long_row_parts.clear()
            words.clear()
            nxt = next_page if b == n else run.after(b)
            res = judge(
                plan,
                run.sub(g0, b),
                verdicts[g0:b],
                long_rows,
                long_words,
                start_pfn + g0,
                carry,
                nxt,
                bound,
            )
            verdicts[g0:b] = res
            g0, k = b, 0
    return verdicts


def page_verdicts(plan: Plan, run: Run) -> tuple[np.ndarray, np.ndarray]:
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


def judge(
    plan: Plan,
    run: Run,
    verdict: np.ndarray,
    long_rows: np.ndarray,
    long_words: np.ndarray,
    start_pfn: int,
    carry: Carry,
    next_page: np.ndarray | None,
    bound: int = 0,
) -> np.ndarray:
    """Classes of a run from its verdicts; ``long_rows`` are the rows whose verdict has V_P1 or
    V_LONG, ``long_words`` their hashed words.  ``bound`` > 0: raise RangeCrossesBlock if any range
    crosses a multiple of it.

    A page's verdict already holds its class when it excludes only itself (most pages);
    only the rows that may exclude more (compound heads, buddy blocks, unaccepted memory)
    are looked at one by one, and the ranges longer than a page are painted over the rest.
    """
    long_verdicts = verdict[long_rows]
    out = np.bitwise_and(verdict, V_CLS, out=verdict)
    starts, lengths, classes = long_rows[:0], long_rows[:0], out[:0]
    if len(long_rows):
        lengths, classes = long_ranges(
            plan, run, long_words, long_rows, long_verdicts, start_pfn, next_page
        )
        out[long_rows] = classes
        keep = (lengths > 1) & (classes != KEEP)
        starts, lengths, classes = long_rows[keep], lengths[keep], classes[keep]
    if not len(starts) and carry.end_pfn <= start_pfn:
        carry.end_pfn = 0
        return out
    if bound and len(starts):
        first = start_pfn + starts
        if any_(first // bound != (first + lengths - 1) // bound):
            raise RangeCrossesBlock
    return paint(out, starts, lengths, classes, start_pfn, carry)


def long_ranges(
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
    head_at = (v & np.uint8(V_P1)).nonzero()[0]  # compound heads: page[1] matters
    if len(head_at):
        head_rows = rows[head_at]
        head_pfns = start_pfn + head_rows if pfns is None else pfns[head_rows]
        ok = head_pfns % PGMM_CACHED != PGMM_CACHED - 1
        if page1 is None and next_page is None:
            ok &= head_rows != n - 1
        if not all_(ok):
            head_at, head_rows, head_pfns = head_at[ok], head_rows[ok], head_pfns[ok]
    length = ones(len(rows))
    if len(head_at):
        p1 = (
            partial(page1, head_rows)
            if page1 is not None
            else page_after(run, head_rows, next_page)
        )
        o, huge = compound_pages(plan, words[head_at], p1, head_pfns)
        heads = head_at, o, huge
        if any_(huge):
            huge_heads = head_at[huge]
            k = plan.key_lut[words[huge_heads]]
            cls[huge_heads] = plan.cls_huge[k]
            kind[huge_heads] = plan.len_huge[k]
        length[head_at] = np.where(kind[head_at] == L_COMPOUND, np.int64(1) << o, 1)
    if plan.unaccepted:
        length[kind == L_UNACC] = 1 << (enc.nr_orders - 1)
    bud = (kind == L_BUDDY).nonzero()[0]
    if len(bud):
        private = run.member(rows[bud], enc.off_private, "<u8")
        ok = private < np.uint64(enc.nr_orders)
        if all_(ok):
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
                if any_(hb):
                    cls[bi] = np.where(hb, plan.cls_huge[k], cls[bi])
                    comp = np.where(hb, plan.len_huge[k], plan.len[k]) == L_COMPOUND
                length[bi] = np.where(comp, np.int64(1) << full[bi], 1)
    return length, cls


def page_after(run: Run, rows: np.ndarray, next_page: np.ndarray | None):
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


def compound_pages(
    plan: Plan, words: np.ndarray, p1, head_pfns: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Compound order and hugetlb-ness of heads (hashed words ``words``, PFNs ``head_pfns``);
    ``p1(off, dtype)`` reads a member of each head's page[1].

    An order is trusted only when < 63 and the head PFN is aligned to it.
    """
    enc = plan.enc
    if enc.order_kind == "flags1":
        o = p1(enc.off_flags, "u1").astype(np.int64)
    else:
        o = p1(cast(int, enc.order_off), "u1").astype(np.int64)
    if enc.hugetlb_kind == "dtor":
        huge = p1(cast(int, enc.dtor_off), "u1") == enc.hugetlb_dtor
    elif enc.hugetlb_kind == "flags1_bit":
        huge = (p1(enc.off_flags, "<u8") >> np.uint64(cast(int, enc.pg_hugetlb))) & 1 != 0
    elif enc.hugetlb_kind == "head_type":
        huge = (plan.key_lut[words] >> T_SHIFT) == T_HUGETLB
    else:
        huge = np.zeros(len(head_pfns), bool)
    bad = (o >= 63) | ((head_pfns & ((np.int64(1) << np.minimum(o, 62)) - 1)) != 0)
    return np.where(bad, 0, o), huge
