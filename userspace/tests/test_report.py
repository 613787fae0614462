"""Stats counting, the makedumpfile-style text report and the stable JSON."""

import io
import json
import subprocess
import sys

import numpy as np
import pytest

from dumpfilter.pageclass import PageClass as C
from dumpfilter.report import Stats, print_report, write_json


class FakeClassification:
    scan = "userspace"
    max_pfn = 10
    nodata = np.zeros(0, np.int64)

    def windows(self, size=None):
        yield 0, np.array([C.HOLE, C.KEEP, C.KEEP, C.FREE, C.FREE], np.uint8)
        yield 5, np.array([C.CACHE, C.CACHE_PRIVATE, C.USER, C.HWPOISON, C.OFFLINE], np.uint8)


class _Src:
    """An input without PT_LOADs whose RAM is PFNs 1-9 (what FakeClassification says)."""

    page_size = 4096
    loads = ()
    ram_ranges = [(1, 10)]


SRC = _Src()


def test_each_page_counted_once_in_its_class():
    s = Stats.from_classification(FakeClassification(), 31, SRC)
    assert s.pages == {
        "total": 10,
        "ram": 9,
        "zero": 0,
        "cache": 1,
        "cache_private": 1,
        "user": 1,
        "free": 2,
        "hwpoison": 1,
        "offline": 1,
        "kept": 2,
    }
    s.add_zero(1)
    assert s.pages["zero"] == 1 and s.pages["kept"] == 1 and s.excluded == 8


def test_text_report_matches_makedumpfile_layout():
    s = Stats.from_classification(FakeClassification(), 31, SRC)
    buf = io.StringIO()
    print_report(s, buf)
    text = buf.getvalue()
    for line in (
        "Original pages  : 0x0000000000000009",
        "  Excluded pages   : 0x0000000000000007",
        "    Free pages              : 0x0000000000000002",
        "  Remaining pages  : 0x0000000000000002",
        "Memory Hole     : 0x0000000000000001",
        "Total pages     : 0x000000000000000a",
    ):
        assert line in text


def test_json_is_stable_and_written_atomically(tmp_path):
    s = Stats.from_classification(FakeClassification(), 16, SRC)
    s.seconds.update(prepare=0.25, scan=0.5, write=1.25, total=2.0)
    path = tmp_path / "stats.json"
    write_json(s, str(path))
    data = json.loads(path.read_text())
    assert data["dump_level"] == 16 and data["scan"] == "userspace"
    assert list(data["pages"]) == [
        "total",
        "ram",
        "zero",
        "cache",
        "cache_private",
        "user",
        "free",
        "hwpoison",
        "offline",
        "kept",
    ]
    assert data["seconds"] == {"prepare": 0.25, "scan": 0.5, "write": 1.25, "total": 2.0}
    assert [p.name for p in tmp_path.iterdir()] == ["stats.json"]


def test_a_page_a_load_holds_in_part_is_ram_in_a_class_like_the_1st_bitmap(synth_factory):
    """PFN 159 (RAM ends at 0x9fc00) holds data: RAM in the writer's 1st bitmap and in exactly
    one class of the report, so excluded + kept account for every RAM page."""
    from dumpfilter.diskdump import dumpable_windows
    from dumpfilter.scan import userspace_scan
    from dumpfilter.source import open_source

    synth = synth_factory(kernel="6.1", partial_end=True)
    with open_source(synth.path) as src:
        c = userspace_scan(src, 31)
        assert not len(c.nodata)
        st = Stats.from_classification(c, 31, src)
        bm1 = sum(int(ram.sum()) for _, ram, _ in dumpable_windows(src, c, 31))
    assert st.pages["ram"] == bm1 == sum(b - a for a, b in synth.ram)
    assert st.pages["ram"] == st.excluded + st.pages["kept"]


# ------------------------------------------------- makedumpfile's arithmetic, by hand


class Load:
    def __init__(self, paddr: int, memsz: int):
        self.paddr, self.memsz = paddr, memsz


class Src:
    page_size = 4096

    def __init__(self, loads=None, ram_ranges=()):
        self.loads = loads
        self.ram_ranges = list(ram_ranges)


def test_original_pages_sum_every_pt_load_so_a_repeated_range_counts_twice():
    from dumpfilter.report import original_pages

    src = Src(
        [
            Load(0x1000, 0x9EC00),  # pfn 1 .. 0x9f, the last page partly: 0x9f pages
            Load(0x100000, 0x1000000),  # 0x1000 pages
            Load(0x400000, 0x200000),  # kernel text again: 0x200 more
        ]
    )
    assert original_pages(src, 0x1100) == 0x9F + 0x1000 + 0x200
    assert original_pages(src, 0x800) == 0x9F + 0x700 + 0x200  # clipped to max_mapnr
    assert original_pages(Src(None, [(1, 0x9F), (0x100, 0x1100)]), 0x1100) == 0x9E + 0x1000


def test_elf_pages_are_counted_per_pt_load_as_makedumpfile_writes_each():
    from dumpfilter.report import elf_file_pages

    src = Src([Load(0x0, 0x100000 * 16), Load(0x400000, 0x200000)])  # pfn 0-0x1000, 0x400-0x600
    data = [(0, 0x300), (0x500, 0x900)]
    assert elf_file_pages(src, data) == 0x300 + 0x400 + 0x100  # the text range half held


def _report(**kw) -> tuple[str, dict[str, str]]:
    pages = dict(
        total=0x100, ram=0xF0, zero=1, cache=2, cache_private=3, user=4, free=5,
        hwpoison=6, offline=7, kept=0x30,
    )  # fmt: skip
    s = Stats(dump_level=31, scan="userspace", pages=pages, **kw)
    buf = io.StringIO()
    print_report(s, buf)
    out = {}
    for line in buf.getvalue().splitlines():
        if ":" in line:
            key, _, value = line.partition(":")
            out.setdefault(key.strip(), value.strip())
    return buf.getvalue(), out


def test_report_lines_use_makedumpfiles_arithmetic_and_ours_follow_under_other_names():
    text, r = _report(original=0x130, written_bytes=5000, uncounted_bytes=1000)
    excluded = 1 + 2 + 3 + 4 + 5 + 6 + 7
    assert r["Original pages"] == f"0x{0x130:016x}"
    assert r["Excluded pages"] == f"0x{excluded:016x}"
    assert r["Remaining pages"] == f"0x{0x130 - excluded:016x}"
    # 100 * 276 / 304 = 90.8: truncated, as makedumpfile's integer division
    assert "(The number of pages is reduced to 90%.)" in text
    assert r["Memory Hole"] == "0xffffffffffffffd0"  # 0x100 - 0x130 wraps as an unsigned
    assert r["Total pages"] == f"0x{0x100:016x}"
    assert r["Write bytes"] == "4000"
    assert r["RAM pages"] == f"0x{0xF0:016x}" and r["Dumped pages"] == f"0x{0x30:016x}"
    assert r["File bytes"] == "5000"
    assert "in ELF format" not in text


def test_elf_report_adds_the_in_elf_format_lines_and_their_percentage():
    text, _ = _report(original=0x100, elf_pages=0x40, written_bytes=100, uncounted_bytes=-56)
    lines = text.splitlines()
    i = lines.index(f"  Excluded pages   : 0x{28:016x}")
    assert lines[i + 1] == f"     in ELF format : 0x{0xC0:016x}"
    j = lines.index(f"  Remaining pages  : 0x{0x100 - 28:016x}")
    assert lines[j + 1] == f"     in ELF format : 0x{0x40:016x}"
    assert lines[j + 2] == "  (The number of pages is reduced to 25%.)"
    assert "Write bytes     : 156" in lines  # program headers counted twice


def test_split_write_bytes_is_zero_as_makedumpfiles_parent_counts_it():
    text, r = _report(original=0xF0, written_bytes=5000, split=True)
    assert r["Write bytes"] == "0" and r["File bytes"] == "5000"


def _sizes(report: str) -> tuple[str, str]:
    """The report's "Write bytes" (makedumpfile's count) and "File bytes" (ours)."""
    lines = report.splitlines()

    def get(key: str) -> str:
        return next(ln for ln in lines if ln.startswith(key)).split(":")[1].strip()

    return get("Write bytes"), get("File bytes")


@pytest.mark.parametrize(
    "args",
    [
        ["-d", "31", "-c"],
        ["-d", "1", "-z"],
        ["-E", "-d", "31"],
        ["-F", "-d", "31", "-l"],
        ["-d", "31"],  # uncompressed: the dry run only zero-tests, stores nothing
        ["-F", "-d", "1"],
    ],
)
def test_dry_run_reports_the_sizes_the_real_run_writes(synth_factory, tmp_path, args):
    from conftest import run_dumpfilter

    synth = synth_factory(kernel="6.1", ram=[(1, 0x9F), (0x100, 0x6000)])
    dry = run_dumpfilter("--dry-run", "--show-stats", *args, synth.path)
    if "-F" in args:
        with open(tmp_path / "flat", "wb") as f:
            real = subprocess.run(
                [sys.executable, "-m", "dumpfilter.cli", "--show-stats", *args, synth.path],
                stdout=f, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
        size, report = (tmp_path / "flat").stat().st_size, real.stderr
        dry_report = dry.stderr
    else:
        real = run_dumpfilter("--show-stats", *args, synth.path, tmp_path / "out")
        size, report = (tmp_path / "out").stat().st_size, real.stdout
        dry_report = dry.stdout
    assert dry.returncode == real.returncode == 0, dry.stderr + real.stderr
    assert _sizes(dry_report) == _sizes(report)
    assert int(_sizes(report)[1]) == size
