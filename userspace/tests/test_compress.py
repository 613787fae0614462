"""Per-page codecs and the ordered parallel encoder."""

from __future__ import annotations

import os
import zlib

import numpy as np
import pytest

from dumpfilter.compress import CODEC_FLAGS, Batch, Encoder, decompress, zero_rows
from dumpfilter.errors import DumpError

PS = 4096


def _pages(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = np.zeros((n, PS), np.uint8)
    kind = rng.integers(0, 3, n)
    p[kind == 1] = rng.integers(0, 256, (int((kind == 1).sum()), PS), dtype=np.uint8)
    p[kind == 2, ::64] = 7  # compressible
    return p


def test_zero_rows_finds_exactly_the_all_zero_pages():
    p = np.zeros((5, PS), np.uint8)
    p[1, 4095] = 1
    p[3, 0] = 0x80
    assert zero_rows(p).tolist() == [True, False, True, False, True]


def _stored_pages(res) -> list[bytes]:
    """The written bytes of a result cut at its pages' sizes (zero pages write nothing)."""
    flat = b"".join(bytes(memoryview(c).cast("B")) for c in res.chunks)
    ends = np.cumsum(res.sizes).tolist()
    assert len(flat) == (ends[-1] if ends else 0)
    return [flat[e - s : e] for s, e in zip(res.sizes.tolist(), ends, strict=True) if s]


@pytest.mark.parametrize("codec", ["zlib", "lzo", "snappy", "zstd"])
def test_each_codec_round_trips_and_stores_incompressible_pages_raw(codec):
    pages = _pages(300)
    res = Encoder(codec, PS).encode(Batch(np.arange(300), pages, find_zero=True))
    zero = zero_rows(pages)
    assert res.zero.tolist() == zero.tolist()
    it = iter(_stored_pages(res))
    for i in range(300):
        if zero[i]:
            assert res.sizes[i] == 0
            continue
        blob = next(it)
        if res.flags[i]:
            assert res.flags[i] == CODEC_FLAGS[codec] and res.sizes[i] < PS
            assert decompress(codec, blob, PS) == pages[i].tobytes()
        else:
            assert res.sizes[i] == PS and blob == pages[i].tobytes()
    assert (res.flags == 0).any() and (res.flags != 0).any()


def test_zlib_pages_are_zlib_wrapped_level_1_as_crash_expects():
    page = np.tile(np.frombuffer(b"kernel text ", np.uint8), 400)[:PS].reshape(1, PS)
    res = Encoder("zlib", PS).encode(Batch(np.arange(1), page.copy(), find_zero=False))
    blob = bytes(res.chunks[0])
    assert blob[:2] == b"\x78\x01"  # zlib header, fastest level
    assert zlib.decompress(blob) == page.tobytes()


def test_without_zero_bit_zero_pages_are_written_as_data():
    pages = np.zeros((4, PS), np.uint8)
    res = Encoder(None, PS).encode(Batch(np.arange(4), pages, find_zero=False))
    assert not res.zero.any() and res.sizes.tolist() == [PS] * 4


@pytest.mark.parametrize("threads", [0, 1, 3])
def test_parallel_results_come_back_in_submission_order(threads):
    batches = [
        Batch(np.arange(i * 50, i * 50 + 50), _pages(50, seed=i), True, tag=i) for i in range(40)
    ]
    with Encoder("zlib", PS, threads) as enc:
        out = list(enc.map(batches))
    assert [r.batch.tag for r in out] == list(range(40))
    serial = [Encoder("zlib", PS).encode(b) for b in batches]
    for a, b in zip(out, serial, strict=True):
        assert a.sizes.tolist() == b.sizes.tolist()
        assert [bytes(memoryview(x).cast("B")) for x in a.chunks] == [
            bytes(memoryview(x).cast("B")) for x in b.chunks
        ]


def test_raw_mode_packs_the_non_zero_pages_back_to_back_in_one_chunk():
    """One buffer per batch, not a view per run of kept pages: the writer's Python work is
    per batch, and the result keeps none of the batch alive."""
    pages = _pages(64, seed=3)
    pages[[10, 11, 40]] = 0
    res = Encoder(None, PS).encode(Batch(np.arange(64), pages, True))
    nonzero = ~zero_rows(pages)
    assert len(res.chunks) == 1 and res.stored == int(nonzero.sum()) * PS
    assert bytes(res.chunks[0]) == pages[nonzero].tobytes()
    assert res.sizes.tolist() == [PS if k else 0 for k in nonzero]
    assert not res.flags.any()


@pytest.mark.parametrize("codec", [None, "zstd"])
def test_rows_select_kept_pages_from_a_view_like_a_gathered_copy(codec):
    pages = _pages(64, seed=4)
    rows = np.setdiff1d(np.arange(64), [3, 17, 40])
    enc = Encoder(codec, PS)
    a = enc.encode(Batch(rows, pages, True, rows=rows))
    b = enc.encode(Batch(rows, pages[rows], True))
    assert a.zero.tolist() == b.zero.tolist() and a.sizes.tolist() == b.sizes.tolist()
    flat = lambda r: b"".join(bytes(memoryview(c).cast("B")) for c in r.chunks)  # noqa: E731
    assert flat(a) == flat(b)


def test_zstd_results_are_makedumpfiles_frames_one_per_page():
    """zstd level 1, one frame a page, for rows of a view as for a whole batch, small or big:
    the written bytes are the non-zero kept pages' frames (raw when not smaller), in order."""
    import zstandard

    n = 1024
    pages = _pages(n, seed=3)
    one = zstandard.ZstdCompressor(level=1)
    rows = np.flatnonzero(~zero_rows(pages))[::2]
    for batch in (
        Batch(np.arange(n), pages, find_zero=True),
        Batch(rows, pages, find_zero=True, rows=rows),
        Batch(np.arange(20), pages[:20], find_zero=True),
    ):
        res = Encoder("zstd", PS).encode(batch)
        kept = batch.rows if batch.rows is not None else np.arange(len(batch.pfns))
        data = [pages[i].tobytes() for i in kept if pages[i].any()]
        want = [one.compress(d) for d in data]
        want = [w if len(w) < PS else d for w, d in zip(want, data, strict=True)]
        assert b"".join(bytes(memoryview(c).cast("B")) for c in res.chunks) == b"".join(want)
        assert res.sizes[~res.zero].tolist() == [len(w) for w in want]
        assert (res.flags[(res.sizes < PS) & ~res.zero] != 0).all()
        assert (res.flags[res.sizes == PS] == 0).all()


@pytest.mark.parametrize("codec", ["zlib", "lzo", "snappy", "zstd", None])
def test_a_stored_result_holds_no_reference_to_its_batch_pages(codec):
    """Results wait in the look-ahead and their chunks in the writer's buffer: a view of the
    batch (an incompressible page stored raw, or the batch itself) would keep its whole page
    buffer alive all that time."""
    pages = _pages(64, seed=6)
    res = Encoder(codec, PS).encode(Batch(np.arange(64), pages, find_zero=True))
    assert any(res.flags == 0) and not all(res.zero)  # raw pages are among them
    assert res.batch.pages is None
    assert not any(isinstance(c, np.ndarray) and np.shares_memory(c, pages) for c in res.chunks)
    assert res.batch.pfns.tolist() == list(range(64))


def test_an_error_in_a_worker_thread_is_raised_in_the_writers_thread(tmp_path):
    """A batch whose pages cannot be read (its file was cut after the plan) fails in the
    thread that reads it; the writer gets the batches before it, then that error."""
    from types import SimpleNamespace

    from dumpfilter.runread import RunReader

    f = tmp_path / "core"
    f.write_bytes(bytes(16 * PS))
    load = SimpleNamespace(paddr=0, filesz=16 * PS, offset=0)
    src = SimpleNamespace(kind="elf", page_size=PS, path=str(f), loads=[load])
    good = [Batch(np.arange(i * 8, i * 8 + 8), _pages(8, seed=i), True, tag=i) for i in range(6)]
    with RunReader(src) as runs:
        plan = runs.plan(np.arange(8, 16))
        os.truncate(f, 10 * PS)
        bad = Batch(np.arange(8, 16), None, True, tag="bad", runs=plan)
        got = []
        with Encoder("zlib", PS, 2) as enc, pytest.raises(DumpError, match="short read"):
            for r in enc.map([*good[:3], bad, *good[3:]]):
                got.append(r.batch.tag)
    assert got == [0, 1, 2]
