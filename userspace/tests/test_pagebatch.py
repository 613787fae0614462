"""Batch zero test and batch page compression: per page, the answer a page gets on its own."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from dumpfilter import pagebatch
from dumpfilter.compress import decompress
from dumpfilter.errors import DumpError
from dumpfilter.pagebatch import compress_pages, compression_threads, zero_pages

PS = 4096
CODECS = ["zlib", "lzo", "snappy", "zstd"]


def _bytewise_zero(pages: np.ndarray) -> list[bool]:
    return [not any(bytes(memoryview(np.ascontiguousarray(p)).cast("B"))) for p in pages]


def _pages(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = np.zeros((n, PS), np.uint8)
    kind = rng.integers(0, 4, n)
    p[kind == 1] = rng.integers(0, 256, (int((kind == 1).sum()), PS), dtype=np.uint8)
    p[kind == 2, ::64] = 7  # compressible
    p[kind == 3, rng.integers(0, PS)] = 1  # one byte set
    return p


def _edge_pages() -> np.ndarray:
    """Zero pages and pages with one set bit in each place a word test could miss."""
    p = np.zeros((10, PS), np.uint8)
    p[1, 0] = 1  # first byte
    p[2, PS - 1] = 0x80  # last byte, top bit
    p[3, 7] = 1  # last byte of the first word
    p[4, 8] = 1  # first byte of the second word
    p[5, PS // 2 + 3] = 0x10  # mid-word
    p[7, :] = 0xFF
    p[8, 4095 - 8] = 1
    return p


def test_zero_pages_agrees_with_a_byte_test_on_edge_cases():
    p = _edge_pages()
    assert zero_pages(p).tolist() == _bytewise_zero(p)
    want = [True, False, False, False, False, False, True, False, False, True]
    assert zero_pages(p).tolist() == want


def test_zero_pages_of_an_empty_batch_is_empty():
    got = zero_pages(np.zeros((0, PS), np.uint8))
    assert got.dtype == bool and got.shape == (0,)


@pytest.mark.parametrize(
    "view",
    [
        lambda p: p[::2],  # every other row: rows not adjacent
        lambda p: p[1:],  # a view starting mid-array
        lambda p: p[:, ::2],  # bytes of a row not contiguous: the byte test
        lambda p: p[:, 1:13],  # a 12-byte row: not a whole number of words
        lambda p: np.frombuffer(b"\0" + p.tobytes(), np.uint8, offset=1).reshape(p.shape),
    ],
    ids=["strided-rows", "offset-view", "strided-bytes", "odd-row-length", "unaligned"],
)
def test_zero_pages_agrees_with_a_byte_test_on_views(view):
    p = np.concatenate([_edge_pages(), _pages(30, seed=1)])
    v = view(p)
    assert zero_pages(v).tolist() == _bytewise_zero(v)


def _one_by_one(codec: str, pages: np.ndarray, rows) -> list[bytes]:
    """Each page compressed alone, as makedumpfile does."""
    if codec == "zlib":
        return [zlib.compress(pages[i].tobytes(), 1) for i in rows]
    if codec == "lzo":
        import lzo

        return [lzo.compress(pages[i].tobytes(), 1, False) for i in rows]
    if codec == "snappy":
        import snappy

        return [snappy.compress(pages[i].tobytes()) for i in rows]
    import zstandard

    zc = zstandard.ZstdCompressor(level=1)
    return [zc.compress(pages[i].tobytes()) for i in rows]


def _stored(codec: str, pages: np.ndarray, rows) -> list[bytes]:
    """The batch's stored pages, one bytes object each."""
    data, sizes = compress_pages(codec, pages, np.asarray(rows, dtype=np.int64))
    assert sizes.dtype == np.int64 and len(sizes) == len(rows)
    ends = np.cumsum(sizes).tolist()
    assert (ends[-1] if ends else 0) == len(data)
    return [data[e - s : e] for s, e in zip(sizes.tolist(), ends, strict=True)]


def _or_raw(compressed: list[bytes], pages: np.ndarray, rows) -> list[bytes]:
    """A page whose compressed form is not smaller than the page is stored raw."""
    return [c if len(c) < PS else pages[i].tobytes() for c, i in zip(compressed, rows, strict=True)]


# libsnappy (the library makedumpfile links) and python-snappy's implementation make different,
# equally valid streams: snappy is compared through the decompressor below.
@pytest.mark.parametrize("codec", ["zlib", "lzo", "zstd"])
@pytest.mark.parametrize("n", [1, 20, 256, 768])
def test_batch_compression_equals_per_page_compression_byte_for_byte(codec, n):
    pages = _pages(n, seed=n)
    everything = list(range(n))
    want = _or_raw(_one_by_one(codec, pages, everything), pages, everything)
    assert _stored(codec, pages, everything) == want
    some = everything[::3][::-1]  # any rows, in any order
    assert _stored(codec, pages, some) == _or_raw(_one_by_one(codec, pages, some), pages, some)


@pytest.mark.parametrize("codec", CODECS)
def test_every_stored_page_decompresses_to_its_page(codec):
    pages = _pages(300, seed=9)
    rows = list(range(0, 300, 2))
    for i, s in zip(rows, _stored(codec, pages, rows), strict=True):
        assert len(s) <= PS
        assert (s if len(s) == PS else decompress(codec, s, PS)) == pages[i].tobytes()


@pytest.mark.parametrize("codec", CODECS)
def test_incompressible_pages_are_stored_raw(codec):
    pages = np.random.default_rng(2).integers(0, 256, (4, PS), dtype=np.uint8)
    assert _stored(codec, pages, [3, 0]) == [pages[3].tobytes(), pages[0].tobytes()]


@pytest.mark.parametrize("codec", CODECS)
def test_batch_compression_of_a_strided_view_equals_its_pages_alone(codec):
    base = _pages(2 * 256 + 2, seed=5)
    view = base[::2]
    rows = list(range(len(view)))
    assert _stored(codec, view, rows) == _stored(codec, np.ascontiguousarray(view), rows)


def test_an_empty_batch_stores_nothing():
    data, sizes = compress_pages("lzo", np.zeros((3, PS), np.uint8), np.zeros(0, np.int64))
    assert data == b"" and len(sizes) == 0


@pytest.mark.parametrize("row", [-1, 3, 1 << 40])
def test_rows_outside_the_batch_are_refused_not_read(row):
    with pytest.raises(IndexError, match="outside 3 pages"):
        compress_pages("zstd", np.zeros((3, PS), np.uint8), np.array([0, row]))


def test_an_unknown_codec_is_refused():
    with pytest.raises(DumpError, match="unknown compression"):
        compress_pages("brotli", np.zeros((1, PS), np.uint8), np.zeros(1, np.int64))


def test_compression_threads_default_to_the_cpus_when_there_are_two_or_more(monkeypatch):
    monkeypatch.setattr(pagebatch.os, "sched_getaffinity", lambda pid: {0, 1, 2})
    assert compression_threads(0, "zstd") == 3
    assert compression_threads(0, None) == 1  # one thread reads while the writer writes
    # pages only zero-tested go nowhere: nothing waits for a writer
    assert compression_threads(0, None, zero_test_only=True) == 3
    assert compression_threads(5, "lzo") == 5  # --num-threads N is kept as asked
    monkeypatch.setattr(pagebatch.os, "sched_getaffinity", lambda pid: {0})
    assert compression_threads(0, "zstd") == 0  # one CPU: compress in the writing thread
    assert compression_threads(1, "zstd") == 1
