"""kernelscan: ioctl packing against the real UAPI header, resume protocol, fallback rules.

The kernel is replaced by ``FakeKernel``, which reads the request exactly as the C code does
(through the user pointers packed into the struct) and writes runs back into the caller's
buffer; the struct layout itself is checked by compiling the UAPI header with gcc.
"""

from __future__ import annotations

import ctypes
import errno
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from dumpfilter import kernelscan as ks
from dumpfilter.errors import DumpError
from dumpfilter.pageclass import PageClass

REPO = Path(__file__).resolve().parents[2]
UAPI = REPO / "kernel-patches/src/include/uapi/linux/vmcore_pfn_lists.h"


class FakeKernel:
    """The VMCORE_PFN_IOC_* protocol over a per-PFN truth array (a reference model)."""

    def __init__(self, truth: np.ndarray, status: int = 0, reason: str = "", fail=None):
        self.truth = truth
        self.status = status
        self.reason = reason
        self.fail = fail  # errno raised by SCAN
        self.calls = 0
        self.seen_chunks: np.ndarray | None = None
        self.seen_level: int | None = None

    def __call__(self, fd: int, request: int, buf: bytearray) -> int:
        if request == ks.IOC_INFO:
            buf[:] = ks.INFO.pack(
                ks.INFO.size, ks.ABI, self.status, 64, 1 << 20, 1 << 18, 3, 0,
                self.reason.encode(),
            )  # fmt: skip
            return 0
        assert request == ks.IOC_SCAN
        self.calls += 1
        if self.fail:
            raise OSError(self.fail, "fake")
        f = list(ks.SCAN.unpack(bytes(buf)))
        size, flags, level, nr_chunks, cptr, rptr, max_runs, _, chunk, _, pfn = f[:11]
        assert size == ks.SCAN.size and flags == 0 and cptr % 8 == 0 and rptr % 8 == 0
        chunks = np.frombuffer(ctypes.string_at(cptr, nr_chunks * 24), ks.CHUNK_DTYPE).copy()
        self.seen_chunks, self.seen_level = chunks, level
        runs: list[list[int]] = []
        counts = [0] * ks.NR_CLASSES
        full = False
        while chunk < nr_chunks and not full:
            start, nr = int(chunks[chunk]["start_pfn"]), int(chunks[chunk]["nr_pages"])
            pfn = max(pfn, start)
            while pfn < start + nr:
                c = int(self.truth[pfn])
                counts[c] += 1
                if c:
                    if runs and runs[-1][2] == c and runs[-1][0] + runs[-1][1] == pfn:
                        runs[-1][1] += 1
                    elif len(runs) == max_runs:
                        counts[c] -= 1
                        full = True
                        break
                    else:
                        runs.append([pfn, 1, c])
                pfn += 1
            if not full:
                chunk += 1
        arr = np.array([tuple(r) for r in runs], ks.RUN_DTYPE)
        ctypes.memmove(rptr, arr.ctypes.data, arr.nbytes)
        f[7], f[8], f[9], f[10] = len(runs), chunk, int(chunk >= nr_chunks), pfn
        f[11:] = counts
        buf[:] = ks.SCAN.pack(*f)
        return 0


def _src(tmp_path, max_pfn=4096, ram=((0, 4096),), kind="elf"):
    vi = SimpleNamespace(size=lambda name: 64)
    return SimpleNamespace(
        kind=kind, path=str(tmp_path / "vmcore"), vmcoreinfo=vi, max_pfn=max_pfn,
        ram_ranges=list(ram),
    )  # fmt: skip


@pytest.fixture
def device(tmp_path):
    p = tmp_path / "vmcore_pfn_lists"
    p.write_bytes(b"")
    return str(p)


def _truth(n=4096, seed=1):
    rng = np.random.default_rng(seed)
    t = np.zeros(n, np.uint8)
    # runs of random excludable classes with gaps
    pos = 0
    while pos < n:
        ln = int(rng.integers(1, 40))
        t[pos : pos + ln] = rng.choice([0, 0, 1, 2, 3, 4, 5, 6])
        pos += ln
    return t


def _scan(src, device, fake, chunks, level=31, **kw):
    return ks.try_kernel_scan(
        src, level, "require", say=lambda m: None, device=device, ioctl=fake, chunks=chunks,
        assume_proc_vmcore=True, **kw,
    )  # fmt: skip


def _as_array(c) -> np.ndarray:
    return np.concatenate([w for _, w in c.windows(1000)])


@pytest.mark.skipif(not shutil.which("gcc"), reason="gcc needed to compile the UAPI header")
def test_struct_layout_and_ioctl_numbers_match_the_uapi_header(tmp_path):
    prog = tmp_path / "abi.c"
    prog.write_text(
        f'#include <stdio.h>\n#include <stddef.h>\n#include "{UAPI}"\n'
        "int main(void) {\n"
        '  printf("%zu %zu %zu %zu\\n", sizeof(struct vmcore_pfn_info),'
        " sizeof(struct vmcore_pfn_scan), sizeof(struct vmcore_pfn_chunk),"
        " sizeof(struct vmcore_pfn_run));\n"
        '  printf("%lu %lu\\n", (unsigned long)VMCORE_PFN_IOC_INFO,'
        " (unsigned long)VMCORE_PFN_IOC_SCAN);\n"
        '  printf("%zu %zu %zu %zu\\n", offsetof(struct vmcore_pfn_scan, nr_runs),'
        " offsetof(struct vmcore_pfn_scan, next_pfn), offsetof(struct vmcore_pfn_scan, counts),"
        " offsetof(struct vmcore_pfn_info, reason));\n"
        '  printf("%d %d %u %u\\n", VMCORE_PFN_LISTS_ABI, VMCORE_PFN_NR_CLASSES,'
        " VMCORE_PFN_MAX_CHUNK_PAGES, VMCORE_PFN_DL_MASK);\n"
        '  printf("%d %d %d %d %d %d\\n", VMCORE_PFN_CACHE, VMCORE_PFN_CACHE_PRIVATE,'
        " VMCORE_PFN_USER, VMCORE_PFN_FREE, VMCORE_PFN_HWPOISON, VMCORE_PFN_OFFLINE);\n"
        "  return 0;\n}\n"
    )
    exe = tmp_path / "abi"
    subprocess.run(["gcc", "-I/usr/include", "-o", str(exe), str(prog)], check=True)
    lines = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split(
        "\n"
    )
    assert lines[0].split() == ["160", "120", "24", "16"]
    assert [int(x) for x in lines[1].split()] == [ks.IOC_INFO, ks.IOC_SCAN]
    # nr_runs is field 7, next_pfn field 10, counts from field 11 of SCAN
    assert [int(x) for x in lines[2].split()] == [36, 48, 56, 32]
    assert [int(x) for x in lines[3].split()] == [ks.ABI, ks.NR_CLASSES, ks.MAX_CHUNK_PAGES, 31]
    assert [int(x) for x in lines[4].split()] == [
        PageClass.CACHE, PageClass.CACHE_PRIVATE, PageClass.USER, PageClass.FREE,
        PageClass.HWPOISON, PageClass.OFFLINE,
    ]  # fmt: skip


def test_runs_collected_across_resumed_calls_equal_the_truth(tmp_path, device, monkeypatch):
    truth = _truth()
    fake = FakeKernel(truth)
    monkeypatch.setattr(ks, "RUNS_PER_CALL", 3)
    chunks = ks.pack_chunks([(0, 2048, 0x100000), (2048, 2048, 0x200000)], 64)
    c = _scan(_src(tmp_path), device, fake, chunks)
    assert c.scan == "kernel"
    assert fake.calls > 10  # the 3-run buffer forced many resumptions
    assert np.array_equal(_as_array(c), truth)
    # per-class counts summed over calls match the truth
    assert c.result.counts[1:7] == [int((truth == k).sum()) for k in range(1, 7)]


def test_windows_mark_holes_outside_ram_and_keep_pages_without_runs(tmp_path, device):
    truth = np.zeros(4096, np.uint8)
    truth[100:200] = PageClass.FREE
    truth[1500:1600] = PageClass.USER  # inside the hole: must still read as HOLE
    fake = FakeKernel(truth)
    src = _src(tmp_path, ram=((0, 1024), (2048, 4096)))
    chunks = ks.pack_chunks([(0, 4096, 0x100000)], 64)
    got = _as_array(_scan(src, device, fake, chunks))
    assert (got[100:200] == PageClass.FREE).all()
    assert (got[1024:2048] == PageClass.HOLE).all()
    assert (got[:100] == PageClass.KEEP).all() and (got[2048:] == PageClass.KEEP).all()
    again = _as_array(_scan(src, device, fake, chunks))
    assert np.array_equal(got, again)


def test_chunks_split_at_aligned_boundaries_with_struct_page_address_moved():
    big = ks.pack_chunks([(1 << 18, 3 << 18, 0x4000000), (100, 50, 0x1000)], 64, 1 << 18)
    assert big["start_pfn"].tolist() == [100, 1 << 18, 2 << 18, 3 << 18]
    assert big["nr_pages"].tolist() == [50, 1 << 18, 1 << 18, 1 << 18]
    assert big["paddr"].tolist() == [0x1000, 0x4000000, 0x4000000 + (64 << 18),
                                     0x4000000 + (128 << 18)]  # fmt: skip
    odd = ks.pack_chunks([(5, 20, 0x8000)], 64, 8)
    assert odd["start_pfn"].tolist() == [5, 8, 16, 24]
    assert odd["nr_pages"].tolist() == [3, 8, 8, 1]
    assert odd["paddr"].tolist() == [0x8000, 0x8000 + 3 * 64, 0x8000 + 11 * 64, 0x8000 + 19 * 64]


def test_dump_level_passed_to_the_kernel_without_unknown_bits(tmp_path, device):
    fake = FakeKernel(np.zeros(4096, np.uint8))
    _scan(_src(tmp_path), device, fake, ks.pack_chunks([(0, 64, 0x1000)], 64), level=0x13)
    assert fake.seen_level == 0x13


def test_absent_interface_falls_back_in_auto_with_one_line(tmp_path):
    said: list[str] = []
    out = ks.try_kernel_scan(
        _src(tmp_path), 31, "auto", said.append, device=str(tmp_path / "nope"),
        assume_proc_vmcore=True,
    )  # fmt: skip
    assert out is None
    assert len(said) == 1 and "absent" in said[0] and "userspace scan" in said[0]


def test_absent_interface_with_require_is_a_dump_error(tmp_path):
    with pytest.raises(DumpError, match="absent"):
        ks.try_kernel_scan(
            _src(tmp_path), 31, "require", lambda m: None, device=str(tmp_path / "nope"),
            assume_proc_vmcore=True,
        )  # fmt: skip


def test_refusal_by_the_kernel_is_reported_with_its_reason(tmp_path, device):
    fake = FakeKernel(
        np.zeros(64, np.uint8), status=-errno.EXDEV,
        reason="crashed OSRELEASE=6.1.0-56-amd64, running OSRELEASE=6.1.192",
    )  # fmt: skip
    said: list[str] = []
    out = ks.try_kernel_scan(
        _src(tmp_path), 31, "auto", said.append, device=device, ioctl=fake,
        assume_proc_vmcore=True,
    )  # fmt: skip
    assert out is None and fake.calls == 0
    assert len(said) == 1
    assert "refused" in said[0] and "OSRELEASE=6.1.0-56-amd64" in said[0]
    with pytest.raises(DumpError, match="refused"):
        ks.try_kernel_scan(
            _src(tmp_path), 31, "require", said.append, device=device, ioctl=fake,
            assume_proc_vmcore=True,
        )  # fmt: skip


@pytest.mark.parametrize(
    ("err", "text"),
    [(errno.ERANGE, "outside the crashed kernel's memory"), (errno.EINVAL, "invalid"),
     (errno.EXDEV, "refused"), (errno.EIO, "error")],
)  # fmt: skip
def test_scan_errors_fall_back_with_the_errno_explained(tmp_path, device, err, text):
    fake = FakeKernel(np.zeros(64, np.uint8), fail=err)
    said: list[str] = []
    chunks = ks.pack_chunks([(0, 64, 0x1000)], 64)
    out = ks.try_kernel_scan(
        _src(tmp_path), 31, "auto", said.append, device=device, ioctl=fake, chunks=chunks,
        assume_proc_vmcore=True,
    )  # fmt: skip
    assert out is None and len(said) == 1 and text in said[0]


def test_saved_dump_file_is_never_classified_by_the_running_kernel(tmp_path, device):
    fake = FakeKernel(np.zeros(64, np.uint8))
    said: list[str] = []
    out = ks.try_kernel_scan(_src(tmp_path), 31, "auto", said.append, device=device, ioctl=fake)
    assert out is None and fake.calls == 0 and "not this capture kernel" in said[0]


def test_unknown_class_from_the_kernel_is_rejected(tmp_path, device):
    truth = np.zeros(64, np.uint8)
    truth[3] = 7  # HOLE is not a class the kernel may report
    with pytest.raises(DumpError, match="unknown page class 7"):
        _scan(_src(tmp_path), device, FakeKernel(truth), ks.pack_chunks([(0, 64, 0x1000)], 64))


def test_struct_page_size_mismatch_is_refused(tmp_path, device):
    src = _src(tmp_path)
    src.vmcoreinfo = SimpleNamespace(size=lambda name: 56)
    with pytest.raises(DumpError, match="struct page is 64 bytes here, 56"):
        _scan(src, device, FakeKernel(np.zeros(64, np.uint8)), None)


def test_bad_mode_is_a_dump_error(tmp_path):
    with pytest.raises(DumpError, match="auto or require"):
        ks.try_kernel_scan(_src(tmp_path), 31, "sometimes", lambda m: None)


@pytest.mark.skipif(
    not all(Path(f"/usr/src/linux-source-{v}.tar.xz").exists() for v in ("6.1", "6.12")),
    reason="Debian linux-source-6.1/6.12 tarballs not installed",
)
def test_committed_patch_series_match_the_canonical_sources():
    r = subprocess.run(
        [sys.executable, str(REPO / "kernel-patches/mkseries.py"), "--check"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr


def test_kernel_image_pfns_are_kept_even_when_the_kernel_reports_them(tmp_path, device):
    truth = np.zeros(4096, np.uint8)
    truth[0:600] = PageClass.CACHE  # e.g. BSS pages with PG_lru and a mapping (issue 21)
    chunks = ks.pack_chunks([(0, 4096, 0x100000)], 64)
    c = _scan(_src(tmp_path), device, FakeKernel(truth), chunks, image=[(512, 1024)])
    got = _as_array(c)
    assert (got[:512] == PageClass.CACHE).all()
    assert (got[512:1024] == PageClass.KEEP).all()
