"""Whole batches of pages: the zero test and the per-page codecs of the kdump writers.

A batch is a ``(m, page_size)`` uint8 array, usually pages copied from the dump or a view of
its mapping.  Every function answers per page exactly what that page would get alone: a
kdump-compressed file holds each page compressed on its own (zlib level 1 zlib-wrapped,
lzo1x_1, raw snappy, zstd level 1 one frame per page), so batching changes the number of
Python calls, never the bytes.
"""

from __future__ import annotations

import os

import numpy as np

from .errors import DumpError
from .kdumpformat import CODEC_FLAGS
from .native import pagecodec


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


def compress_pages(
    codec: str, pages: np.ndarray, rows: np.ndarray, scratch: bytearray | None = None
) -> tuple[bytes, np.ndarray]:
    """``pages[i]`` for each i in *rows*, each compressed on its own with *codec* (or copied
    as it is with "raw"), in one C call that releases the GIL for the whole batch
    (_pagecodec.c says why).

    Returns the stored pages back to back and the int64 size of each; a size equal to the
    page size means the page is stored raw (compressing did not make it smaller).
    *scratch*: the thread's own work buffer, kept from batch to batch (a new one per call
    would leave the allocator a hole of a batch's size each time).
    """
    if codec != "raw" and codec not in CODEC_FLAGS:
        raise DumpError(f"unknown compression {codec!r}")
    buf = pages if pages.flags.c_contiguous else np.ascontiguousarray(pages)
    idx = np.ascontiguousarray(rows, dtype=np.int64)
    work = bytearray() if scratch is None else scratch
    data, sizes = pagecodec().compress_pages(codec, buf, idx, buf.shape[1], work)
    return data, np.frombuffer(sizes, dtype=np.int64)


def compression_threads(
    num_threads: int, codec: str | None, *, zero_test_only: bool = False
) -> int:
    """Encoder threads for ``--num-threads N``: N as asked; by default (0), when this
    process may run on two CPUs or more, one per CPU for compressed pages and for pages that
    are only zero-tested, and one for uncompressed ones.

    The codecs release the GIL while they compress, so with a free CPU compression overlaps
    the reading and writing of the main thread.  Uncompressed pages are only read and
    zero-tested, which one thread does faster than the main thread writes them, but doing it
    there overlaps the reads with the writes.  Pages only zero-tested (``--dry-run``, the ELF
    writer's zero pass) go nowhere, so nothing waits for a writer: their reads and tests
    run on every CPU.  On one CPU (a capture kernel booted with ``nr_cpus=1``) a thread
    would only add switches.
    """
    if num_threads > 0:
        return num_threads
    cpus = len(os.sched_getaffinity(0))
    if cpus < 2:
        return 0
    return cpus if codec is not None or zero_test_only else 1
