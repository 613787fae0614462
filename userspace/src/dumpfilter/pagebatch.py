"""Whole batches of pages: the zero test and the per-page codecs of the kdump writers.

A batch is a ``(m, page_size)`` uint8 array, usually pages copied from the dump or a view of
its mapping.  Every function answers per page exactly what that page would get alone: a
kdump-compressed file holds each page compressed on its own (zlib level 1 zlib-wrapped,
lzo1x_1, raw snappy, zstd level 1 one frame per page), so batching changes the number of
Python calls, never the bytes.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Sequence

import numpy as np

from .errors import DumpError

# Pages from which zstd's batch entry point is used: its own setup costs about as much as
# compressing a few dozen pages, and one call releases the GIL for the whole batch, so a
# compression thread does not contend with the writer's thread between pages.
ZSTD_BATCH_MIN = 256

PageCompressor = Callable[[np.ndarray, Sequence[int]], list]


def zero_pages(pages: np.ndarray) -> np.ndarray:
    """Boolean per row of *pages*: every byte of that page is zero.

    The page's 8-byte words are ORed together in one vectorised reduction over the whole
    batch: the same answer as testing the bytes, with an eighth of the elements and no
    boolean temporaries.  Rows whose bytes are not contiguous, or a row length that is not a
    multiple of 8, fall back to the byte test.
    """
    m = len(pages)
    if m == 0:
        return np.zeros(0, dtype=bool)
    rows = pages.reshape(m, -1)
    if rows.shape[1] % 8 == 0 and rows.strides[1] == 1:
        return np.bitwise_or.reduce(rows.view(np.uint64), axis=1) == 0
    return ~rows.any(axis=1)  # type: ignore[return-value]


def page_compressor(codec: str) -> PageCompressor:
    """``f(pages, rows)``: the compressed form of ``pages[i]`` for each i in *rows*, each page
    on its own, as bytes.  Make one per thread: zstd's compressor keeps state."""
    if codec == "zstd":
        import zstandard

        zc = zstandard.ZstdCompressor(level=1)
        one = zc.compress

        def zstd_pages(pages: np.ndarray, rows: Sequence[int]) -> list:
            if len(rows) < ZSTD_BATCH_MIN:
                return [one(pages[i].data) for i in rows]
            return _zstd_batch(zc, zstandard, pages, rows)

        return zstd_pages
    if codec == "lzo":
        import lzo

        lc = lzo.compress
        # python-lzo takes bytes only; header=False: the bare lzo1x_1 stream (no length prefix)
        return lambda pages, rows: [lc(pages[i].tobytes(), 1, False) for i in rows]
    if codec == "zlib":
        zc1 = zlib.compress
        return lambda pages, rows: [zc1(pages[i].data, 1) for i in rows]
    if codec == "snappy":
        import snappy

        sc = snappy.compress
        return lambda pages, rows: [sc(pages[i].data) for i in rows]
    raise DumpError(f"unknown compression {codec!r}")


def _zstd_batch(zc, zstandard, pages: np.ndarray, rows: Sequence[int]) -> list:
    """``zc.compress`` of each page ``pages[i]``, i in *rows*, in one C call: the batch entry
    point makes the same frames (one per page, content size in the header)."""
    buf = pages if pages.flags.c_contiguous else np.ascontiguousarray(pages)
    ps = buf.shape[1]
    segs = np.empty((len(rows), 2), np.uint64)
    segs[:, 0] = rows
    segs[:, 0] *= np.uint64(ps)
    segs[:, 1] = ps
    out = zc.multi_compress_to_buffer(zstandard.BufferWithSegments(buf, segs.tobytes()))
    return [bytes(out[i]) for i in range(len(rows))]


def compression_threads(num_threads: int, codec: str | None) -> int:
    """Compression threads for ``--num-threads N``: N as asked; by default (0) one per CPU
    this process may run on when there are two or more and the pages are compressed.

    The codecs release the GIL while they compress, so with a free CPU compression overlaps
    the reading and writing of the main thread; on one CPU (a capture kernel booted with
    ``nr_cpus=1``) a thread would only add switches, and uncompressed pages need no thread.
    """
    if num_threads > 0:
        return num_threads
    if codec is None:
        return 0
    cpus = len(os.sched_getaffinity(0))
    return cpus if cpus >= 2 else 0
