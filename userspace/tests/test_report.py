"""Stats counting, the makedumpfile-style text report and the stable JSON."""

import io
import json

import numpy as np

from dumpfilter.pageclass import PageClass as C
from dumpfilter.report import Stats, print_report, write_json


class FakeClassification:
    scan = "userspace"
    max_pfn = 10

    def windows(self, size=None):
        yield 0, np.array([C.HOLE, C.KEEP, C.KEEP, C.FREE, C.FREE], np.uint8)
        yield 5, np.array([C.CACHE, C.CACHE_PRIVATE, C.USER, C.HWPOISON, C.OFFLINE], np.uint8)


def test_each_page_counted_once_in_its_class():
    s = Stats.from_classification(FakeClassification(), 31)
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
    s = Stats.from_classification(FakeClassification(), 31)
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
    s = Stats.from_classification(FakeClassification(), 16)
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


def test_partial_page_at_a_load_end_counts_as_ram_like_the_1st_bitmap(synth_factory):
    """PFN 159 (RAM ends at 0x9fc00) has no full data: a HOLE class, but RAM in the writer's
    1st bitmap (makedumpfile's ``exclude_nodata_pages`` clears only the 2nd)."""
    from dumpfilter.diskdump import dumpable_windows
    from dumpfilter.scan import userspace_scan
    from dumpfilter.source import open_source

    synth = synth_factory(kernel="6.1", partial_end=True)
    with open_source(synth.path) as src:
        c = userspace_scan(src, 31)
        assert c.nodata == [synth.ram[0][1] - 1]
        st = Stats.from_classification(c, 31)
        bm1 = sum(int(ram.sum()) for _, ram, _ in dumpable_windows(src, c, 31))
    assert st.pages["ram"] == bm1 == sum(b - a for a, b in synth.ram)
    counted = st.excluded + st.pages["kept"]
    assert st.pages["ram"] - counted == 1  # the no-data page is RAM in no class
