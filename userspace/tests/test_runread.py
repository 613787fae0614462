"""Reading batches of an ELF input by runs, and the one C call that reads, zero-tests and
compresses them: the same pages and the same stored bytes as the source and the Python path."""

from __future__ import annotations

import os
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from dumpfilter.compress import Batch, Encoder, decompress
from dumpfilter.errors import DumpError
from dumpfilter.native import pagecodec
from dumpfilter.runread import RunReader

PS = 4096
CODECS = [None, "zlib", "lzo", "snappy", "zstd"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    import synthvmcore

    p = tmp_path_factory.mktemp("synth") / "vmcore"
    return synthvmcore.make_vmcore(p, image_trap=False, seed=3, ram=[(1, 0x9F), (0x100, 0x6000)])


def test_runs_read_exactly_the_pages_the_source_maps(synth):
    """A plan (one read per run of kept PFNs) reads exactly the pages the source maps, also
    for PFNs on both sides of a hole, and declines (None) pages no PT_LOAD holds and any
    non-ELF source."""
    from dumpfilter.elfcore import ElfVmcore

    rng = np.random.default_rng(7)
    with ElfVmcore(synth.path) as src, RunReader(src) as runs:
        for s in (0x100, 0x1000, 0x5E00):
            idx = np.flatnonzero(rng.random(512) < 0.3)
            plan = runs.plan(s + idx)
            assert plan is not None
            assert np.array_equal(plan.read(), src.read_pages(s, 512)[idx])
        # [0x9F, 0x100) is a hole: pages on both sides come from their own loads, none from it
        plan = runs.plan(0x90 + np.array([0, 0x7F]))
        assert plan is not None
        want = np.concatenate([src.read_pages(p, 1) for p in (0x90, 0x10F)])
        assert np.array_equal(plan.read(), want)
        assert runs.plan(0x90 + np.array([0, 0x20])) is None

    kdump_input = SimpleNamespace(kind="kdump", page_size=PS, path=synth.path, loads=[])
    with RunReader(kdump_input) as runs:
        assert runs.fd < 0 and runs.plan(np.arange(3)) is None


def test_a_run_across_two_touching_loads_is_read_from_each(tmp_path):
    """PFNs consecutive across the edge of two PT_LOADs whose file data lie apart are two
    runs, each read at its own load's offset."""
    f = tmp_path / "core"
    data = np.random.default_rng(1).integers(0, 256, 8 * PS, dtype=np.uint8)
    f.write_bytes(data.tobytes())
    # PFNs 10-13 at file pages 0-3, PFNs 14-17 at file pages 6-9 (2 pages of padding between)
    loads = [
        SimpleNamespace(paddr=10 * PS, filesz=4 * PS, offset=0),
        SimpleNamespace(paddr=14 * PS, filesz=2 * PS, offset=6 * PS),
    ]
    src = SimpleNamespace(kind="elf", page_size=PS, path=str(f), loads=loads)
    with RunReader(src) as runs:
        plan = runs.plan(np.arange(12, 16))
        assert plan is not None
        assert plan.offsets.tolist() == [2 * PS, 6 * PS] and plan.sizes.tolist() == [2 * PS] * 2
        pages = data.reshape(-1, PS)
        assert np.array_equal(plan.read(), pages[[2, 3, 6, 7]])


def test_pages_of_a_file_cut_after_it_was_opened_are_an_error_not_garbage(synth, tmp_path):
    """The encoder's threads read batches planned earlier: pages the file no longer has (a
    copy truncated while it is filtered) are a DumpError naming the offset."""
    from dumpfilter.elfcore import ElfVmcore

    copy = tmp_path / "copy.vmcore"
    shutil.copyfile(synth.path, copy)
    with ElfVmcore(str(copy)) as src, RunReader(src) as runs:
        last = max(b for _a, b, _d in runs.loads)
        end_off = max(b * PS + d for _a, b, d in runs.loads)
        plan = runs.plan(last - 8 + np.arange(8))
        assert plan is not None
        os.truncate(copy, end_off - 3 * PS)
        with pytest.raises(DumpError, match="short read at offset"):
            plan.read()


def test_a_file_cut_after_the_first_read_chunk_stores_nothing(tmp_path):
    """``encode_runs`` reads and stores 64 pages at a time (raw: run by run, straight into
    the stored form): when a later read comes up short, the batch is a DumpError naming the
    offset, not the pages stored so far."""
    src, _pages = _mixed_file(tmp_path, 300)
    with RunReader(src) as runs:
        plan = runs.plan(np.arange(300))
        assert plan is not None
        os.truncate(src.path, 200 * PS)
        for codec in ("lzo", "raw"):
            with pytest.raises(DumpError, match="short read at offset 0x0"):
                plan.encode(codec, True, (bytearray(), bytearray()))


def _mixed_file(tmp_path, n: int = 96, shift: int = 0):
    """A file of pages of every kind the encoder tells apart: zero, random (incompressible),
    compressible, one byte set in the last word; after *shift* bytes of something else."""
    rng = np.random.default_rng(5)
    pages = np.zeros((n, PS), np.uint8)
    kind = np.arange(n) % 4
    pages[kind == 1] = rng.integers(0, 256, (int((kind == 1).sum()), PS), dtype=np.uint8)
    pages[kind == 2, ::64] = 7
    pages[kind == 3, PS - 1] = 1
    f = tmp_path / "pages"
    f.write_bytes(b"\xa5" * shift + pages.tobytes())
    src = SimpleNamespace(
        kind="elf",
        page_size=PS,
        path=str(f),
        loads=[SimpleNamespace(paddr=0, filesz=n * PS, offset=shift)],
    )
    return src, pages


def test_batches_planned_together_read_as_each_planned_alone(synth):
    """``plans`` cuts the PFNs into batches of *span* (runs split at a batch's end) and plans
    each as ``plan`` would alone; a batch with a run in a hole is None, its neighbours not."""
    from dumpfilter.elfcore import ElfVmcore

    rng = np.random.default_rng(11)
    pfns = np.sort(
        np.concatenate(
            (
                0x1000 + np.flatnonzero(rng.random(3000) < 0.5),
                0x90 + np.array([0, 0x20, 0x7F]),  # 0xB0: the hole [0x9F, 0x100)
            )
        )
    )
    with ElfVmcore(synth.path) as src, RunReader(src) as runs:
        for span in (1, 7, 64, 512, len(pfns)):
            got = runs.plans(pfns, span)
            batches = [pfns[i : i + span] for i in range(0, len(pfns), span)]
            assert len(got) == len(batches)
            for plan, batch in zip(got, batches, strict=True):
                alone = runs.plan(batch)
                if alone is None:
                    assert plan is None and 0xB0 in batch
                    continue
                assert plan is not None
                assert plan.offsets.tolist() == alone.offsets.tolist()
                assert plan.sizes.tolist() == alone.sizes.tolist()
                assert np.array_equal(
                    plan.read(), np.concatenate([src.read_pages(int(p), 1) for p in batch])
                )
            assert sum(p is None for p in got) == 1


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("find_zero", [True, False])
@pytest.mark.parametrize("npages", [96, 300])  # 300: runs cut by the 64-page read chunks
def test_a_batch_read_in_one_call_is_encoded_as_its_pages_alone(tmp_path, codec, find_zero, npages):
    """The one-call path (read, zero test, compress in C) gives the same zero pages, sizes,
    flags and bytes as the same pages handed to the encoder as an array."""
    src, pages = _mixed_file(tmp_path, npages)
    pfns = np.flatnonzero(np.random.default_rng(9).random(len(pages)) < 0.7)
    with RunReader(src) as runs:
        plan = runs.plan(pfns)
        assert plan is not None
        enc = Encoder(codec, PS)
        got = enc.encode(Batch(pfns=pfns, pages=None, find_zero=find_zero, runs=plan))
        want = enc.encode(Batch(pfns=pfns, pages=pages[pfns].copy(), find_zero=find_zero))
    assert np.array_equal(got.zero, want.zero)
    assert got.sizes.tolist() == want.sizes.tolist()
    assert got.flags.tolist() == want.flags.tolist()
    assert b"".join(bytes(memoryview(c)) for c in got.chunks) == b"".join(
        bytes(memoryview(c)) for c in want.chunks
    )
    assert got.batch.pages is None  # a result keeps no pages of the batch
    pos = 0
    data = b"".join(bytes(memoryview(c)) for c in got.chunks)
    for i, size in enumerate(got.sizes.tolist()):
        page = pages[pfns[i]].tobytes()
        if size == 0:
            assert find_zero and not any(page)
            continue
        stored = data[pos : pos + size]
        assert (stored if size == PS else decompress(codec, stored, PS)) == page
        pos += size


@pytest.mark.parametrize("find_zero", [True, False])
@pytest.mark.parametrize("mapped", [False, True])
def test_a_zero_test_only_batch_read_in_one_call_is_tested_as_its_pages_alone(
    tmp_path, find_zero, mapped
):
    """Only zero-testing (--dry-run, the ELF writer's zero pass), the one-call path stores
    nothing and finds the same zero pages and sizes as the same pages handed over as an
    array."""
    src, pages = _mixed_file(tmp_path, 300)
    pfns = np.flatnonzero(np.random.default_rng(4).random(len(pages)) < 0.7)
    with RunReader(src, mapped=mapped) as runs:
        plan = runs.plan(pfns)
        assert plan is not None
        enc = Encoder(None, PS, zero_test_only=True)
        got = enc.encode(Batch(pfns=pfns, pages=None, find_zero=find_zero, runs=plan))
        want = enc.encode(Batch(pfns=pfns, pages=pages[pfns].copy(), find_zero=find_zero))
    assert got.zero.tolist() == want.zero.tolist()
    assert got.zero.tolist() == (find_zero & ~pages[pfns].any(axis=1)).tolist()
    assert got.sizes.tolist() == want.sizes.tolist()
    assert got.flags.tolist() == want.flags.tolist() == [0] * len(pfns)
    assert got.chunks == want.chunks == []
    assert got.stored == want.stored


def test_runs_that_are_not_whole_pages_are_refused_before_reading(tmp_path):
    """The C entry point checks the runs it is given (whole pages, offsets not negative, as
    many sizes as offsets) before it reads a byte, whatever it stores."""
    src, _pages = _mixed_file(tmp_path, 4)
    bad = (([0], [PS - 1]), ([-PS], [PS]), ([0], [0]), ([0, 0], [PS]))
    with RunReader(src) as runs:
        for codec in ("lzo", "raw", "none"):
            for offsets, sizes in bad:
                with pytest.raises(ValueError):
                    pagecodec().encode_runs(
                        codec,
                        runs.fd,
                        False,
                        np.array(offsets, np.int64),
                        np.array(sizes, np.int64),
                        PS,
                        True,
                        bytearray(),
                        bytearray(),
                    )


@pytest.mark.parametrize("codec", CODECS)
def test_only_compressing_codecs_keep_a_read_chunk(tmp_path, codec):
    """Raw pages are read straight into the thread's output buffer (their stored form), so
    its read chunk stays empty; a compressing codec reads 64 pages at a time into it."""
    src, _pages = _mixed_file(tmp_path, 96)
    bufs = (bytearray(), bytearray())
    with RunReader(src) as runs:
        plan = runs.plan(np.arange(96))
        assert plan is not None
        data, sizes = plan.encode(codec or "raw", True, bufs)
    assert len(data) == int(sizes.sum())
    assert len(bufs[0]) == (0 if codec is None else 64 * PS)
    assert len(bufs[1]) >= 95 * PS  # room for the batch's stored form, kept for the next


@pytest.mark.parametrize("codec", ["raw", "none", "zlib", "lzo", "snappy", "zstd"])
@pytest.mark.parametrize("shift", [0, 1000])  # 1000: a page across each window's edge
def test_runs_read_through_mappings_give_what_reads_give(tmp_path, codec, shift):
    """Read through 4 MiB windows mapped from the file (how /proc/vmcore is read): the same
    pages, sizes and stored bytes as pread(), for runs inside one window, across a window's
    edge, longer than a window, and ending at the file's end; also where the pages do not
    start at a multiple of the page size, so that a window's edge cuts a page, which is
    copied while the pages around it are stored from the mapping."""
    n = 2600  # 10.2 MiB: three windows, the last one short
    src, pages = _mixed_file(tmp_path, n, shift)
    win = (4 << 20) // PS
    pfns = np.concatenate(
        (
            np.arange(3, 9),  # inside the first window
            np.arange(win - 5, win + 7),  # across its edge
            np.arange(win + 20, 2 * win + 300),  # longer than a window
            np.flatnonzero(np.random.default_rng(2).random(n) < 0.1)[-40:],  # sparse, to the end
            [n - 1],
        )
    )
    pfns = np.unique(pfns)
    with RunReader(src, mapped=False) as plain, RunReader(src, mapped=True) as mapped:
        assert not plain.mapped and mapped.mapped
        a, b = plain.plan(pfns), mapped.plan(pfns)
        assert a is not None and b is not None
        assert np.array_equal(b.read(), pages[pfns])
        want = a.encode(codec, True, (bytearray(), bytearray()))
        got = b.encode(codec, True, (bytearray(), bytearray()))
    assert got[0] == want[0] and got[1].tolist() == want[1].tolist()
    zero = ~pages[pfns].any(axis=1)
    assert (want[1] == 0).tolist() == zero.tolist()
    if codec == "none":
        assert want[0] == b"" and (want[1][~zero] == PS).all()


def test_a_mapped_read_past_the_end_of_the_file_stops_as_a_read_does(tmp_path):
    """A run beyond the file's end (a dump shorter than its headers say) ends the mapped read
    where pread() ends it: the run's index, errno 0, nothing stored."""
    src, _pages = _mixed_file(tmp_path, 8)
    offsets = np.array([0, 6 * PS], np.int64)
    sizes = np.array([2 * PS, 4 * PS], np.int64)  # the second run ends 2 pages past the end
    with RunReader(src) as runs:
        for mapped in (False, True):
            for codec in ("zstd", "raw", "none"):
                data, _sizes, stop, err = pagecodec().encode_runs(
                    codec, runs.fd, mapped, offsets, sizes, PS, True, bytearray(), bytearray()
                )
                assert (data, stop, err) == (b"", 1, 0)


def test_only_proc_vmcore_is_read_through_mappings(tmp_path):
    """By default a file is read by pread(): mapping a regular file would fault its pages in
    one by one, and a file cut short under the mapping would kill the process (SIGBUS)."""
    src, _pages = _mixed_file(tmp_path, 4)
    with RunReader(src) as runs:
        assert not runs.mapped
