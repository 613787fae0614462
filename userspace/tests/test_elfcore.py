"""ELF vmcore input: segments, notes, windowed mmap reads, holes are errors."""

import os
import shutil

import dumpdamage
import numpy as np
import pytest

from dumpfilter import elfcore, elfnotes
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
        elfnotes.parse_notes(bad)


# --- values from the dump are bounded before they are used ------------------------------------


@pytest.fixture(scope="module")
def small(synth_factory):
    """A 96 MiB 6.1 vmcore: cheap to copy and damage."""
    return synth_factory(kernel="6.1", ram=[(1, 0x9F), (0x100, 0x6000)])


def _damaged(small, tmp_path, damage) -> str:
    path = str(tmp_path / "vmcore")
    dumpdamage.sparse_copy(small.path, path)
    damage(path)
    return path


def _load(path, i=0):
    return [ph for ph in dumpdamage.phdrs(path) if ph["p_type"] == dumpdamage.PT_LOAD][i]


def _note(path):
    return dumpdamage.first(path, dumpdamage.PT_NOTE)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: dumpdamage.set_ehdr(p, "e_phoff", (1 << 64) - 64), "program header table"),
        (lambda p: dumpdamage.set_ehdr(p, "e_phnum", 0xFFFF), "no section header"),
        (lambda p: dumpdamage.set_phdr(p, _note(p), "p_offset", (1 << 64) - 100), "PT_NOTE 0"),
        (lambda p: dumpdamage.set_phdr(p, _note(p), "p_filesz", 1 << 40), "p_filesz=0x"),
        (lambda p: dumpdamage.set_phdr(p, _load(p), "p_memsz", (1 << 64) - 1), "p_memsz"),
        (lambda p: dumpdamage.set_phdr(p, _load(p), "p_paddr", (1 << 64) - 4096), "p_paddr"),
        (lambda p: dumpdamage.set_phdr(p, _load(p, 1), "p_offset", 1 << 63), "truncated"),
    ],
    ids=["e_phoff", "xnum-without-shdr", "note-offset", "note-size", "memsz", "paddr", "offset"],
)
def test_header_values_beyond_the_file_or_the_address_space_are_named(
    small, tmp_path, damage, message
):
    path = _damaged(small, tmp_path, damage)
    with pytest.raises(DumpError, match=message) as e:
        ElfVmcore(path)
    assert "\n" not in str(e.value)


def _xnum(small, tmp_path, nulls: int, sh_info: int | None = None) -> str:
    """The vmcore with its program headers moved behind ``nulls`` PT_NULL entries, counted
    through PN_XNUM and section header 0 (``sh_info`` overrides the count it holds)."""
    path = str(tmp_path / "xnum")
    dumpdamage.sparse_copy(small.path, path)
    hdrs = dumpdamage.phdrs(path)
    with open(path, "rb") as f:
        raw = [(f.seek(ph["at"]), f.read(56))[1] for ph in hdrs]
    table = raw[:1] + [bytes(56)] * nulls + raw[1:]  # PT_NOTE first, the PT_LOADs last
    at = -(-os.path.getsize(path) // 4096) * 4096
    shoff = at + 56 * len(table)
    shdr = bytearray(64)
    shdr[44:48] = (len(table) if sh_info is None else sh_info).to_bytes(4, "little")
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(b"".join(table) + shdr)
    for field, value in (("e_phoff", at), ("e_phnum", 0xFFFF), ("e_shoff", shoff)):
        dumpdamage.set_ehdr(path, field, value)
    dumpdamage.set_ehdr(path, "e_shentsize", 64)
    dumpdamage.set_ehdr(path, "e_shnum", 1)
    return path


def test_pn_xnum_reads_every_program_header_past_65535(small, tmp_path):
    with ElfVmcore(small.path) as src:
        want = (src.loads, src.ram_ranges)
    with ElfVmcore(_xnum(small, tmp_path, 70_000)) as src:
        assert (src.loads, src.ram_ranges) == want


def test_pn_xnum_with_a_count_below_0xffff_is_refused(small, tmp_path):
    with pytest.raises(DumpError, match="sh_info=3 "):
        ElfVmcore(_xnum(small, tmp_path, 10, sh_info=3))


def test_incomplete_mark_of_the_input_is_seen(small, tmp_path):
    path = _damaged(small, tmp_path, lambda p: dumpdamage.set_ehdr(p, "e_flags", 1))
    with ElfVmcore(path) as src:
        assert src.incomplete
    with ElfVmcore(small.path) as src:
        assert not src.incomplete


def test_ram_beyond_max_physmem_bits_is_refused(small, tmp_path):
    # 2^51 is a 52-bit address, but this 4-level kernel addresses 46 bits of RAM
    path = _damaged(
        small, tmp_path, lambda p: dumpdamage.set_phdr(p, _load(p, 1), "p_paddr", 1 << 51)
    )
    with pytest.raises(DumpError, match=r"MAX_PHYSMEM_BITS\)=46"):
        ElfVmcore(path)
