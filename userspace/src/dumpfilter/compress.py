"""The ordered parallel batch pool of the kdump writers (the per-batch codecs: pagebatch).

kdump-compressed files compress each page on its own (docs/kdump-compressed.md §6): zlib
level 1 *zlib-wrapped* (crash decompresses with ``uncompress()``), lzo1x_1, raw snappy, zstd
level 1.  A page whose compressed form is not smaller than the page is stored raw, and the
descriptor flag then says 0.  Zero pages (dump level bit 1) are found here too, from the data,
because the scan never produces ZERO (ARCHITECTURE.md).

Work is cut into batches of kept pages in PFN order; batches run in worker threads and come back
in submission order, so the output stays in PFN order.  A batch of an ELF input is read,
zero-tested and compressed in one C call without the GIL (runread); a batch of pages already in
memory is compressed in one such call, and numpy releases the GIL in its zero test, which also
touches the mmap'ed pages so page-cache faults overlap.
"""

from __future__ import annotations

import queue
import threading
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from .errors import DumpError
from .kdumpformat import CODEC_FLAGS
from .pagebatch import compress_pages
from .pagebatch import zero_pages as zero_rows
from .runread import RunPlan


def decompress(name: str, data: bytes, page_size: int) -> bytes:
    """Inverse of the page compressor (used by tests and by re-reading our own output)."""
    if name == "zlib":
        return zlib.decompress(data)
    if name == "lzo":
        import lzo

        return lzo.decompress(data, False, page_size)
    if name == "snappy":
        import snappy

        return snappy.decompress(data)
    if name == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompress(data, max_output_size=page_size)
    raise DumpError(f"unknown compression {name!r}")


# Batches handed to the pool per thread before the oldest result is waited for.  A batch that
# reads itself (``Batch.runs``) holds no pages while it waits, and a thread's batch takes about
# as long as the writer's round for two batches: with one per thread the threads idled a third
# of a run (sampled at 64 GiB), with two they keep busy.
LOOK_AHEAD = 2


@dataclass
class Batch:
    """Kept pages to encode: ``pages[rows[i]]`` (``pages[i]`` without rows) is PFN ``pfns[i]``.

    ``rows`` lets a mostly-kept span stay a view of the mapping instead of a gathered copy.
    ``runs`` instead of ``pages``: the batch is read by the thread that encodes it, in the
    same C call that tests and compresses its pages, so with a pool the reading of one batch
    overlaps the writing and encoding of others.
    """

    pfns: np.ndarray  # int64 PFNs, increasing
    pages: np.ndarray | None  # (m, page_size) uint8: a view of the mapping or a copy; or None
    find_zero: bool  # dump level bit 1: zero pages get the shared descriptor
    tag: object = None  # caller's bookkeeping, returned untouched
    rows: np.ndarray | None = None  # which rows of ``pages`` are the kept pages
    runs: RunPlan | None = None  # where to read ``pages`` when they are None


@dataclass
class Encoded:
    """Result of one batch, in the batch's page order."""

    batch: Batch
    zero: np.ndarray  # bool per page: all-zero (only when find_zero)
    sizes: np.ndarray  # int64 stored bytes per page (0 for zero pages)
    flags: np.ndarray  # uint32 descriptor flag per page (0 = raw or zero)
    chunks: list  # buffers to write, in order, for the non-zero pages: new, not views of
    # the batch, so a result holds only what it stores; none when only zero-testing
    stored: int  # bytes the pages take in the output: sizes.sum(), what chunks hold


class Encoder:
    """Encodes batches (zero test + optional compression) on ``threads`` workers, in order.

    ``threads`` = 0 encodes in the calling thread; N >= 1 runs N workers while the calling
    thread reads and writes, as makedumpfile's ``--num-threads N`` (N producers, one writer).
    LOOK_AHEAD batches per worker are in flight: a result keeps only its stored pages, and
    a batch that reads itself holds no pages until a thread takes it, which then reads it
    64 pages at a time (compressed) or straight into its stored form (raw, _pagecodec.c),
    so memory stays at about two batches (2 MiB each at most) per worker.
    """

    def __init__(
        self, codec: str | None, page_size: int, threads: int = 0, *, zero_test_only: bool = False
    ):
        self.codec = codec
        # results say which pages are zero and how many bytes the others take, and store
        # nothing: the ELF writer's zero pass, an uncompressed --dry-run
        self.zero_test_only = zero_test_only
        self.page_size = page_size
        self.flag = CODEC_FLAGS[codec] if codec else 0
        self.threads = max(threads, 0)
        self._local = threading.local()  # each thread's buffers (_buffers)
        self._pool = _Pool(self.threads, self.encode) if self.threads >= 1 else None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> Encoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def encode(self, batch: Batch) -> Encoded:
        """Zero test, then store each non-zero page: compressed (raw when compression does
        not shrink it), raw without a codec, or not at all when only zero-testing."""
        if batch.runs is not None:
            codec = "none" if self.zero_test_only else self.codec or "raw"
            return self._encode_runs(batch, batch.runs, codec)
        if batch.pages is None:
            raise TypeError("a batch needs its pages or the runs to read them from")
        n = len(batch.pfns)
        ps = self.page_size
        rows = batch.rows if batch.rows is not None else np.arange(n)
        if batch.find_zero:
            zero = zero_rows(batch.pages)
            zero = zero if batch.rows is None else zero[rows]
        else:
            zero = np.zeros(n, dtype=bool)
        sizes = np.where(zero, 0, ps).astype(np.int64)
        flags = np.zeros(n, dtype=np.uint32)
        done = Batch(batch.pfns, None, batch.find_zero, batch.tag)
        if self.zero_test_only:
            return Encoded(done, zero, sizes, flags, [], int(sizes.sum()))
        todo = ~zero
        codec = self.codec or "raw"
        data, stored = compress_pages(codec, batch.pages, rows[todo], self._buffers()[1])
        sizes[todo] = stored
        flags[todo] = np.where(stored < ps, self.flag, 0)
        # One new buffer of the stored pages (raw ones copied): no view of the batch, which
        # would keep its pages (up to 2 MiB, usually a gathered copy) alive while the result
        # waits in the look-ahead and its chunks in the writer's buffer, many batches in all.
        return Encoded(done, zero, sizes, flags, [data] if data else [], len(data))

    def _encode_runs(self, batch: Batch, runs: RunPlan, codec: str) -> Encoded:
        """A batch read, zero-tested and compressed in one C call (runread, _pagecodec.c);
        with *codec* "none" only zero-tested."""
        ps = self.page_size
        data, sizes = runs.encode(codec, batch.find_zero, self._buffers())
        zero = sizes == 0  # a stored page is never empty: 0 is only a zero page's size
        flags = np.where(zero | (sizes == ps), 0, self.flag).astype(np.uint32)
        done = Batch(batch.pfns, None, batch.find_zero, batch.tag)
        return Encoded(done, zero, sizes, flags, [data] if data else [], int(sizes.sum()))

    def _buffers(self) -> tuple[bytearray, bytearray]:
        """This thread's read and output buffers, kept from batch to batch (new ones each
        time would leave the allocator a hole of a batch's size each time)."""
        bufs = getattr(self._local, "bufs", None)
        if bufs is None:
            bufs = self._local.bufs = (bytearray(), bytearray())
        return bufs

    def map(self, batches: Iterable[Batch]) -> Iterator[Encoded]:
        """Encode *batches*, yielding results in the same order, with bounded look-ahead."""
        if self._pool is None:
            for b in batches:
                yield self.encode(b)
            return
        pending: deque[_Job] = deque()
        depth = LOOK_AHEAD * self.threads
        try:
            for b in batches:
                pending.append(self._pool.submit(b))
                if len(pending) >= depth:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for job in pending:
                job.cancelled = True


class _Job:
    """One batch handed to the pool; ``result`` waits for it (its lock is released once)."""

    __slots__ = ("batch", "cancelled", "done", "error", "value")

    def __init__(self, batch: Batch):
        self.batch = batch
        self.cancelled = False
        self.value: Encoded | None = None
        self.error: BaseException | None = None
        self.done = threading.Lock()
        self.done.acquire()

    def result(self) -> Encoded:
        self.done.acquire()
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


class _Pool:
    """``n`` threads running ``fn`` on submitted batches.  Not concurrent.futures: importing it
    (and the logging it pulls in) costs more start-up than the rest of a small dump's pool."""

    def __init__(self, n: int, fn: Callable[[Batch], Encoded]):
        self._fn = fn
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._work, daemon=True) for _ in range(n)]
        for t in self._threads:
            t.start()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            if not job.cancelled:
                try:
                    job.value = self._fn(job.batch)
                except BaseException as e:  # handed to the thread that waits for it
                    job.error = e
            job.batch = None  # type: ignore[assignment]
            job.done.release()

    def submit(self, batch: Batch) -> _Job:
        job = _Job(batch)
        self._jobs.put(job)
        return job

    def close(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        for t in self._threads:
            t.join()
