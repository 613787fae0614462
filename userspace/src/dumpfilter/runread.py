"""Reading the kept pages of an ELF input by runs of consecutive PFNs, in the encoder's threads.

Gathering scattered pages from the mapping costs a page fault per touched page, more than the
copy itself; a read per run costs one syscall per run and no fault, which is cheaper for the
fragmented kept sets that ``-d 31`` leaves (runs of a few pages).  Only for an ELF input: its
PT_LOADs map PFNs to file offsets linearly (ELF gABI ``p_offset``/``p_paddr``).  A batch's
runs are planned (and checked against the file) in the writing thread; the thread that
encodes the batch reads them, so reading overlaps writing, in the same C call that tests and
compresses the pages (_pagecodec.c ``encode_runs``).
"""

from __future__ import annotations

import os

import numpy as np

from .errors import DumpError
from .native import pagecodec


class RunPlan:
    """One batch's reads: ``sizes[i]`` bytes at file offset ``offsets[i]``, back to back."""

    __slots__ = ("offsets", "reader", "sizes")

    def __init__(self, reader: RunReader, offsets: np.ndarray, sizes: np.ndarray):
        self.reader = reader
        self.offsets = offsets
        self.sizes = sizes

    def encode(
        self, codec: str | None, find_zero: bool, bufs: tuple[bytearray, bytearray]
    ) -> tuple[bytes, np.ndarray]:
        """Read the batch and store its pages (``encode_runs``): the stored pages back to back
        and the int64 size of each, 0 for a zero page (with *find_zero*), the page size for
        one stored raw.  *bufs*: the calling thread's own read and output buffers."""
        r = self.reader
        data, sizes, stop, err = pagecodec().encode_runs(
            codec or "", r.fd, self.offsets, self.sizes, r.page_size, find_zero, *bufs
        )
        if stop >= 0:
            # the file shrank after it was planned against, or the disk failed, mid-batch
            why = os.strerror(err) if err else "short read"
            raise DumpError(f"{r.path}: {why} at offset {int(self.offsets[stop]):#x}")
        return data, np.frombuffer(sizes, dtype=np.int64)

    def read(self) -> np.ndarray:
        """The batch's pages as a (pages, page_size) array."""
        data, _sizes = self.encode(None, False, (bytearray(), bytearray()))
        return np.frombuffer(data, dtype=np.uint8).reshape(-1, self.reader.page_size)


class RunReader:
    """Plans the reads of batches of kept pages from an ELF input's file.

    ``plan`` returns None whenever it cannot serve a batch (not an ELF file, a run outside
    the file's data), and the caller then reads through the source, which says what is wrong.
    The descriptor stays open while the reader does: the encoder's threads read through it.
    """

    def __init__(self, src) -> None:
        self.fd = -1
        self.size = 0
        self.path = src.path
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
        try:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            self.size = os.fstat(self.fd).st_size
        except OSError:
            self.close()  # the mapping still works: read through the source

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> RunReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def plan(self, pfns: np.ndarray) -> RunPlan | None:
        """The reads of pages *pfns* (increasing int64), one per run of consecutive PFNs
        inside one PT_LOAD; None when a run lies in no single PT_LOAD's file data or beyond
        the end of the file."""
        if self.fd < 0 or not len(pfns):
            return None
        ps = self.page_size
        # Runs end where PFNs skip, and where a PT_LOAD starts: a run crossing into the next
        # load (RAM ranges that touch) is read as two, each from its own load.
        cut = np.diff(pfns) != 1
        lo, hi = int(pfns[0]), int(pfns[-1])
        for a in {a for a, _b, _d in self.loads if lo < a <= hi}:
            cut |= pfns[1:] == a
        starts = np.concatenate(([0], np.flatnonzero(cut) + 1))
        first = pfns[starts]
        count = np.diff(np.append(starts, len(pfns)))
        last = first + count
        # The first PT_LOAD in header order that holds the run (overlapping ones, such as the
        # kernel text's, map the same bytes).
        delta = np.zeros(len(first), np.int64)
        todo = np.ones(len(first), bool)
        for a, b, d in self.loads:
            hit = todo & (first >= a) & (last <= b)
            delta[hit] = d
            todo &= ~hit
        if todo.any():
            return None
        offsets = first * ps + delta
        sizes = count * ps
        if int((offsets + sizes).max()) > self.size:
            return None
        return RunPlan(self, offsets, sizes)
