"""--mem-usage: the per-class table and the size estimate per dump level.

On a running system the input is /proc/kcore (qemu-tests/test_mem_usage.py checks that in a
guest); here a synthetic vmcore with a known answer stands in, and one of its PT_LOADs is
given /proc/kcore's "no physical address" to show such segments are left out.
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import synthvmcore
from conftest import run_dumpfilter

from dumpfilter import memusage
from dumpfilter.elfcore import START_KERNEL_MAP, ElfVmcore
from dumpfilter.errors import DumpError
from dumpfilter.pageclass import PageClass


def table(stdout: str) -> dict[str, int]:
    """The rows of makedumpfile's table and the totals under it."""
    out = {}
    for line in stdout.splitlines():
        parts = line.split("\t")
        if len(parts) > 2 and parts[0] in (
            "ZERO",
            "NON_PRI_CACHE",
            "PRI_CACHE",
            "USER",
            "FREE",
            "KERN_DATA",
        ):
            out[parts[0]] = int([p for p in parts[1:] if p.strip()][0])
        elif line.startswith("Total pages on system:"):
            out["total"] = int(line.split(":")[1])
    return out


def estimates(stdout: str) -> dict[int, tuple[int, int]]:
    lines = stdout.splitlines()
    i = lines.index("LEVEL\tPAGES\t\tBYTES")
    out = {}
    for line in lines[i + 1 : i + 33]:
        level, pages, size = line.split()
        out[int(level)] = (int(pages), int(size))
    return out


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    path = tmp_path_factory.mktemp("mu") / "vmcore"
    return synthvmcore.make_vmcore(path, kernel="6.1", content="mixed", text_segment=True)


def test_table_counts_the_classes_a_d31_run_excludes(synth, tmp_path):
    r = run_dumpfilter("--mem-usage", synth.path)
    assert r.returncode == 0, r.stderr
    got = table(r.stdout)
    d = run_dumpfilter("-d", "31", "--dry-run", "--stats-json", tmp_path / "s.json", synth.path)
    assert d.returncode == 0, d.stderr
    pages = json.loads((tmp_path / "s.json").read_text())["pages"]
    assert got["ZERO"] == pages["zero"]
    assert got["NON_PRI_CACHE"] == pages["cache"]
    assert got["PRI_CACHE"] == pages["cache_private"]
    assert got["USER"] == pages["user"]
    assert got["FREE"] == pages["free"]
    assert got["total"] == pages["ram"]
    excluded = sum(pages[k] for k in ("zero", "cache", "cache_private", "user", "free"))
    excluded += pages["hwpoison"] + pages["offline"]
    assert got["KERN_DATA"] == pages["ram"] - excluded
    assert got["USER"] > 0 and got["FREE"] > 0 and got["ZERO"] > 0


@pytest.mark.parametrize("level", [1, 2, 17, 31])
def test_estimate_is_the_size_of_the_uncompressed_dump_at_that_level(synth, tmp_path, level):
    r = run_dumpfilter("--mem-usage", synth.path)
    assert r.returncode == 0, r.stderr
    pages, size = estimates(r.stdout)[level]
    out = tmp_path / "dump"
    d = run_dumpfilter("-d", level, "--stats-json", tmp_path / "s.json", synth.path, out)
    assert d.returncode == 0, d.stderr
    assert size == out.stat().st_size
    assert pages == json.loads((tmp_path / "s.json").read_text())["pages"]["kept"]


def test_segments_without_a_physical_address_are_left_out(synth, tmp_path):
    """/proc/kcore gives vmalloc, module and vmemmap segments p_paddr == -1."""
    kc = tmp_path / "kcore"
    kc.write_bytes(open(synth.path, "rb").read())
    with ElfVmcore(str(kc)) as src:
        ehdr = src.ehdr
    (phoff,) = struct.unpack_from("<Q", ehdr, 32)
    (phnum,) = struct.unpack_from("<H", ehdr, 56)
    with open(kc, "r+b") as f:
        for i in range(phnum):
            f.seek(phoff + 56 * i)
            ph = f.read(56)
            p_type, _fl, _off, vaddr = struct.unpack_from("<IIQQ", ph)
            if p_type == 1 and vaddr >= START_KERNEL_MAP:
                f.seek(phoff + 56 * i + 24)
                f.write(struct.pack("<Q", memusage.NO_PADDR))
                break
        else:
            pytest.fail("the synthetic vmcore has no kernel-text PT_LOAD")
    with pytest.raises(DumpError):
        ElfVmcore(str(kc))
    assert memusage.mem_usage(str(kc)) == memusage.mem_usage(synth.path)


def test_crash_kernel_memory_is_not_counted(synth, tmp_path):
    iomem = tmp_path / "iomem"
    a, b = 0x10000000, 0x14000000
    iomem.write_text(
        f"00100000-3fffffff : System RAM\n  {a:08x}-{b - 1:08x} : Crash kernel\n"
        "  01000000-01ffffff : Kernel code\n"
    )
    reserved = memusage.crash_kernel_ranges(str(iomem))
    assert reserved == [(a, b)]
    with memusage.Kcore(synth.path) as whole, memusage.Kcore(synth.path, reserved) as cut:
        ram_whole = sum(y - x for x, y in whole.ram_ranges)
        ram_cut = sum(y - x for x, y in cut.ram_ranges)
        inside = sum(max(0, min(y, b // 4096) - max(x, a // 4096)) for x, y in whole.ram_ranges)
        assert inside > 0
        assert ram_cut == ram_whole - inside
        _table, counts, _zeros = memusage.classify(cut)
        assert counts[PageClass.HOLE] >= inside


def test_subtract_cuts_holes_out_of_ranges():
    got = memusage.subtract([(0, 10), (20, 30)], [(5, 25), (28, 40)])
    assert got == [(0, 5), (25, 28)]
    assert memusage.subtract([(0, 10)], []) == [(0, 10)]
    assert np.array_equal(memusage.subtract([(0, 10)], [(0, 10)]), [])


def test_mem_usage_wants_exactly_one_file(synth, tmp_path):
    r = run_dumpfilter("--mem-usage", synth.path, tmp_path / "x")
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "--mem-usage" in r.stderr
    assert not (tmp_path / "x").exists()
