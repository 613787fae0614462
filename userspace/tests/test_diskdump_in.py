"""kdump-compressed input (re-filtering): makedumpfile's output read back and re-scanned."""

from __future__ import annotations

import subprocess
import sys

import dumpdamage
import numpy as np
import pytest
from conftest import MAKEDUMPFILE, run_dumpfilter

from dumpfilter import scan, source
from dumpfilter.diskdump_in import KdumpInput
from dumpfilter.errors import DumpError
from dumpfilter.pageclass import PageClass

CMD = [sys.executable, "-m", "dumpfilter.cli"]
needs_mdf = pytest.mark.skipif(MAKEDUMPFILE is None, reason="makedumpfile not installed")


def _mdf(synth, out, *args):
    r = subprocess.run(
        [MAKEDUMPFILE, *args, "--message-level", "4", synth.path, str(out)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def s61(synth_factory):
    return synth_factory(kernel="6.1", image_trap=False, content="mixed")


@needs_mdf
@pytest.mark.parametrize("codec", ["-c", "-l", "-p", "-z"])
def test_pages_read_back_from_each_codec(s61, tmp_path, codec):
    out = _mdf(s61, tmp_path / "d", codec, "-d", "0")
    with source.open_source(str(out)) as src:
        assert isinstance(src, KdumpInput) and src.kind == "kdump"
        assert src.ram_ranges == s61.ram and src.max_pfn == s61.max_pfn
        assert src.nr_cpus == s61.nr_cpus and src.vmcoreinfo.osrelease == s61.family.osrelease
        for pfn in (1, 0x100, 0x2345, s61.image_pfns[0] + 7, s61.max_pfn - 1):
            assert src.read_pages(pfn, 1).tobytes() == s61.page(pfn)
        with pytest.raises(DumpError, match="hole"):
            src.read_pages(0xA0, 1)


@needs_mdf
def test_excluded_pages_read_as_zero_and_are_not_dumpable(s61, tmp_path):
    out = _mdf(s61, tmp_path / "d16", "-c", "-d", "16")
    free = np.flatnonzero(s61.expected_classes(16) == PageClass.FREE)
    with KdumpInput(str(out)) as src:
        p = int(free[len(free) // 2])
        assert not src.is_dumpable(p, p + 1)[0]
        assert not src.read_pages(p, 1).any()
        kept = np.flatnonzero(s61.expected_classes(16) == PageClass.KEEP)
        q = int(kept[len(kept) // 3])
        assert src.is_dumpable(q, q + 1)[0] and src.read_pages(q, 1).tobytes() == s61.page(q)


@needs_mdf
@pytest.mark.parametrize("first", [1, 16])
def test_refiltering_classifies_like_the_original(s61, tmp_path, first):
    out = _mdf(s61, tmp_path / "d", "-l", "-d", str(first))
    with source.open_source(str(out)) as src:
        c = scan.userspace_scan(src, 31)
        got = np.concatenate([a for _, a in c.windows()])
    assert np.array_equal(got, s61.expected_classes(31))


@needs_mdf
def test_refilter_report_through_the_cli(s61, tmp_path):
    out = _mdf(s61, tmp_path / "d", "-c", "-d", "1")
    r = run_dumpfilter("--dry-run", "--show-stats", "-d", "31", out)
    assert r.returncode == 0, r.stderr
    free = int((s61.expected_classes(31) == PageClass.FREE).sum())
    assert f"Free pages              : 0x{free:016x}" in r.stdout


@needs_mdf
def test_truncated_kdump_file_is_an_error(s61, tmp_path):
    out = _mdf(s61, tmp_path / "d", "-c", "-d", "31")
    with open(out, "r+b") as f:
        f.truncate(3 * 4096 + 100)
    r = run_dumpfilter("--dry-run", "-d", "31", out)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1 and "truncated" in r.stderr


# --- values of the header, sub header and descriptors are bounded by the file ------------------


@pytest.fixture(scope="module")
def ours(synth_factory, tmp_path_factory):
    """A kdump-compressed file written by dumpfilter from a small vmcore."""
    s = synth_factory(kernel="6.1", ram=[(1, 0x9F), (0x100, 0x6000)])
    out = tmp_path_factory.mktemp("kdump") / "d31"
    r = run_dumpfilter("-c", "-d", "31", s.path, out)
    assert r.returncode == 0, r.stderr
    return out


def _damaged(ours, tmp_path, field, value):
    path = tmp_path / "d"
    path.write_bytes(ours.read_bytes())
    dumpdamage.set_kdump(path, field, value)
    return path


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("size_note", 1 << 63, "size_note"),
        ("size_note", 1 << 40, "size_note"),
        ("offset_note", -4096, "offset_note"),
        ("block_size", 8192, "block_size=8192"),
        ("block_size", 0, "block_size=0"),
        ("sub_hdr_size", 1 << 30, "sub_hdr_size"),
        ("bitmap_blocks", (1 << 32) - 2, "truncated"),
        ("max_mapnr_64", (1 << 64) - 1, "max_mapnr"),
    ],
)
def test_header_values_beyond_the_file_are_named(ours, tmp_path, field, value, message):
    with pytest.raises(DumpError, match=message) as e:
        KdumpInput(str(_damaged(ours, tmp_path, field, value)))
    assert "\n" not in str(e.value)


def test_a_descriptor_pointing_outside_the_file_is_an_error_when_read(ours, tmp_path):
    path = tmp_path / "d"
    path.write_bytes(ours.read_bytes())
    desc = dumpdamage.kdump_layout(path)["desc"]
    dumpdamage.write_field(path, desc, "<q", (1 << 63) - 1)  # the first kept page's data
    r = run_dumpfilter("-c", "-d", "31", path, tmp_path / "out")
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
    assert "corrupt page descriptor" in r.stderr and not (tmp_path / "out").exists()


def _status(path) -> int:
    return dumpdamage.read_field(path, *dumpdamage.KDUMP_HEADER["status"])


@pytest.mark.parametrize("fmt", [[], ["-E"]])
def test_an_input_marked_incomplete_gives_an_output_marked_incomplete(ours, tmp_path, fmt):
    cut = _damaged(ours, tmp_path, "status", _status(ours) | 0x8)
    lost = KdumpInput(str(ours))
    n = lost.nr_dumpable
    lost.close()
    # the last descriptors never made it, as -L leaves them (the dump's metadata, page
    # tables and struct pages, lies lower: it is still there)
    cut_at = n - 32
    desc = dumpdamage.kdump_layout(cut)["desc"]
    with open(cut, "r+b") as f:
        f.seek(desc + 24 * cut_at)
        f.write(bytes(24 * (n - cut_at)))
    with KdumpInput(str(cut)) as src:
        assert src.incomplete
        whole = KdumpInput(str(ours))
        kept = np.flatnonzero(whole.is_dumpable(0, whole.max_pfn))
        whole.close()
        now = src.is_dumpable(0, src.max_pfn)
        assert now[kept[:cut_at]].all() and not now[kept[cut_at:]].any()
    out = tmp_path / "out"
    r = run_dumpfilter(*fmt, "-d", "31", cut, out)
    assert r.returncode == 0, r.stderr
    if fmt:
        assert dumpdamage.read_field(out, *dumpdamage.EHDR["e_flags"]) & 1
    else:
        assert _status(out) & 0x8
    again = tmp_path / "again"  # and an ELF marked so, re-filtered, keeps the mark as well
    r = run_dumpfilter("-c", "-d", "31", out, again)
    assert r.returncode == 0, r.stderr
    assert _status(again) & 0x8


@pytest.mark.parametrize("value", [b"45", b"-1", b"00"])
def test_section_size_bits_in_a_kdump_inputs_notes_is_checked_quickly(ours, tmp_path, value):
    path = tmp_path / "d"
    data = bytearray(ours.read_bytes())
    key = b"NUMBER(SECTION_SIZE_BITS)=27\n"
    at = data.index(key) + len(key) - 3
    data[at : at + 2] = value
    path.write_bytes(bytes(data))
    r = subprocess.run(
        [*CMD, "--dry-run", "-d", "31", str(path)], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
    assert "SECTION_SIZE_BITS" in r.stderr


def test_an_input_with_vmcoreinfo_but_no_notes_copy_passes_its_vmcoreinfo_on(ours, tmp_path):
    # version 3 files carry VMCOREINFO alone (offset_vmcoreinfo), no copy of the PT_NOTE
    path = _damaged(ours, tmp_path, "size_note", 0)
    for fmt in ([], ["-E"]):
        out = tmp_path / f"out{len(fmt)}"
        r = run_dumpfilter(*fmt, "-d", "31", path, out)
        assert r.returncode == 0, r.stderr
        r = run_dumpfilter("--dry-run", "-d", "31", out)
        assert r.returncode == 0, r.stderr
