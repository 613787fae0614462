"""kdump-compressed input (re-filtering): makedumpfile's output read back and re-scanned."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from conftest import MAKEDUMPFILE, run_dumpfilter

from dumpfilter import scan, source
from dumpfilter.diskdump_in import KdumpInput
from dumpfilter.errors import DumpError
from dumpfilter.pageclass import PageClass

pytestmark = pytest.mark.skipif(MAKEDUMPFILE is None, reason="makedumpfile not installed")


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


@pytest.mark.parametrize("first", [1, 16])
def test_refiltering_classifies_like_the_original(s61, tmp_path, first):
    out = _mdf(s61, tmp_path / "d", "-l", "-d", str(first))
    with source.open_source(str(out)) as src:
        c = scan.userspace_scan(src, 31)
        got = np.concatenate([a for _, a in c.windows()])
    assert np.array_equal(got, s61.expected_classes(31))


def test_refilter_report_through_the_cli(s61, tmp_path):
    out = _mdf(s61, tmp_path / "d", "-c", "-d", "1")
    r = run_dumpfilter("--dry-run", "--show-stats", "-d", "31", out)
    assert r.returncode == 0, r.stderr
    free = int((s61.expected_classes(31) == PageClass.FREE).sum())
    assert f"Free pages              : 0x{free:016x}" in r.stdout


def test_truncated_kdump_file_is_an_error(s61, tmp_path):
    out = _mdf(s61, tmp_path / "d", "-c", "-d", "31")
    with open(out, "r+b") as f:
        f.truncate(3 * 4096 + 100)
    r = run_dumpfilter("--dry-run", "-d", "31", out)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1 and "truncated" in r.stderr
