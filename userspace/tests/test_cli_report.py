"""The command line on synthetic dumps: the report, --stats-json, and bad input.

Bad input must give exit status 1 and exactly one line on stderr, never a traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys

import pytest
from conftest import run_dumpfilter

from dumpfilter.elfcore import ElfVmcore
from dumpfilter.kdumpformat import Header, SubHeader
from dumpfilter.pageclass import PageClass


def _count(synth, level, cls):
    return int((synth.expected_classes(level) == cls).sum())


def test_dry_run_report_counts_each_class(synth61, tmp_path):
    js = tmp_path / "s.json"
    r = run_dumpfilter("--dry-run", "--show-stats", "-d", "31", "--stats-json", js, synth61.path)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert f"Free pages              : 0x{_count(synth61, 31, PageClass.FREE):016x}" in out
    assert f"User process data pages : 0x{_count(synth61, 31, PageClass.USER):016x}" in out
    assert f"Total pages     : 0x{synth61.max_pfn:016x}" in out
    data = json.loads(js.read_text())
    p = data["pages"]
    assert data["dump_level"] == 31 and data["scan"] == "userspace"
    assert p["total"] == synth61.max_pfn
    assert p["ram"] == sum(b - a for a, b in synth61.ram)
    exp = synth61.expected_classes(31, zero=True)
    for name, cls in [
        ("cache", PageClass.CACHE),
        ("cache_private", PageClass.CACHE_PRIVATE),
        ("user", PageClass.USER),
        ("free", PageClass.FREE),
        ("hwpoison", PageClass.HWPOISON),
        ("offline", PageClass.OFFLINE),
        ("zero", PageClass.ZERO),
        ("kept", PageClass.KEEP),
    ]:
        assert p[name] == int((exp == cls).sum()), name
    assert set(data["seconds"]) == {"prepare", "scan", "write", "total"}
    assert (
        sum(
            p[k]
            for k in (
                "zero",
                "cache",
                "cache_private",
                "user",
                "free",
                "hwpoison",
                "offline",
                "kept",
            )
        )
        == p["ram"]
    )


def test_without_zero_bit_no_page_is_counted_zero(synth61, tmp_path):
    js = tmp_path / "s.json"
    r = run_dumpfilter("--dry-run", "-d", "16", "--stats-json", js, synth61.path)
    assert r.returncode == 0, r.stderr
    p = json.loads(js.read_text())["pages"]
    assert p["zero"] == 0 and p["cache"] == 0 and p["free"] == _count(synth61, 16, PageClass.FREE)


# ----------------------------------------------------------------------- -d retry list


@pytest.fixture(scope="module")
def sizes(synth61, tmp_path_factory):
    """Bytes of the zlib kdump file of synth61 at dump levels 0 and 31."""
    d = tmp_path_factory.mktemp("sizes")
    out = {}
    for level in (0, 31):
        r = run_dumpfilter("-c", "-d", level, synth61.path, d / f"d{level}")
        assert r.returncode == 0, r.stderr
        out[level] = (d / f"d{level}").stat().st_size
    assert out[31] < out[0]
    return out


def _kdump_level_and_status(path) -> tuple[int, int]:
    head = path.read_bytes()[:8192]
    hdr = Header.unpack(head)
    return SubHeader.unpack(head, hdr.block_size).dump_level, hdr.status


def test_a_retry_list_writes_the_next_level_when_the_limit_is_hit(synth61, sizes, tmp_path):
    out, js = tmp_path / "dump", tmp_path / "s.json"
    limit = (sizes[0] + sizes[31]) // 2
    r = run_dumpfilter("-c", "-d", "0,31", "-L", limit, "--stats-json", js, synth61.path, out)
    assert r.returncode == 0, r.stderr
    # a common message (stdout, makedumpfile's "Retry to create a dumpfile"), not an error
    assert "retrying with dump level 31" in r.stdout and r.stderr == ""
    assert out.stat().st_size == sizes[31]
    assert _kdump_level_and_status(out) == (31, 0x1)  # whole (zlib), level 31 in the header
    assert json.loads(js.read_text())["dump_level"] == 31
    assert sorted(os.listdir(tmp_path)) == ["dump", "s.json"]  # the failed attempt left nothing


def test_when_every_level_is_too_big_the_last_one_is_kept_marked_incomplete(
    synth61, sizes, tmp_path
):
    out = tmp_path / "dump"
    r = run_dumpfilter("-c", "-d", "0,1,31", "-L", sizes[31] // 2, synth61.path, out)
    assert r.returncode == 1
    assert r.stdout.count("retrying with dump level") == 2
    error = r.stderr.splitlines()
    assert len(error) == 1 and error[0].endswith("is marked incomplete"), r.stderr
    level, status = _kdump_level_and_status(out)
    assert level == 31 and status & 0x8


def test_a_full_filesystem_is_retried_with_the_space_of_the_failed_attempt(
    synth61, sizes, tmp_path
):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    size_kib = (sizes[0] + sizes[31]) // 2 // 1024
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", mnt])
    if r.returncode:
        pytest.skip("cannot mount a tmpfs here (not root?)")
    try:
        r = run_dumpfilter("-c", "-d", "0,31", synth61.path, mnt / "dump")
        assert r.returncode == 0, r.stderr
        assert "No space left on device; retrying with dump level 31" in r.stdout
        assert os.listdir(mnt) == ["dump"]
        assert _kdump_level_and_status(mnt / "dump") == (31, 0x1)
    finally:
        subprocess.run(["umount", mnt], check=True)


def test_a_flattened_stream_is_not_retried(synth61, sizes, tmp_path):
    with open(tmp_path / "flat", "wb") as f:
        r = subprocess.run(
            [sys.executable, "-m", "dumpfilter.cli", "-F", "-c", "-d", "0,31", "-L",
             str(sizes[31] * 2), synth61.path],
            stdout=f, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
    assert r.returncode == 1
    assert "retrying" not in r.stderr and "flattened stream is incomplete" in r.stderr


@pytest.mark.parametrize("level", ["0,32", "1,,31", "31,x"])
def test_a_bad_level_in_a_retry_list_is_one_error_line(synth61, tmp_path, level):
    r = run_dumpfilter("-d", level, synth61.path, tmp_path / "dump")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert "dump level" in r.stderr and not (tmp_path / "dump").exists()


# ----------------------------------------------------- --check-params, -v, -D


def test_check_params_validates_the_command_line_without_opening_anything(tmp_path):
    missing = tmp_path / "no-such-vmcore"
    ok = run_dumpfilter(
        "--check-params", "-l", "--message-level", "7", "-d", "31", missing, tmp_path / "o"
    )
    assert ok.returncode == 0 and ok.stderr == "" and not (tmp_path / "o").exists()
    for bad in (["-d", "32"], ["-c", "-E", "-d", "31"], ["-d", "31", "--bogus"]):
        r = run_dumpfilter("--check-params", *bad, missing, tmp_path / "o")
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, bad
    r = run_dumpfilter("--check-params", "-d", "31", missing)  # no DUMPFILE
    assert r.returncode == 1 and "missing DUMPFILE" in r.stderr


def test_version_flag_names_the_program():
    r = run_dumpfilter("-v")
    assert r.returncode == 0 and r.stdout.startswith("dumpfilter ")


def test_debug_flag_describes_the_layout_and_changes_nothing_else(synth61, tmp_path):
    js0, js1 = tmp_path / "a.json", tmp_path / "b.json"
    plain = run_dumpfilter("--dry-run", "-d", "31", "--stats-json", js0, synth61.path)
    debug = run_dumpfilter("-D", "--dry-run", "-d", "31", "--stats-json", js1, synth61.path)
    assert plain.returncode == debug.returncode == 0 and plain.stderr == ""
    lines = debug.stderr.splitlines()
    assert all(line.startswith("dumpfilter: debug: ") for line in lines)
    assert any(f"max_pfn {synth61.max_pfn:#x}" in line for line in lines)
    assert sum("RAM pfn" in line for line in lines) == len(synth61.ram)
    assert any("SIZE(page) 64" in line for line in lines)
    assert json.loads(js0.read_text())["pages"] == json.loads(js1.read_text())["pages"]


# ------------------------------------------------------------------------------ bad input


def _patch_phys(path, pa: int, data: bytes) -> None:
    with ElfVmcore(str(path)) as src:
        ld = next(ld for ld in src._segs if ld.paddr <= pa < ld.paddr + ld.filesz)
        off = ld.offset + pa - ld.paddr
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(data)


def _patch_text(path, old: bytes, new: bytes) -> None:
    assert len(old) == len(new)
    with open(path, "r+b") as f:
        head = f.read(1 << 16)
        i = head.index(old)
        f.seek(i)
        f.write(new)


@pytest.fixture
def copy(synth61, tmp_path):
    def make():
        dst = tmp_path / "bad.core"
        shutil.copyfile(synth61.path, dst)
        return dst

    return make


def _fails_with(path, *needles):
    r = run_dumpfilter("--dry-run", "--show-stats", "-d", "31", path)
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dumpfilter: "), r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert any(n in lines[0] for n in needles), lines[0]


def test_truncated_file(copy):
    p = copy()
    os.truncate(p, os.path.getsize(p) // 2)
    _fails_with(p, "truncated")


def test_empty_and_foreign_files(tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    _fails_with(tmp_path / "empty", "empty")
    (tmp_path / "junk").write_bytes(os.urandom(8192))
    _fails_with(tmp_path / "junk", "neither an ELF vmcore")
    _fails_with(tmp_path / "missing", "cannot open")


def test_no_vmcoreinfo(copy):
    p = copy()
    _patch_text(p, b"VMCOREINFO\0", b"VMCOREINFX\0")
    _fails_with(p, "no VMCOREINFO")


def test_other_architecture(copy):
    p = copy()
    with open(p, "r+b") as f:
        f.seek(18)
        f.write(struct.pack("<H", 183))
    _fails_with(p, "aarch64")


def test_unknown_page_type_encoding(copy):
    p = copy()
    _patch_text(p, b"PAGE_BUDDY_MAPCOUNT_VALUE)=-129", b"PAGE_BUDDY_MAPCOUNT_VALUE)=-130")
    _fails_with(p, "unknown page-type encoding")


def test_missing_struct_page_layout_key(copy):
    p = copy()
    _patch_text(p, b"OFFSET(page.mapping)=", b"OFFSET(page.mappinX)=")
    _fails_with(p, "OFFSET(page.mapping)")


def test_corrupt_top_page_table(synth61, copy):
    p = copy()
    with ElfVmcore(synth61.path) as src:
        top = src.vmcoreinfo.symbol("init_top_pgt") - 0xFFFFFFFF80000000
        top = (top + synth61.phys_base) & ((1 << 64) - 1)
    _patch_phys(p, top, b"\0" * 4096)
    _fails_with(p, "not mapped")


def test_page_table_pointing_outside_the_dump(synth61, copy):
    p = copy()
    top = (0xFFFFFFFF9A200000 - 0xFFFFFFFF80000000 + synth61.phys_base) & ((1 << 64) - 1)
    assert synth61.vmcoreinfo.count(f"SYMBOL(init_top_pgt)={0xFFFFFFFF9A200000:x}") == 1
    _patch_phys(p, top, struct.pack("<Q", 0x7FFFFFF000 | 0x63) * 512)
    _fails_with(p, "outside the dump", "not in the dump")


def test_corrupt_mem_section(synth61, copy):
    p = copy()
    with ElfVmcore(synth61.path) as src:
        from dumpfilter.x86_64 import AddressSpace

        asp = AddressSpace(src)
        root = struct.unpack("<Q", asp.read_virt(src.vmcoreinfo.symbol("mem_section"), 8))[0]
        sec_pa = asp.vtop(root)
    _patch_phys(p, sec_pa, struct.pack("<Q", 0xFFFFE00000000000 | 3))
    _fails_with(p, "mem_section")


def test_mem_section_root_pointer_out_of_range(synth61, copy):
    p = copy()
    with ElfVmcore(synth61.path) as src:
        from dumpfilter.x86_64 import AddressSpace

        roots_pa = AddressSpace(src).vtop(src.vmcoreinfo.symbol("mem_section"))
    _patch_phys(p, roots_pa, struct.pack("<Q", 0xFFFF888000000000 + (1 << 40)))
    _fails_with(p, "mem_section root 0", "not in the dump")
