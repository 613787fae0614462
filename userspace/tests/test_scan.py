"""userspace_scan on synthetic vmcores: every encoding, every dump level, and makedumpfile."""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import termios
import time

import numpy as np
import pytest
import synthvmcore as sv
from conftest import MAKEDUMPFILE
from fakes import (
    cached_vmcores,
)

from dumpfilter import elfcore, scan, source
from dumpfilter.classify import classify as real
from dumpfilter.kdumpformat import HEADER, SUB_HEADER, Header, SubHeader
from dumpfilter.pageclass import PageClass

LEVELS = (0, 1, 2, 4, 8, 16, 31)


def classes(path, level, window=None):
    with source.open_source(str(path)) as src:
        c = scan.userspace_scan(src, level)
        parts = list(c.windows(window))
        assert [w0 for w0, _ in parts] == sorted(w0 for w0, _ in parts)
        return c, np.concatenate([a for _, a in parts])


def assert_same(got, synth, level):
    exp = synth.expected_classes(level)
    bad = np.flatnonzero(got != exp)
    detail = [
        (hex(int(p)), int(got[p]), int(exp[p]), sv.KIND_NAMES[int(synth.kind[p])]) for p in bad[:8]
    ]
    assert len(bad) == 0, f"level {level}: {len(bad)} PFNs differ, e.g. {detail}"


@pytest.mark.parametrize("kernel", sv.KERNELS)
def test_every_encoding_classifies_every_pfn_as_placed(synth_factory, kernel):
    synth = synth_factory(kernel=kernel)
    for level in LEVELS:
        _, got = classes(synth.path, level)
        assert_same(got, synth, level)


@pytest.mark.parametrize(
    "variant",
    [
        dict(
            kernel="6.12",
            five_level=True,
            leaf="4K",
            sme_mask=1 << 47,
            ram=[(1, 0x9F), (0x100, 0x3FFE0), (0x100000, 0x108000)],
        ),
        dict(
            kernel="6.1",
            leaf="1G",
            ram=[(1, 0x9F), (0x100, 0x48000)],
            kernel_offset=0x3E000000,
            kernel_pa=0x1000000,
        ),
        dict(kernel="6.9", ram=[(1, 0x9F), (0x100, 0x7000), (0x8000, 0x20000), (0x28000, 0x30000)]),
        dict(kernel="6.6", hugetlb=False, partial_end=True),
        dict(kernel="6.1", hugetlb=False, hwpoison=False),
        dict(
            kernel="7.1",
            five_level=True,
            kernel_offset=0x2000000,
            kernel_pa=0x40000000,
            ram=[(0x100, 0x50000)],
        ),
    ],
    ids=[
        "5level-4K-sme-above4G",
        "1G-leaves",
        "holes-in-sections",
        "6.6-no-hugetlb",
        "6.1-no-hugetlb",
        "7.1-5level-kaslr",
    ],
)
def test_address_space_variants_classify_as_placed(synth_factory, variant):
    synth = synth_factory(**variant)
    for level in (0, 16, 31):
        _, got = classes(synth.path, level)
        assert_same(got, synth, level)


def test_windows_of_any_size_give_the_same_answer_each_time(synth_factory):
    synth = synth_factory(kernel="6.12", leaf="4K")
    c, whole = classes(synth.path, 31)
    with source.open_source(synth.path) as src:
        c = scan.userspace_scan(src, 31)
        for size in (777, 4096, 1 << 20):
            again = np.concatenate([a for _, a in c.windows(size)])
            assert np.array_equal(again, whole)
        assert np.array_equal(np.concatenate([a for _, a in c.windows()]), whole)


def test_setup_windows_are_released_and_struct_pages_read_through_one_span(synth61, monkeypatch):
    monkeypatch.setattr(elfcore, "WINDOW", 1 << 20)
    monkeypatch.setattr(elfcore, "SPAN", 4096)  # a range's struct pages: a span of their own
    _, whole = classes(synth61.path, 31)
    with source.open_source(synth61.path) as src:
        calls = []
        c = scan.userspace_scan(src, 31)
        assert not src._windows  # page tables, mem_section, notes: unmapped before the scan
        monkeypatch.setattr(scan, "classify", lambda *a: calls.append(a[2]) or real(*a))
        assert np.array_equal(np.concatenate([a for _, a in c.windows()]), whole)
        # one classify call per RAM range: neither 1 MiB windows nor spans cut the runs
        assert len(calls) == len(synth61.ram)


def test_window_arrays_are_read_only_so_the_kept_answer_cannot_be_changed(synth61):
    with source.open_source(synth61.path) as src:
        c = scan.userspace_scan(src, 31)
        first = [a for _, a in c.windows()]
        assert all(not a.flags.writeable for a in first)
        with pytest.raises(ValueError):
            first[0][0] = PageClass.FREE
        assert all(a is b for a, b in zip(first, [a for _, a in c.windows()], strict=True))


def test_classes_are_kept_compressed_when_memory_is_short(synth61, monkeypatch):
    with source.open_source(str(synth61.path)) as src:
        whole = np.concatenate([a for _, a in scan.userspace_scan(src, 31).windows()])
    monkeypatch.setattr(scan, "mem_available", lambda: 8 * synth61.max_pfn)
    with source.open_source(str(synth61.path)) as src:
        c = scan.UserspaceClassification(src, 31, window=1 << 12)
        first = np.concatenate([a for _, a in c.windows()])
        assert isinstance(c._cache, scan._Packed)
        monkeypatch.setattr(c, "_compute", None)  # the second pass must not scan
        again = list(c.windows())
        assert all(not a.flags.writeable for _, a in again)
        assert [w0 for w0, _ in again] == list(range(0, c.max_pfn, 1 << 12))
        assert np.array_equal(np.concatenate([a for _, a in again]), whole)
        assert np.array_equal(first, whole)


def test_compressed_windows_hold_only_their_frames():
    """Each kept window costs what its frame takes, not the bound it was compressed into."""
    import tracemalloc

    packed = scan._Packed(1 << 18, 1 << 20)
    arr = np.full(1 << 18, PageClass.FREE, np.uint8)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for w0 in range(0, 16 << 18, 1 << 18):
            assert packed.add(w0, arr)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 16 * 1024  # 16 frames of a few dozen bytes, not 16 x 256 KiB
    assert all(np.array_equal(a, arr) for _w0, a in packed.windows())


def test_classes_are_scanned_again_not_kept_when_memory_is_short(synth61, monkeypatch):
    with source.open_source(str(synth61.path)) as src:
        c = scan.userspace_scan(src, 31)
        whole = np.concatenate([a for _, a in c.windows()])
        assert c._cache is not None  # plenty of memory: the second pass is free
    monkeypatch.setattr(scan, "mem_available", lambda: 8 * synth61.max_pfn)
    monkeypatch.setattr(scan, "PACKED_CACHE_BYTES", 64)  # nor compressed
    with source.open_source(str(synth61.path)) as src:
        c = scan.userspace_scan(src, 31)
        first = [a for _, a in c.windows()]
        assert c._cache is None
        again = [a for _, a in c.windows()]
        assert all(a is not b for a, b in zip(first, again, strict=True))
        assert np.array_equal(np.concatenate(again), whole)


def test_mem_available_reads_meminfo_and_is_unlimited_without_it(tmp_path):
    f = tmp_path / "meminfo"
    f.write_text("MemTotal:       58368 kB\nMemFree:  1 kB\nMemAvailable:   31244 kB\n")
    assert scan.mem_available(str(f)) == 31244 * 1024
    f.write_text("MemTotal:       58368 kB\n")  # before Linux 3.14
    assert scan.mem_available(str(f)) >= 1 << 60
    assert scan.mem_available(str(tmp_path / "none")) >= 1 << 60


def test_kernel_image_pages_are_kept_even_with_lru_and_mapping(synth_factory):
    synth = synth_factory(kernel="6.6", image_trap=True)
    trap = synth.pfns_of(sv.K_IMAGE_TRAP)
    assert len(trap) == 1
    _, got = classes(synth.path, 31)
    assert got[trap[0]] == PageClass.KEEP
    a, b = synth.image_pfns
    assert (got[a:b] != PageClass.KEEP).sum() == 16  # only the freed __init buddy block


def test_only_pg_reserved_image_pages_are_forced_kept(synth_factory):
    """A page-cache page in freed __init memory (no PG_reserved) is excluded at -d 31 like
    makedumpfile does, while the reserved BSS trap with PG_lru+mapping stays kept."""
    synth = synth_factory(kernel="6.1", init_cache=True)
    a, b = synth.image_pfns
    trap = synth.pfns_of(sv.K_IMAGE_TRAP)
    reused = np.flatnonzero(synth.kind[a:b] == sv.K_CACHE) + a
    free = np.flatnonzero(synth.kind[a:b] == sv.K_BUDDY) + a
    assert len(trap) == 1 and len(reused) == 1 and len(free) == 16
    _, got = classes(synth.path, 31)
    assert got[trap[0]] == PageClass.KEEP
    assert got[reused[0]] == PageClass.CACHE
    assert (got[free] == PageClass.FREE).all()
    assert (got[a:b] != PageClass.KEEP).sum() == 17
    assert np.array_equal(got, synth.expected_classes(31))


def test_freed_init_memory_inside_the_image_is_still_free(synth61):
    a, b = synth61.image_pfns
    inside = np.flatnonzero(synth61.kind[a:b] == sv.K_BUDDY) + a
    assert len(inside) == 16
    _, got = classes(synth61.path, 16)
    assert (got[inside] == PageClass.FREE).all()


def test_a_page_a_load_holds_in_part_is_judged_by_its_struct_page(synth_factory):
    """A PT_LOAD ending inside a page (0x9fc00) still holds data of that page: it is RAM with
    data, classified like any other page, and no PFN is left without data."""
    synth = synth_factory(kernel="6.12", partial_end=True)
    last = synth.ram[0][1] - 1
    for level in (0, 31):
        c, got = classes(synth.path, level)
        assert got[last] == synth.expected_classes(level)[last] != PageClass.HOLE
        assert not len(c.nodata)


def test_holes_are_hole_and_ram_without_struct_pages_is_kept(synth61):
    _, got = classes(synth61.path, 31)
    assert got[0] == PageClass.HOLE and (got[0x9F:0x100] == PageClass.HOLE).all()
    assert got.shape == (synth61.max_pfn,)


def _make_buddy_head(path, pfn: int, order: int) -> None:
    """Rewrite the struct page of ``pfn`` in the vmcore file as a free block of ``order``."""
    with source.open_source(str(path)) as src:
        c = scan.userspace_scan(src, 31)
        enc = c.encoding
        ch = next(ch for ch in c.chunks if ch.start_pfn <= pfn < ch.start_pfn + ch.nr_pages)
        pa = ch.paddr + (pfn - ch.start_pfn) * enc.struct_size
        ld = src._seg_for(pa, enc.struct_size)
        off = ld.offset + pa - ld.paddr
    with open(path, "r+b") as f:
        f.seek(off + enc.off_mapcount)
        f.write(struct.pack("<I", enc.buddy))
        f.seek(off + enc.off_private)
        f.write(struct.pack("<Q", order))


def test_a_struct_page_in_a_hole_never_excludes_ram(synth_factory):
    """makedumpfile skips PFNs outside every PT_LOAD: a free-block head at PFN 0 (not RAM)
    does not make RAM PFNs 1..0x9e free."""
    synth = synth_factory(kernel="6.1")
    _make_buddy_head(synth.path, 0, 8)
    _, got = classes(synth.path, 31)
    assert np.array_equal(got, synth.expected_classes(31))


def test_a_free_block_runs_on_over_a_hole_into_the_next_ram_range(synth_factory):
    """ "Continue at pfn + n": a block from RAM that spans a hole covers the RAM after it."""
    synth = synth_factory(kernel="6.1", ram=[(1, 0x9F), (0x100, 0x10008), (0x10010, 0x18000)])
    near = np.r_[0x10000:0x10008, 0x10010:0x10040]
    assert (synth.kind[near] == sv.K_KERNEL).all()  # plain pages, no ranges of their own
    _make_buddy_head(synth.path, 0x10000, 5)
    _, got = classes(synth.path, 16, window=0x10004)  # the block also crosses a window
    exp = synth.expected_classes(16)
    exp[0x10000:0x10008] = exp[0x10010:0x10020] = PageClass.FREE
    assert (got[0x10008:0x10010] == PageClass.HOLE).all()
    assert np.array_equal(got, exp)


def test_chunk_table_is_the_kernel_abi_shape(synth_factory):
    synth = synth_factory(kernel="6.1", leaf="4K")
    with source.open_source(synth.path) as src:
        c = scan.userspace_scan(src, 31)
        table = c.chunk_table()
    assert all(len(t) == 3 for t in table)
    starts = [t[0] for t in table]
    assert starts == sorted(starts)
    # three present 128 MiB sections, less the PFNs outside RAM (0 and the legacy hole)
    assert sum(t[1] for t in table) == 3 * 32768 - 1 - (0x100 - 0x9F)


# ---------------------------------------------------------------------------------- oracle


def _kdump_kept(path) -> np.ndarray:
    """The 2nd bitmap (dumpable PFNs) of a kdump-compressed file (docs/kdump-compressed.md §4)."""
    with open(path, "rb") as f:
        hdr = Header.unpack(f.read(HEADER.size))
        f.seek(hdr.block_size)
        max_mapnr64 = SubHeader.unpack(f.read(SUB_HEADER.size)).max_mapnr_64
        half = hdr.bitmap_len
        f.seek(hdr.bitmap_off + half)
        bm = np.frombuffer(f.read(half), np.uint8)
    return np.unpackbits(bm, bitorder="little")[:max_mapnr64].astype(bool)


@pytest.mark.skipif(MAKEDUMPFILE is None, reason="makedumpfile not installed")
@pytest.mark.parametrize(
    "variant",
    [
        dict(),
        dict(
            five_level=True,
            leaf="4K",
            sme_mask=1 << 47,
            ram=[(1, 0x9F), (0x100, 0x3FFE0), (0x100000, 0x104000)],
        ),
    ],
    ids=["4level-2M", "5level-4K-sme"],
)
def test_kept_pfns_equal_makedumpfile_on_6_1(synth_factory, tmp_path, variant):
    """makedumpfile 1.7.2 is the oracle on 6.1: the same 2nd bitmap at every dump level.

    The kernel-image trap is off: makedumpfile excludes such a page (its issue 21), we don't.
    """
    synth = synth_factory(kernel="6.1", image_trap=False, **variant)
    for level in (1, 2, 4, 8, 16, 31):
        out = tmp_path / f"mdf{level}"
        r = subprocess.run(
            [MAKEDUMPFILE, "-d", str(level), "--message-level", "4", synth.path, str(out)],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stderr
        theirs = _kdump_kept(out)
        _, got = classes(synth.path, level)
        ours = got == PageClass.KEEP
        n = min(len(theirs), len(ours))
        assert len(theirs) >= synth.max_pfn
        diff = np.flatnonzero(theirs[:n] != ours[:n])
        eg = [(hex(int(p)), bool(theirs[p]), sv.KIND_NAMES[int(synth.kind[p])]) for p in diff[:8]]
        assert len(diff) == 0, f"-d {level}: {len(diff)} PFNs differ from makedumpfile, e.g. {eg}"
        out.unlink()


def _real_61_dumps():
    return [str(p) for p in cached_vmcores("6.1.")[:1]]


@pytest.mark.realdump
@pytest.mark.skipif(not _real_61_dumps(), reason="needs a 6.1 vmcore from the qemu-tests harness")
def test_real_6_1_dump_kept_pfns_equal_makedumpfile_179(makedumpfile_179, tmp_path):
    """A real Debian 6.1 QEMU dump (qemu-tests cache): the same 2nd bitmap at every level as
    makedumpfile 1.7.9, the page a PT_LOAD holds in part (0x9f) included."""
    vmcore = _real_61_dumps()[0]
    for level in (1, 2, 4, 8, 16, 31):
        out = tmp_path / f"mdf{level}"
        r = subprocess.run(
            [makedumpfile_179, "-d", str(level), "--message-level", "4", vmcore, str(out)],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stderr
        theirs = _kdump_kept(out)
        _, got = classes(vmcore, level)
        ours = got == PageClass.KEEP
        n = min(len(theirs), len(ours))
        diff = np.flatnonzero(theirs[:n] != ours[:n])
        assert len(diff) == 0, f"-d {level}: {len(diff)} PFNs differ, e.g. {diff[:8]}"
        out.unlink()


@pytest.mark.parametrize("leaf", ["2M", "4K"])
def test_struct_pages_straddling_vmemmap_pages_are_read_whole(synth_factory, leaf):
    """SIZE(page)=56 (no MEMCG): 4096 % 56 != 0, so struct pages cross vmemmap page edges;
    2M leaves are contiguous across them, 4K leaves put the two halves apart."""
    synth = synth_factory(kernel="6.1", spage=56, leaf=leaf, init_cache=True)
    with source.open_source(synth.path) as src:
        c = scan.userspace_scan(src, 31)
        split = [ch for ch in c.chunks if ch.split]
        assert bool(split) == (leaf == "4K")
        assert all(ch.nr_pages == 1 for ch in split)
    _, got = classes(synth.path, 31)
    assert np.array_equal(got, synth.expected_classes(31))


# --- parallel scan (--num-threads): forked workers, one window each at a time ----------------


def parallel_classes(path, level, window, workers):
    with source.open_source(str(path)) as src:
        c = scan.UserspaceClassification(src, level, window=window, workers=workers)
        parts = list(c.windows())
        assert [w0 for w0, _ in parts] == list(range(0, c.max_pfn, window))
        return np.concatenate([a for _, a in parts])


def _cut_ranges(synth, window: int) -> int:
    """How many window edges fall inside a free block or a compound page."""
    edges = np.arange(window, len(synth.kind), window)
    long = np.isin(synth.kind, [sv.K_BUDDY, sv.K_THP, sv.K_HUGETLB, sv.K_FILE_FOLIO])
    return int(np.count_nonzero(long[edges - 1] & long[edges]))


@pytest.mark.parametrize("kernel", sv.KERNELS)
def test_parallel_scan_gives_the_single_workers_verdicts_bit_for_bit(synth_factory, kernel):
    """Window edges at 3001 PFNs cut buddy blocks and compound pages: the workers judge
    each window as if nothing ran into it, the carried range makes it judged again."""
    synth = synth_factory(kernel=kernel)
    assert _cut_ranges(synth, 3001) > 10
    for level in (31, 1, 16):
        one = parallel_classes(synth.path, level, 3001, 1)
        assert_same(one, synth, level)
        for workers in (2, 3):
            assert np.array_equal(parallel_classes(synth.path, level, 3001, workers), one)


def test_parallel_scan_of_a_kdump_compressed_input(synth61, tmp_path, cli):
    out = tmp_path / "d0"
    cli("-d", "0", "-l", synth61.path, str(out), check=True)
    one = parallel_classes(out, 31, 5000, 1)
    assert np.array_equal(one, synth61.expected_classes(31))
    assert np.array_equal(parallel_classes(out, 31, 5000, 2), one)


def test_parallel_scan_of_ranges_crossing_window_edges_in_corrupt_data(synth_factory):
    """A misaligned free block over a hole and two window edges: sequential semantics."""
    synth = synth_factory(kernel="6.1", ram=[(1, 0x9F), (0x100, 0x10008), (0x10010, 0x18000)])
    _make_buddy_head(synth.path, 0x10000, 5)
    plain = np.flatnonzero(synth.kind[0x11000:0x17000] == sv.K_KERNEL) + 0x11000
    head = int(plain[plain % 0x1000 > 0xF00][0])  # an order-9 block from here crosses an edge
    for pfn, order in ((head, 9), (head + 0x50, 3), (0x15001, 12)):
        _make_buddy_head(synth.path, pfn, order)
    with source.open_source(synth.path) as src:
        c = scan.UserspaceClassification(src, 16, window=0x1000)
        seq = np.concatenate([a for _, a in c.windows()])
    assert (seq[head : head + 512] == PageClass.FREE).all()
    assert (seq[0x10010:0x10018] == PageClass.FREE).all()
    for workers in (2, 4):
        assert np.array_equal(parallel_classes(synth.path, 16, 0x1000, workers), seq)


def test_a_workers_error_is_one_dump_error_and_no_worker_is_left(synth61, monkeypatch):
    real_window = scan.UserspaceClassification._window

    def failing(self, w0, w1, carry):
        if w0 == 3 * 4096:
            raise scan.DumpError("struct pages unreadable at the third window")
        return real_window(self, w0, w1, carry)

    monkeypatch.setattr(scan.UserspaceClassification, "_window", failing)
    with pytest.raises(scan.DumpError, match="unreadable at the third window"):
        parallel_classes(synth61.path, 31, 4096, 2)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # every worker was reaped


def test_a_worker_that_dies_is_a_dump_error(synth61, monkeypatch):
    def dying(self, w0, w1, carry):
        os._exit(3)

    monkeypatch.setattr(scan.UserspaceClassification, "_window", dying)
    with pytest.raises(scan.DumpError, match="a scan worker died"):
        parallel_classes(synth61.path, 31, 4096, 2)


def test_a_parallel_scan_stopped_early_leaves_no_worker(synth61):
    with source.open_source(synth61.path) as src:
        c = scan.UserspaceClassification(src, 31, window=1024, workers=2)
        it = c.windows()
        next(it)
        it.close()
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


def _logging_window(monkeypatch, log, slow_w0=None):
    """Make every worker note (pid, w0) of each window it classifies in ``log``."""
    real_window = scan.UserspaceClassification._window

    def window(self, w0, w1, carry):
        if w0 == slow_w0:
            time.sleep(0.5)
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {w0}\n")
        return real_window(self, w0, w1, carry)

    monkeypatch.setattr(scan.UserspaceClassification, "_window", window)


def _logged(log):
    return [tuple(map(int, line.split())) for line in log.read_text().splitlines()]


def test_a_slow_window_does_not_hold_up_the_other_worker(synth61, monkeypatch, tmp_path):
    """Workers take windows as they become free: while one is busy with window 0, the
    other classifies every window handed out after it."""
    log = tmp_path / "log"
    _logging_window(monkeypatch, log, slow_w0=0)
    one = parallel_classes(synth61.path, 31, 1024, 1)
    log.unlink()
    assert np.array_equal(parallel_classes(synth61.path, 31, 1024, 2), one)
    by_pid: dict[int, list[int]] = {}
    for pid, w0 in _logged(log):
        by_pid.setdefault(pid, []).append(w0)
    slow = next(pid for pid, w in by_pid.items() if 0 in w)
    (other,) = set(by_pid) - {slow}
    ahead = 1 + scan.AHEAD_WINDOWS  # the other worker's own plus those waiting
    assert by_pid[other][: ahead + 1] == [1024 * k for k in range(1, ahead + 2)]


def test_workers_run_at_most_a_few_windows_ahead_of_the_reader(synth61, monkeypatch, tmp_path):
    log = tmp_path / "log"
    _logging_window(monkeypatch, log)
    with source.open_source(synth61.path) as src:
        c = scan.UserspaceClassification(src, 31, window=512, workers=2)
        n = 0
        for i, _ in enumerate(c.windows()):
            time.sleep(0.02)  # a slow reader: the workers could run far ahead
            classified = [w for _, w in _logged(log)]
            assert max(classified) // 512 <= i + 2 + scan.AHEAD_WINDOWS
            n += 1
    assert n > 4 + scan.AHEAD_WINDOWS


def test_results_pipe_is_enlarged_where_allowed_and_works_where_not(monkeypatch):
    r, w = scan._result_pipe(1 << 20)
    try:
        limit = int(open("/proc/sys/fs/pipe-max-size").read())
        assert fcntl.fcntl(w, fcntl.F_GETPIPE_SZ) >= min(1 << 20, limit)
    finally:
        os.close(r)
        os.close(w)

    def refuse(fd, cmd, arg=0):
        raise PermissionError("pipe quota")

    monkeypatch.setattr(scan.fcntl, "fcntl", refuse)
    r, w = scan._result_pipe(1 << 20)
    os.write(w, b"still a pipe")
    assert os.read(r, 100) == b"still a pipe"
    os.close(r)
    os.close(w)


def test_results_that_come_early_wait_in_their_pipe_and_errors_are_read_apart():
    """The parent reads the header of a window that comes early and leaves its classes in
    the pipe; a worker that fails on a window (which the parent may classify again with the
    carry) goes on with its next one, both read whole from the same pipe."""
    a_r, a_w = os.pipe()
    b_r, b_w = os.pipe()
    msg = b"struct pages unreadable"
    classes = np.arange(100, dtype=np.uint8)
    os.write(a_w, scan._RESULT.pack(4, 0, 450, 7, classes.size) + classes.tobytes())
    os.write(b_w, scan._RESULT.pack(3, 1, 0, 0, len(msg)) + msg)
    os.write(b_w, scan._RESULT.pack(5, 0, 0, 0, classes.size) + classes.tobytes())
    results, heads = {a_r, b_r}, {}
    assert scan._take(results, heads, 3, 100, finished=False) == (0, 0, msg.decode(), None)
    assert heads[a_r][0] == 4 and fcntl.ioctl(a_r, termios.FIONREAD, b"    ") == struct.pack(
        "i", classes.size
    )  # window 4's classes still in its pipe
    end, cls, err, out = scan._take(results, heads, 4, 100, finished=False)
    assert (end, cls, err) == (450, 7, None) and np.array_equal(out, classes)
    assert scan._take(results, heads, 5, 100, finished=False)[3] is not None
    os.close(a_w)
    os.close(b_w)
    with pytest.raises(scan.DumpError, match="a scan worker died"):
        scan._take(results, heads, 6, 100, finished=False)
    for fd in results:
        os.close(fd)


def test_num_threads_sets_the_scan_workers_and_zero_picks_the_default():
    assert scan.workers_for(3) == 3
    cpus = len(os.sched_getaffinity(0))
    assert scan.workers_for(0) == max(1, min(scan.DEFAULT_WORKERS, cpus))
