"""ELF vmcore input: segments, notes, windowed mmap reads, holes are errors."""

import os
import shutil

import numpy as np
import pytest

from dumpfilter import elfcore
from dumpfilter.elfcore import ElfVmcore
from dumpfilter.errors import DumpError


def test_segments_notes_and_ram(synth61):
    with ElfVmcore(synth61.path) as src:
        assert src.kind == "elf" and src.page_size == 4096
        assert src.ram_ranges == synth61.ram and src.max_pfn == synth61.max_pfn
        assert src.nr_cpus == synth61.nr_cpus
        assert src.vmcoreinfo.osrelease == synth61.family.osrelease
        assert b"VMCOREINFO" in src.notes and len(src.loads) == 1 + len(synth61.ram)
        assert src.is_dumpable(0, 10) is None


def test_pages_read_back_as_placed(synth_factory):
    s = synth_factory(kernel="6.12", content="mixed")
    with ElfVmcore(s.path) as src:
        for pfn in (1, 0x100, 0x3000, int(s.image_pfns[0]) + 5, s.max_pfn - 1):
            assert src.read_pages(pfn, 1).tobytes() == s.page(pfn)
        many = src.read_pages(0x4000, 300)
        assert np.array_equal(many, s.pages(0x4000, 300))


def test_reads_are_views_of_the_mapping(synth61):
    with ElfVmcore(synth61.path) as src:
        a = src.read_pages(0x200, 16)
        assert not a.flags.owndata  # a view, no copy


def test_reads_across_mmap_windows_are_assembled(synth61, monkeypatch):
    monkeypatch.setattr(elfcore, "WINDOW", 1 << 20)
    with ElfVmcore(synth61.path) as src:
        got = src.read_pages(0x1F0, 64)  # crosses several 1 MiB windows
        assert np.array_equal(got, synth61.pages(0x1F0, 64))


def test_limited_windows_unmap_the_oldest_and_views_stay_valid(synth61, monkeypatch):
    monkeypatch.setattr(elfcore, "WINDOW", 1 << 20)
    with ElfVmcore(synth61.path) as src:
        ps = src.page_size
        pfns = [0x200 + 256 * i for i in range(6)]  # one page in each of six 1 MiB windows
        views = [src.read_pages(p, 1) for p in pfns]
        assert len(src._windows) == elfcore.MAX_WINDOWS
        src.limit_windows()
        assert len(src._windows) == elfcore.DATA_WINDOWS
        for p in pfns:  # reading on keeps at most DATA_WINDOWS mapped
            src.read_pages(p + 1, 1)
            assert len(src._windows) <= elfcore.DATA_WINDOWS
        for p, v in zip(pfns, views, strict=True):  # evicted windows live on in their views
            assert v.tobytes() == synth61.page(p) and v.shape == (1, ps)


def test_released_windows_are_unmapped_and_views_stay_valid(synth61, monkeypatch):
    monkeypatch.setattr(elfcore, "WINDOW", 1 << 20)
    with ElfVmcore(synth61.path) as src:
        views = [src.read_pages(0x200 + 256 * i, 1) for i in range(3)]  # three 1 MiB windows
        assert len(src._windows) == 3
        src.release_windows()
        assert not src._windows
        for i, v in enumerate(views):  # a released window lives on in its views
            assert v.tobytes() == synth61.page(0x200 + 256 * i)


def test_span_views_hold_whole_requests_up_to_the_segment_end(synth61, monkeypatch):
    monkeypatch.setattr(elfcore, "SPAN", 1 << 20)
    with ElfVmcore(synth61.path) as src:
        ps = src.page_size
        a, b = next((a, b) for a, b in synth61.ram if b - a > 512)
        v = src.span_array(a * ps, 16 * ps)
        span = src._span
        assert span[1] >= 1 << 20  # SPAN mapped from there, for the reads that follow
        assert v.tobytes() == synth61.pages(a, 16).tobytes() and not v.flags.owndata
        w = src.span_array((a + 100) * ps, ps)  # inside the span: the same mapping
        assert w.tobytes() == synth61.page(a + 100) and src._span is span
        big = src.span_array(a * ps, 300 * ps)  # more than SPAN: a span of its own
        assert len(big) == 300 * ps and big[-ps:].tobytes() == synth61.page(a + 299)
        end = src.span_array((b - 1) * ps, 4 * ps)  # never into the next segment's data
        assert len(end) == ps and end.tobytes() == synth61.page(b - 1)
        assert len(src.span_array(0xA0000, ps)) == 0  # a hole: nothing to view


def test_a_read_into_a_hole_is_an_error(synth61):
    with ElfVmcore(synth61.path) as src:
        with pytest.raises(DumpError, match="not in the dump"):
            src.read_phys(0xA0000, 8)
        with pytest.raises(DumpError, match="not in the dump"):
            src.read_pages(0x9E, 4)  # runs from RAM into the legacy hole


def test_truncated_copy_is_detected(synth61, tmp_path):
    cut = tmp_path / "cut"
    shutil.copyfile(synth61.path, cut)
    os.truncate(cut, os.path.getsize(cut) - 4096 * 10)
    with pytest.raises(DumpError, match="truncated"):
        ElfVmcore(str(cut))


def test_notes_parser_rejects_a_note_running_past_the_segment():
    bad = (5).to_bytes(4, "little") + (100).to_bytes(4, "little") + b"\0\0\0\0" + b"CORE\0\0\0\0"
    with pytest.raises(DumpError, match="malformed"):
        elfcore.parse_notes(bad)
