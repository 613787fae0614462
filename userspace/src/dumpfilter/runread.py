"""Reading the kept pages of an ELF input by runs of consecutive PFNs, in the encoder's threads.

Gathering scattered pages from the mapping costs a page fault per touched page, more than the
copy itself; a read per run costs one syscall per run and no fault, which is cheaper for the
fragmented kept sets that ``-d 31`` leaves (runs of a few pages).  Only for an ELF input: its
PT_LOADs map PFNs to file offsets linearly (ELF gABI ``p_offset``/``p_paddr``).  A batch's
runs are planned (and checked against the file) in the writing thread; the thread that
encodes the batch reads them, so reading overlaps writing, in the same C call that tests and
compresses the pages (_pagecodec.c ``encode_runs``).  From ``/proc/vmcore`` the C call
maps the file instead and tests and compresses the pages where they are mapped: the kernel
serves a read() of it page by page, each through a mapping made for that page alone
(_pagecodec.c, ``struct reader``).
"""

from __future__ import annotations

import os

import numpy as np

from .errors import DumpError
from .native import pagecodec
from .source import is_proc_vmcore


class RunPlan:
    """One batch's reads: ``sizes[i]`` bytes at file offset ``offsets[i]``, back to back."""

    __slots__ = ("offsets", "reader", "sizes")

    def __init__(self, reader: RunReader, offsets: np.ndarray, sizes: np.ndarray):
        self.reader = reader
        self.offsets = offsets
        self.sizes = sizes

    def encode(
        self, codec: str, find_zero: bool, bufs: tuple[bytearray, bytearray]
    ) -> tuple[bytes, np.ndarray]:
        """Read the batch and store its pages compressed with *codec* (``encode_runs``): the
        stored pages back to back and the int64 size of each, 0 for a zero page (with
        *find_zero*), the page size for one stored raw.  *codec* "raw" stores the pages as
        they are, "none" stores nothing (only the sizes say which pages are zero).  *bufs*:
        the calling thread's own read and output buffers."""
        r = self.reader
        data, sizes, stop, err = pagecodec().encode_runs(
            codec, r.fd, r.mapped, self.offsets, self.sizes, r.page_size, find_zero, *bufs
        )
        self._check(stop, err)
        return data, np.frombuffer(sizes, dtype=np.int64)

    def read(self) -> np.ndarray:
        """The batch's pages as a new (pages, page_size) array: read as ``encode`` reads
        them, stored as they are."""
        data, _sizes = self.encode("raw", False, (bytearray(), bytearray()))
        return np.frombuffer(data, np.uint8).reshape(-1, self.reader.page_size)

    def _check(self, stop: int, err: int) -> None:
        if stop >= 0:
            # the file shrank after it was planned against, or the disk failed, mid-batch
            why = os.strerror(err) if err else "short read"
            raise DumpError(f"{self.reader.path}: {why} at offset {int(self.offsets[stop]):#x}")


class RunReader:
    """Plans the reads of batches of kept pages from an ELF input's file.

    ``plan`` returns None whenever it cannot serve a batch (not an ELF file, a run outside
    the file's data), and the caller then reads through the source, which says what is wrong.
    The descriptor stays open while the reader does: the encoder's threads read through it.
    ``mapped``: read through mappings of the file; by default only from ``/proc/vmcore``.
    """

    def __init__(self, src, *, mapped: bool | None = None) -> None:
        self.fd = -1
        self.size = 0
        self.path = src.path
        self.mapped = is_proc_vmcore(src.path) if mapped is None else mapped
        self.page_size = ps = src.page_size
        # (first, end) PFNs whose whole page lies inside the file data, and file offset delta.
        self.loads: list[tuple[int, int, int]] = []
        if src.kind != "elf" or not self.path:
            return
        for ld in src.loads:
            paddr, filesz = int(ld.paddr), int(ld.filesz)
            a, b = -(-paddr // ps), (paddr + filesz) // ps
            if a < b:
                self.loads.append((a, b, int(ld.offset) - paddr))
        if not self.loads:
            return
        self._segments()
        try:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            self.size = os.fstat(self.fd).st_size
        except OSError:
            self.close()  # the mapping still works: read through the source

    def _segments(self) -> None:
        """The loads as disjoint PFN segments, sorted, each with the file offset delta of the
        first load in header order that holds it (overlapping ones, such as the kernel text's,
        map the same bytes), so a batch finds its loads with one search."""
        edges = sorted({e for a, b, _d in self.loads for e in (a, b)})
        seg: list[tuple[int, int, int]] = []
        for a, b in zip(edges, edges[1:], strict=False):
            d = next((d for la, lb, d in self.loads if la <= a and b <= lb), None)
            if d is None:
                continue  # between loads
            if seg and seg[-1][1] == a and seg[-1][2] == d:
                seg[-1] = (seg[-1][0], b, d)
            else:
                seg.append((a, b, d))
        self.seg_start = np.array([a for a, _b, _d in seg], np.int64)
        self.seg_end = np.array([b for _a, b, _d in seg], np.int64)
        self.seg_delta = np.array([d for _a, _b, d in seg], np.int64)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> RunReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def plan(self, pfns: np.ndarray) -> RunPlan | None:
        """The reads of pages *pfns* (increasing int64) as one batch (``plans``)."""
        return self.plans(pfns, max(len(pfns), 1))[0] if len(pfns) else None

    def plans(self, pfns: np.ndarray, span: int) -> list[RunPlan | None]:
        """The reads of pages *pfns* (increasing int64) cut into batches of *span* PFNs (the
        last one may be shorter): per batch, one read per run of consecutive PFNs inside one
        PT_LOAD, or None when one of its runs lies in no single PT_LOAD's file data or
        beyond the end of the file.

        All batches are planned in one set of numpy steps: planned one by one, a batch's
        dozen small steps cost the writing thread more than the batch's own bookkeeping.
        """
        n = len(pfns)
        nbatch = -(-n // span)
        if self.fd < 0 or not n:
            return [None] * nbatch
        ps = self.page_size
        # Each PFN's segment; runs end where PFNs skip, where the segment changes (a run
        # crossing into the next load is read as two, each from its own load) and where a
        # batch ends.
        seg = np.searchsorted(self.seg_start, pfns, side="right") - 1
        cut = np.ones(n, dtype=bool)
        cut[1:] = (np.diff(pfns) != 1) | (np.diff(seg) != 0)
        cut[::span] = True
        starts = np.flatnonzero(cut)
        count = np.diff(starts, append=n)
        first, seg = pfns[starts], seg[starts]
        offsets = first * ps + self.seg_delta[seg]
        sizes = count * ps
        # a run outside every segment (before the first, or past its segment's end), or
        # beyond the end of the file
        bad = (seg < 0) | (first + count > self.seg_end[seg]) | (offsets + sizes > self.size)
        nbad = np.concatenate(([0], np.cumsum(bad))).tolist()
        bounds = np.searchsorted(starts, np.arange(nbatch + 1) * span).tolist()
        return [
            None if nbad[hi] > nbad[lo] else RunPlan(self, offsets[lo:hi], sizes[lo:hi])
            for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
        ]
