"""--split and --reassemble: a split set holds the same dump, and merges back to it.

makedumpfile 1.7.2 is the oracle both ways: it reassembles our split files, and we
reassemble its.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from conftest import MAKEDUMPFILE, needs_makedumpfile, run_dumpfilter

from dumpfilter.diskdump_in import KdumpInput
from dumpfilter.kdumpformat import Header, SubHeader
from dumpfilter.split import split_ranges


def _pages(path, lo: int = 0, hi: int | None = None):
    """RAM bitmap, dumpable bitmap and the contents of every dumpable page in [lo, hi)."""
    with KdumpInput(str(path)) as k:
        ram = k.is_ram(0, k.max_pfn).astype(bool)
        dump = k.is_dumpable(0, k.max_pfn).astype(bool)
        pfns = np.flatnonzero(dump[lo:hi]) + lo
        runs = np.split(pfns, np.flatnonzero(np.diff(pfns) != 1) + 1)  # consecutive PFNs
        data = {}
        for run in runs:
            for i in range(0, len(run), 4096):
                lo, n = int(run[i]), len(run[i : i + 4096])
                pages = k.read_pages(lo, n)
                data.update((lo + j, pages[j].tobytes()) for j in range(n))
    return ram, dump, data


def _split_header(path) -> tuple[int, int, int]:
    sub = SubHeader.unpack(path.read_bytes()[:8192], 4096)
    return sub.split, sub.start_pfn_64, sub.end_pfn_64


@pytest.fixture(scope="module")
def whole(synth61, tmp_path_factory):
    d = tmp_path_factory.mktemp("whole")
    r = run_dumpfilter("-c", "-d", "31", synth61.path, d / "whole")
    assert r.returncode == 0, r.stderr
    return d / "whole"


@pytest.fixture(scope="module")
def parts(synth61, tmp_path_factory):
    d = tmp_path_factory.mktemp("parts")
    paths = [d / f"part{i}" for i in range(3)]
    r = run_dumpfilter("--split", "-c", "-d", "31", synth61.path, *paths)
    assert r.returncode == 0, r.stderr
    return paths


def _raw(path) -> tuple[np.ndarray, np.ndarray, int]:
    """Both bitmaps (as bools per PFN) and the number of filled-in page descriptors, read
    from the bytes (our reader refuses a lone split part)."""
    d = path.read_bytes()
    hdr = Header.unpack(d)
    max_mapnr = hdr.max_mapnr
    off, half = hdr.bitmap_off, hdr.bitmap_len
    bm = [
        np.unpackbits(np.frombuffer(d, np.uint8, (max_mapnr + 7) // 8, o), bitorder="little")
        [:max_mapnr].astype(bool)
        for o in (off, off + half)
    ]  # fmt: skip
    n = int(bm[1].sum())
    sizes = np.frombuffer(d, "<u4", 6 * n, off + 2 * half).reshape(n, 6)[:, 2]
    return bm[0], bm[1], int(np.count_nonzero(sizes))


def test_split_parts_cover_the_dump_in_ranges_of_equal_dumpable_pages(whole, parts):
    ram, dump, _ = _raw(whole)
    ranges = [_split_header(p) for p in parts]
    assert [s for s, _, _ in ranges] == [1, 1, 1]
    assert ranges[0][1] == 0 and ranges[-1][2] == len(ram)
    assert all(a[2] == b[1] for a, b in zip(ranges, ranges[1:], strict=False))
    counts = []
    for p, (_, start, end) in zip(parts, ranges, strict=True):
        p_ram, p_dump, filled = _raw(p)
        assert np.array_equal(p_ram, ram) and np.array_equal(p_dump, dump)  # the whole dump's
        counts.append(int(dump[start:end].sum()))
        assert filled == counts[-1]  # descriptors of its own pages only
    assert sum(counts) == int(dump.sum())
    assert max(counts) - min(counts) <= 16  # each cut rounded up to a multiple of 8 PFNs


def test_our_reassembly_gives_back_the_unsplit_dump(whole, parts, tmp_path):
    out = tmp_path / "merged"
    r = run_dumpfilter("--reassemble", parts[2], parts[0], parts[1], out)  # any order
    assert r.returncode == 0, r.stderr
    assert _split_header(out) == (0, 0, 0)
    w, m = _pages(whole), _pages(out)
    assert all(np.array_equal(a, b) for a, b in zip(w[:2], m[:2], strict=True))
    assert w[2] == m[2]


@needs_makedumpfile()
def test_makedumpfile_reassembles_our_split_files(whole, parts, tmp_path):
    out = tmp_path / "merged"
    subprocess.run(
        [MAKEDUMPFILE, "--reassemble", *map(str, parts), str(out)], check=True, capture_output=True
    )
    assert _pages(out)[2] == _pages(whole)[2]


@needs_makedumpfile()
def test_we_reassemble_makedumpfiles_split_files(synth61, tmp_path):
    ref, mdf_parts = tmp_path / "ref", [tmp_path / f"m{i}" for i in range(3)]
    base = [MAKEDUMPFILE, "-c", "-d", "31"]
    subprocess.run([*base, synth61.path, str(ref)], check=True, capture_output=True)
    subprocess.run(
        [*base, "--splitblock-size", "16384", "--split", synth61.path, *map(str, mdf_parts)],
        check=True,
        capture_output=True,
    )  # 16 MiB split blocks: three real ranges (the default 1 GiB puts all in the first)
    out = tmp_path / "merged"
    r = run_dumpfilter("--reassemble", *mdf_parts, out)
    assert r.returncode == 0, r.stderr
    w, m = _pages(ref), _pages(out)
    assert np.array_equal(w[1], m[1]) and w[2] == m[2]


def test_a_missing_part_or_a_plain_dump_is_one_error_line(whole, parts, tmp_path):
    for args, msg in (
        ([parts[0], parts[2]], "missing"),
        ([parts[0], parts[1]], "do not cover"),
        ([parts[0], parts[1], parts[1], parts[2]], "overlapping"),
        ([whole, parts[1]], "not a --split file"),
    ):
        out = tmp_path / "merged"
        r = run_dumpfilter("--reassemble", *args, out)
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, args
        assert msg in r.stderr and not out.exists()


def test_a_truncated_part_is_one_error_line_and_no_output(parts, tmp_path):
    cut = tmp_path / "cut"
    cut.write_bytes(parts[1].read_bytes()[:-5000])
    out = tmp_path / "merged"
    r = run_dumpfilter("--reassemble", parts[0], cut, parts[2], out)
    assert r.returncode == 1 and "truncated" in r.stderr and not out.exists()
    assert len(r.stderr.strip().splitlines()) == 1


def test_a_split_part_is_refused_as_input(parts, tmp_path):
    r = run_dumpfilter("-d", "31", parts[1], tmp_path / "out")
    assert r.returncode == 1 and "--reassemble it first" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_split_usage_errors_are_one_line(synth61, tmp_path):
    for args in (
        ["--split", "-c", synth61.path, tmp_path / "a"],
        ["--split", "-E", synth61.path, tmp_path / "a", tmp_path / "b"],
        ["--reassemble", tmp_path / "a", tmp_path / "b"],
    ):
        r = run_dumpfilter(*args)
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, args


def test_ranges_hold_equal_dumpable_counts_and_cover_everything():
    rng = np.random.default_rng(3)
    dump = rng.random(100_000) < 0.3
    dump[40_000:70_000] = False  # a long gap: a cut must not land in the middle of nothing

    def windows():
        for s in range(0, len(dump), 4096):
            yield s, dump[s : s + 4096]

    for n in (2, 3, 7):
        ranges = split_ranges(windows, len(dump), n)
        assert ranges[0][0] == 0 and ranges[-1][1] == len(dump)
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
        assert all(s % 8 == 0 for s, _ in ranges)
        counts = [int(dump[s:e].sum()) for s, e in ranges]
        assert max(counts) - min(counts) <= 16
    empty = split_ranges(lambda: iter([(0, np.zeros(1000, bool))]), 1000, 4)
    assert empty == [(0, 256), (256, 504), (504, 752), (752, 1000)]  # nothing dumpable: by PFN
