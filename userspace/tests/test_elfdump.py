"""ELF writer (-E): makedumpfile 1.7.2's segmentation (runs of >= 256 excluded pages become
p_memsz > p_filesz tails, a PT_LOAD's excluded tail is dropped), PT_NOTE first and verbatim, and
the same page data as makedumpfile writes."""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import MAKEDUMPFILE
from fakes import (
    FakeClassification,
    FakeSource,
    FakeStats,
    Kdump,
    build_vmcore,
    cached_vmcores,
)

from dumpfilter import elfcore, elfdump
from dumpfilter import write as w
from dumpfilter.contracts import WriteOptions


def phdrs(path: Path) -> tuple[bytes, list[tuple]]:
    raw = path.read_bytes()
    (phoff,) = struct.unpack_from("<Q", raw, 32)
    (phnum,) = struct.unpack_from("<H", raw, 56)
    out = [struct.unpack_from("<IIQQQQQQ", raw, phoff + 56 * i) for i in range(phnum)]
    return raw, out


def _ours(synth, out: Path, level: int, **kw) -> None:
    with FakeSource(Path(synth.path)) as src:
        w.write_dump(
            src,
            FakeClassification(synth.expected_classes(level)),
            WriteOptions(dumpfile=str(out), dump_level=level, elf=True, **kw),
            FakeStats(),
        )


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    import synthvmcore

    p = tmp_path_factory.mktemp("synth") / "vmcore"
    return synthvmcore.make_vmcore(p, image_trap=False, seed=3, ram=[(1, 0x9F), (0x100, 0x6000)])


@pytest.mark.skipif(MAKEDUMPFILE is None, reason="makedumpfile not installed")
@pytest.mark.parametrize("level", [31, 1, 0])
def test_segments_and_data_match_makedumpfile(synth, tmp_path, level):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    _ours(synth, ours, level, num_threads=2)
    r = subprocess.run(
        [MAKEDUMPFILE, "-E", "-d", str(level), synth.path, str(theirs)],
        capture_output=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    a_raw, a = phdrs(ours)
    b_raw, b = phdrs(theirs)
    assert a[0][0] == b[0][0] == elfdump.PT_NOTE
    note = lambda raw, ph: raw[ph[2] : ph[2] + ph[5]]  # noqa: E731
    assert note(a_raw, a[0]) == note(b_raw, b[0])
    # makedumpfile also writes the kernel-text PT_LOAD (a second copy of RAM pages); we don't.
    b = [p for p in b if not (p[0] == elfdump.PT_LOAD and p[3] >= 0xFFFFFFFF80000000)]
    assert [p[3:7] for p in a[1:]] == [p[3:7] for p in b[1:]]
    for pa, pb in zip(a[1:], b[1:], strict=True):
        assert a_raw[pa[2] : pa[2] + pa[5]] == b_raw[pb[2] : pb[2] + pb[5]]
    assert not struct.unpack_from("<I", a_raw, 48)[0] & elfcore.ELF_INCOMPLETE


def test_gap_finder_carries_runs_across_windows():
    keep = np.ones(3000, bool)
    keep[100:400] = False  # long: a gap
    keep[1000:1200] = False  # short: written
    keep[1990:2300] = False  # long, crosses window borders
    keep[2900:] = False  # tail: dropped whatever its length
    g = elfdump._GapFinder()
    gaps = []
    for s in range(0, 3000, 250):
        gaps += g.feed(s, keep[s : s + 250])
    gaps += g.finish(3000)
    assert gaps == [(100, 400), (1990, 2300), (2900, 3000)]


def test_each_long_excluded_run_starts_a_new_segment(tmp_path):

    ranges = [(0, 256 * 2 * 70)]
    vm = tmp_path / "vm"
    build_vmcore(vm, ranges)
    classes = np.zeros(ranges[0][1], np.uint8)
    classes.reshape(-1, 512)[:, 256:] = 4  # 256 kept, 256 free, 70 times
    out = tmp_path / "out"
    with FakeSource(vm) as src:
        w.write_dump(
            src,
            FakeClassification(classes),
            WriteOptions(dumpfile=str(out), dump_level=16, elf=True),
            FakeStats(),
        )
    _, ph = phdrs(out)
    assert len(ph) == 1 + 70
    assert all(p[5] == 256 * 4096 and p[6] == 512 * 4096 for p in ph[1:])


def test_flattened_elf_reassembles_to_the_direct_elf(synth, tmp_path):
    from dumpfilter import flat

    direct, stream, rebuilt = tmp_path / "direct", tmp_path / "stream", tmp_path / "rebuilt"
    _ours(synth, direct, 31)
    with open(stream, "wb") as f:
        saved = os.dup(1)
        os.dup2(f.fileno(), 1)
        try:
            _ours(synth, None, 31, flatten=True)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
    with open(stream, "rb") as f:
        flat.reassemble(f, str(rebuilt))
    assert rebuilt.read_bytes() == direct.read_bytes()


class _ZeroSource:
    """A huge sparse machine: every page reads as zeros (no file behind it)."""

    kind = "elf"
    path = ""  # no file behind it
    page_size = 4096
    nr_cpus = 1
    notes = b""
    loads = ()
    ehdr = None
    incomplete = False

    def __init__(self, npages: int):
        self.ram_ranges = [(0, npages)]
        self.max_pfn = npages
        self._zeros = np.zeros((1024, 4096), np.uint8)

    def read_pages(self, pfn: int, count: int) -> np.ndarray:
        return self._zeros[:count]

    def is_dumpable(self, a, b):
        return None


def test_more_than_pn_xnum_segments_use_section_zero(tmp_path):
    """>= 0xffff program headers: e_phnum = PN_XNUM, the real count in section 0's sh_info."""
    nseg = 0xFFFF
    period = 257  # one kept page, then a run of 256 excluded pages
    classes = np.full(nseg * period, 4, np.uint8)
    classes[::period] = 0
    out = tmp_path / "out"
    w.write_dump(
        _ZeroSource(len(classes)),
        FakeClassification(classes),
        WriteOptions(dumpfile=str(out), dump_level=16, elf=True),
        FakeStats(),
    )
    raw = out.read_bytes()
    phoff, shoff = struct.unpack_from("<QQ", raw, 32)
    phnum, shentsize, shnum = struct.unpack_from("<HHH", raw, 56)
    assert (phnum, shnum, shentsize) == (0xFFFF, 1, 64)
    sh_info = struct.unpack_from("<I", raw, shoff + 44)[0]
    assert sh_info == nseg + 1  # PT_NOTE + one PT_LOAD per kept page
    last = struct.unpack_from("<IIQQQQQQ", raw, phoff + 56 * nseg)
    assert last[0] == elfdump.PT_LOAD and last[4] == (nseg - 1) * period * 4096
    assert last[5] == 4096 and last[6] == period * 4096
    r = subprocess.run(["readelf", "-lW", str(out)], capture_output=True, text=True)
    if r.returncode == 0:
        assert f"There are {nseg + 1} program headers" in r.stdout


def _cycles():
    return [v.parent for v in cached_vmcores(with_makedumpfile=True)]


@pytest.mark.realdump
@pytest.mark.skipif(MAKEDUMPFILE is None or not _cycles(), reason="no real dump cached")
@pytest.mark.parametrize("cycle", _cycles(), ids=lambda d: d.name)
def test_real_dump_elf_matches_makedumpfile_given_its_verdicts(cycle, tmp_path):
    """Real Debian kdump (PT_LOAD ending mid-page at 0x9fc00, kernel-text PT_LOAD): same
    segments and data as makedumpfile -E, apart from its second copy of the kernel text."""

    from dumpfilter.elfcore import ElfVmcore

    ref = Kdump((cycle / "mdf31.kdump").read_bytes())
    ram = np.unpackbits(np.frombuffer(ref.bitmap1, np.uint8), bitorder="little")
    ram = ram[: ref.max_mapnr].astype(bool)
    classes = np.where(ram, np.where(ref.dumpable, 0, 4), 7).astype(np.uint8)
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    with ElfVmcore(str(cycle / "vmcore")) as src:
        w.write_dump(
            src,
            FakeClassification(classes),
            WriteOptions(dumpfile=str(ours), dump_level=31, elf=True),
            FakeStats(),
        )
    r = subprocess.run(
        [MAKEDUMPFILE, "-E", "-d", "31", str(cycle / "vmcore"), str(theirs)],
        capture_output=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    a_raw, a = phdrs(ours)
    b_raw, b = phdrs(theirs)
    b = [p for p in b if not (p[0] == elfdump.PT_LOAD and p[3] >= 0xFFFFFFFF80000000)]
    assert [p[3:7] for p in a[1:]] == [p[3:7] for p in b[1:]]
    for pa, pb in zip(a[1:], b[1:], strict=True):
        assert a_raw[pa[2] : pa[2] + pa[5]] == b_raw[pb[2] : pb[2] + pb[5]]


def test_second_pass_reuses_the_first_pass_zero_verdicts(synth, tmp_path, monkeypatch):
    """The header needs the segment count before any data, so the page data is walked twice;
    zero pages are tested in the first walk only, and the dump is the same as without reuse."""
    from dumpfilter.compress import Encoder

    calls = []
    orig = Encoder.encode
    monkeypatch.setattr(Encoder, "encode", lambda self, b: calls.append(1) or orig(self, b))
    _ours(synth, tmp_path / "a", 31)
    once = len(calls)
    assert once > 0

    # Without reuse, the second walk repeats every zero test: same bytes, twice the calls.
    real = elfdump._segments
    monkeypatch.setattr(
        elfdump, "_segments", lambda s, c, d, e, zeros=None, runs=None: real(s, c, d, e, None, runs)
    )
    calls.clear()
    _ours(synth, tmp_path / "b", 31)
    assert len(calls) == 2 * once
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


@pytest.mark.parametrize("density", [0.001, 0.5])
def test_zero_record_round_trips_in_both_forms(density):
    zero = np.random.default_rng(1).random(70_000) < density
    kind, data = elfdump._zero_record(zero)
    assert kind == ("offsets" if density < 0.01 else "bits")
    keep = np.ones(len(zero), bool)
    if kind == "bits":
        keep &= ~np.unpackbits(data, count=len(zero), bitorder="little").astype(bool)
    else:
        keep[data] = False
    assert np.array_equal(~keep, zero)
