"""kernelscan: ioctl packing against the real UAPI header, resume protocol, fallback rules.

The kernel is replaced by ``FakeKernel``, which reads the request exactly as the C code does
(through the user pointers packed into the struct) and writes runs back into the caller's
buffer; the struct layout itself is checked by compiling the UAPI header with gcc.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import struct
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


def _debian_trees_ready() -> bool:
    cache = Path(os.environ.get("DUMPFILTER_CACHE") or Path.home() / ".cache/dumpfilter")
    return all(
        (cache / f"kernels/tree/linux-{v}/.git/debian-version").exists() for v in ("6.1", "6.12")
    )


@pytest.mark.skipif(
    not _debian_trees_ready(),
    reason="Debian's 6.1/6.12 source trees are not in the cache (make sources fetches them)",
)
def test_committed_patch_series_match_the_canonical_sources():
    r = subprocess.run(
        [sys.executable, str(REPO / "kernel-patches/mkseries.py"), "--check"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr


def test_kernel_image_pfns_are_kept_unless_free_and_nodata_pfns_are_holes(tmp_path, device):
    truth = np.zeros(4096, np.uint8)
    truth[0:600] = PageClass.CACHE  # e.g. BSS pages with PG_lru and a mapping (issue 21)
    truth[700:800] = PageClass.FREE  # freed __init pages inside _text.._end stay free
    chunks = ks.pack_chunks([(0, 4096, 0x100000)], 64)
    c = _scan(
        _src(tmp_path), device, FakeKernel(truth), chunks, image=[(512, 1024)], nodata=[159],
    )  # fmt: skip
    got = _as_array(c)
    assert (got[:159] == PageClass.CACHE).all() and got[159] == PageClass.HOLE
    assert (got[160:512] == PageClass.CACHE).all()
    assert (got[512:700] == PageClass.KEEP).all() and (got[800:1024] == PageClass.KEEP).all()
    assert (got[700:800] == PageClass.FREE).all()


# --- The kernel's own refusal and validation code, compiled in userspace -------------------
#
# The VMCOREINFO comparison, the note parser and the chunk checks of
# kernel-patches/src/fs/proc/vmcore_pfn_lists.c are plain C over buffers; they are cut out of
# the kernel source by function name and compiled against a small shim, so the code that
# decides EXDEV / EINVAL / E2BIG / ERANGE in the capture kernel is tested here without one.

KSRC = REPO / "kernel-patches/src/fs/proc/vmcore_pfn_lists.c"
SHIM = r"""
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
typedef uint64_t u64; typedef uint32_t u32;
#define __user
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define ALIGN(x, a) (((x) + (a) - 1) & ~((size_t)(a) - 1))
#define IS_ALIGNED(x, a) (((x) & ((a) - 1)) == 0)
#define min_t(t, a, b) ((t)(a) < (t)(b) ? (t)(a) : (t)(b))
#define U64_MAX UINT64_MAX
#define PAGE_SHIFT 12
#define GFP_KERNEL 0
#define VMCOREINFO_NOTE_NAME "VMCOREINFO"
#define VPL_MAX_INFO_BYTES (16U << 10)
#define VMCORE_PFN_MAX_CHUNK_PAGES (1U << 18)
struct elf64_note { uint32_t n_namesz, n_descsz, n_type; };
struct page { unsigned char b[64]; };
struct vmcore_pfn_chunk { u64 start_pfn, nr_pages, mem_map_paddr; };
struct vpl_range { u64 start, end; };
static void *kmemdup(const void *p, size_t n, int gfp)
{ void *q = malloc(n); memcpy(q, p, n); return q; }
static char vpl_reason[128];
static struct vpl_range vpl_ranges[16];
static unsigned int vpl_nr_ranges;
"""
MAIN = r"""
static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb"); char *b = malloc(1 << 20); *n = fread(b, 1, 1 << 20, f);
    fclose(f); return b;
}
int main(int argc, char **argv) {
    size_t a, b;
    if (!strcmp(argv[1], "cmp")) {
        char *old = slurp(argv[2], &a), *cur = slurp(argv[3], &b);
        printf("%d|%s\n", vpl_compare_vmcoreinfo(old, a, cur, b), vpl_reason);
    } else if (!strcmp(argv[1], "note")) {
        char *notes = slurp(argv[2], &a); size_t n = 0;
        char *d = vpl_find_vmcoreinfo(notes, a, &n);
        if (d) { printf("found|"); fwrite(d, 1, n, stdout); } else printf("none|");
    } else {  /* chunk START NR PADDR PREV_END then ranges "s-e" */
        for (int i = 6; i < argc; i++) {
            sscanf(argv[i], "%lx-%lx", &vpl_ranges[vpl_nr_ranges].start,
                   &vpl_ranges[vpl_nr_ranges].end);
            vpl_nr_ranges++;
        }
        struct vmcore_pfn_chunk c = { strtoull(argv[2], 0, 0), strtoull(argv[3], 0, 0),
                                      strtoull(argv[4], 0, 0) };
        printf("%d\n", vpl_check_chunk(&c, strtoull(argv[5], 0, 0)));
    }
    return 0;
}
"""
CUT = ["vpl_key_prefixes", "vpl_required_keys", "vpl_key_selected", "vpl_find_key",
       "vpl_lines_match", "vpl_compare_vmcoreinfo", "vpl_find_vmcoreinfo",
       "vpl_in_old_memory", "vpl_check_chunk"]  # fmt: skip


def _cut(src: str, name: str) -> str:
    lines = src.splitlines()
    pat = re.compile(rf"^static .*\b{name}(\(|\[\])")
    start = next(i for i, ln in enumerate(lines) if pat.match(ln))
    end = next(i for i in range(start, len(lines)) if lines[i] in ("}", "};"))
    return "\n".join(lines[start : end + 1]) + "\n"


@pytest.fixture(scope="module")
def kernel_code(tmp_path_factory):
    if not shutil.which("gcc"):
        pytest.skip("gcc needed")
    d = tmp_path_factory.mktemp("vplc")
    text = KSRC.read_text()
    body = SHIM + "".join(_cut(text, n) for n in CUT) + MAIN
    (d / "t.c").write_text(body)
    subprocess.run(["gcc", "-Wall", "-Werror", "-Wno-unused-function", "-o", str(d / "t"),
                    str(d / "t.c")], check=True)  # fmt: skip

    def run(*args: str) -> str:
        return subprocess.run([str(d / "t"), *args], check=True, capture_output=True,
                              text=True).stdout  # fmt: skip

    return d, run


INFO_61 = (
    "OSRELEASE=6.1.192\nBUILD-ID=0123abcd\nPAGESIZE=4096\nSYMBOL(init_uts_ns)=ffffffff82a1\n"
    "SIZE(page)=64\nOFFSET(page.flags)=0\nOFFSET(page._mapcount)=48\nNUMBER(PG_lru)=4\n"
    "NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-129\nLENGTH(zone.free_area)=11\nKERNELOFFSET=1c000000\n"
)


def _cmp(kernel_code, old: str, cur: str) -> tuple[int, str]:
    d, run = kernel_code
    (d / "old").write_text(old)
    (d / "cur").write_text(cur)
    status, reason = run("cmp", str(d / "old"), str(d / "cur")).strip().split("|", 1)
    return int(status), reason


def test_kernel_accepts_the_same_kernel_whatever_the_randomised_addresses(kernel_code):
    cur = INFO_61.replace("KERNELOFFSET=1c000000", "KERNELOFFSET=3e000000").replace("82a1", "9fa1")
    assert _cmp(kernel_code, INFO_61 + "CRASHTIME=1700000000\n", cur) == (0, "")


@pytest.mark.parametrize(
    ("old_line", "new_line", "why"),
    [
        ("BUILD-ID=0123abcd", "BUILD-ID=0123abce", "BUILD-ID"),
        ("OSRELEASE=6.1.192", "OSRELEASE=6.1.0-56-amd64", "OSRELEASE"),
        ("SIZE(page)=64", "SIZE(page)=72", "SIZE(page)"),
        ("NUMBER(PG_lru)=4", "NUMBER(PG_lru)=5", "PG_lru"),
        ("NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-129", "NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-268435456",
         "PAGE_BUDDY"),
        ("LENGTH(zone.free_area)=11", "LENGTH(zone.free_area)=12", "free_area"),
    ],
)  # fmt: skip
def test_kernel_refuses_a_different_crashed_kernel_naming_the_key(
    kernel_code, old_line, new_line, why
):
    status, reason = _cmp(kernel_code, INFO_61.replace(old_line, new_line), INFO_61)
    assert status == -errno.EXDEV
    assert why in reason and "crashed" in reason and "running" in reason


def test_kernel_refuses_when_a_compared_key_exists_in_only_one_kernel(kernel_code):
    extra = INFO_61 + "NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)=-257\n"
    assert _cmp(kernel_code, extra, INFO_61)[0] == -errno.EXDEV
    status, reason = _cmp(kernel_code, INFO_61, extra)
    assert status == -errno.EXDEV and "only in the running kernel" in reason


def test_kernel_refuses_a_vmcoreinfo_without_the_required_keys(kernel_code):
    old = INFO_61.replace("NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-129\n", "")
    status, reason = _cmp(kernel_code, old, old)
    assert status == -errno.EXDEV and "lacks NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)" in reason


def _note(name: bytes, desc: bytes, ntype: int = 0) -> bytes:
    def pad(b: bytes) -> bytes:
        return b + b"\0" * (-len(b) % 4)

    return struct.pack("<III", len(name), len(desc), ntype) + pad(name) + pad(desc)


def test_kernel_finds_vmcoreinfo_among_cpu_notes_and_stops_at_bad_sizes(kernel_code):
    d, run = kernel_code
    core = _note(b"CORE\0", b"\1" * 336, 1)
    info = _note(b"VMCOREINFO\0", INFO_61.encode())
    (d / "n1").write_bytes(core + core + info + b"\0" * 12)
    assert run("note", str(d / "n1")) == "found|" + INFO_61
    # a note claiming a huge descriptor must not be followed past the buffer
    bad = struct.pack("<III", 5, 0xFFFFFFF0, 1) + b"CORE\0\0\0\0" + info
    (d / "n2").write_bytes(bad)
    assert run("note", str(d / "n2")) == "none|"


@pytest.mark.parametrize(
    ("chunk", "prev_end", "expect"),
    [
        ((0x8000, 0x8000, 0x1000000), 0, 0),
        ((0x8000, 0x8000, 0x1000000), 0x8001, -errno.EINVAL),  # overlaps the previous chunk
        ((0x8000, 0, 0x1000000), 0, -errno.EINVAL),  # empty
        ((0x8000, 1 << 19, 0x1000000), 0, -errno.E2BIG),  # larger than the cap
        (((1 << 64) - 8, 16, 0x1000000), 0, -errno.EINVAL),  # pfn range wraps
        ((0x8000, 0x8000, 0x1000004), 0, -errno.EINVAL),  # misaligned struct pages
        ((0x8000, 0x8000, 0x3F00000), 0, -errno.ERANGE),  # straddles the end of RAM range 1
        ((0x8000, 0x8000, 0x5000000), 0, -errno.ERANGE),  # in the gap between ranges
        ((0x8000, 4, (1 << 64) - 64), 0, -errno.ERANGE),  # address wraps
        ((0x8000, 0x8000, 0x8000000), 0, 0),  # inside range 2
    ],
)  # fmt: skip
def test_kernel_chunk_validation(kernel_code, chunk, prev_end, expect):
    _, run = kernel_code
    ranges = ["100000-4000000", "6000000-10000000"]
    out = run("chunk", *(str(x) for x in chunk), str(prev_end), *ranges)
    assert int(out) == expect


def test_memmap_chunks_with_a_split_struct_page_are_packed_without_it():
    from dumpfilter.memmap import Chunk

    rows = [Chunk(0, 100, 0x1000), Chunk(100, 1, 0x2FF8, split=8, paddr2=0x9000),
            Chunk(101, 50, 0x9038)]  # fmt: skip
    packed = ks.pack_chunks(rows, 56)
    assert packed["start_pfn"].tolist() == [0, 101]
    assert packed["paddr"].tolist() == [0x1000, 0x9038]
