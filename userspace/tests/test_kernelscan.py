"""kernelscan: ioctl packing against the real UAPI header, resume protocol, fallback rules.

The kernel is replaced by ``FakeKernel``, which reads the request exactly as the C code does
(through the user pointers packed into the struct) and writes runs back into the caller's
buffer; the struct layout itself is checked by compiling the UAPI header with gcc.
"""

from __future__ import annotations

import ctypes
import errno
import importlib.util
import os
import re
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from fakes import cache_dir

from dumpfilter import kernelscan as ks
from dumpfilter.dumplevel import DumpLevel
from dumpfilter.errors import DumpError
from dumpfilter.layout import WINDOW_PFNS
from dumpfilter.pageclass import PageClass

REPO = Path(__file__).resolve().parents[2]
UAPI = REPO / "kernel-patches/src/include/uapi/linux/vmcore_pfn_lists.h"


class FakeKernel:
    """The VMCORE_PFN_IOC_* protocol over a per-PFN truth array (a reference model)."""

    def __init__(self, truth: np.ndarray, status: int = 0, fail=None):
        self.truth = truth
        self.status = status
        self.fail = fail  # errno raised by SCAN
        self.calls = 0
        self.seen_chunks: np.ndarray | None = None
        self.seen_classes: int | None = None

    def __call__(self, fd: int, request: int, buf: bytearray) -> int:
        if request == ks.IOC_INFO:
            assert ks.INFO.unpack(bytes(buf))[0] == ks.INFO.size
            buf[:] = ks.INFO.pack(ks.INFO.size, self.status, 64, 0x7E, 1 << 20, 1 << 18, 3)
            return 0
        assert request == ks.IOC_SCAN
        self.calls += 1
        if self.fail:
            raise OSError(self.fail, "fake")
        f = list(ks.SCAN.unpack(bytes(buf)))
        size, flags, classes, nr_chunks, cptr, rptr, max_runs, _, chunk, _, pfn = f[:11]
        assert size == ks.SCAN.size and flags == 0 and cptr % 8 == 0 and rptr % 8 == 0
        assert not classes & ~0x7E
        chunks = np.frombuffer(ctypes.string_at(cptr, nr_chunks * 24), ks.CHUNK_DTYPE).copy()
        self.seen_chunks, self.seen_classes = chunks, classes
        runs: list[list[int]] = []
        counts = [0] * ks.NR_CLASSES
        full = False
        while chunk < nr_chunks and not full:
            start, nr = int(chunks[chunk]["start_pfn"]), int(chunks[chunk]["nr_pages"])
            pfn = max(pfn, start)
            while pfn < start + nr:
                c = int(self.truth[pfn])
                c = c if c == 7 or classes >> c & 1 else 0  # 7: a class no one asks for
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
        " offsetof(struct vmcore_pfn_info, nr_old_ranges));\n"
        '  printf("%d %u %d %d %d\\n", VMCORE_PFN_NR_CLASSES, VMCORE_PFN_MAX_CHUNK_PAGES,'
        " VMCORE_PFN_CLASSES_ALL, VMCORE_PFN_SCAN_SIZE_VER0, VMCORE_PFN_INFO_SIZE_VER0);\n"
        '  printf("%d %d %d %d %d %d\\n", VMCORE_PFN_CACHE, VMCORE_PFN_CACHE_PRIVATE,'
        " VMCORE_PFN_USER, VMCORE_PFN_FREE, VMCORE_PFN_HWPOISON, VMCORE_PFN_OFFLINE);\n"
        "  return 0;\n}\n"
    )
    exe = tmp_path / "abi"
    subprocess.run(["gcc", "-I/usr/include", "-o", str(exe), str(prog)], check=True)
    lines = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split(
        "\n"
    )
    assert lines[0].split() == ["28", "120", "24", "16"]
    assert [int(x) for x in lines[1].split()] == [ks.IOC_INFO, ks.IOC_SCAN]
    # nr_runs is field 7, next_pfn field 10, counts from field 11 of SCAN
    assert [int(x) for x in lines[2].split()] == [36, 48, 56, 24]
    assert [int(x) for x in lines[3].split()] == [
        ks.NR_CLASSES, ks.MAX_CHUNK_PAGES, ks.CLASSES_ALL, ks.SCAN.size, ks.INFO.size,
    ]  # fmt: skip
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


def test_the_dump_level_becomes_a_class_mask_here_not_in_the_kernel(tmp_path, device):
    fake = FakeKernel(np.zeros(4096, np.uint8))
    _scan(_src(tmp_path), device, fake, ks.pack_chunks([(0, 64, 0x1000)], 64), level=0x13)
    bits = [PageClass.CACHE, PageClass.FREE, PageClass.HWPOISON, PageClass.OFFLINE]
    assert fake.seen_classes == sum(1 << c for c in bits)
    # makedumpfile's bit 4 excludes all page cache, private data or not
    both = 1 << PageClass.CACHE | 1 << PageClass.CACHE_PRIVATE
    assert DumpLevel(4).kernel_request() & both == both
    assert DumpLevel(0).kernel_request() == 1 << PageClass.HWPOISON | 1 << PageClass.OFFLINE
    assert DumpLevel(31).kernel_request() == ks.CLASSES_ALL


def test_pages_of_classes_the_level_keeps_are_not_excluded(tmp_path, device):
    truth = _truth()
    chunks = ks.pack_chunks([(0, 4096, 0x100000)], 64)
    got = _as_array(_scan(_src(tmp_path), device, FakeKernel(truth), chunks, level=0x08))
    user_or_always = np.isin(truth, [PageClass.USER, PageClass.HWPOISON, PageClass.OFFLINE])
    assert np.array_equal(got, np.where(user_or_always, truth, PageClass.KEEP))


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


def test_refusal_by_the_kernel_is_reported_with_its_errno(tmp_path, device):
    fake = FakeKernel(np.zeros(64, np.uint8), status=-errno.EXDEV)
    said: list[str] = []
    out = ks.try_kernel_scan(
        _src(tmp_path), 31, "auto", said.append, device=device, ioctl=fake,
        assume_proc_vmcore=True,
    )  # fmt: skip
    assert out is None and fake.calls == 0
    assert len(said) == 1
    assert "crashed kernel is not the running kernel" in said[0] and "kernel log" in said[0]
    with pytest.raises(DumpError, match="refused"):
        ks.try_kernel_scan(
            _src(tmp_path), 31, "require", said.append, device=device, ioctl=fake,
            assume_proc_vmcore=True,
        )  # fmt: skip


@pytest.mark.parametrize(
    ("err", "text"),
    [(errno.ERANGE, "outside the crashed kernel's memory"), (errno.EINVAL, "invalid"),
     (errno.EXDEV, "refused"), (errno.EIO, "error"),
     (errno.EOPNOTSUPP, "memory encryption"), (errno.EINTR, "signal")],
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


def test_class_not_asked_for_from_the_kernel_is_rejected(tmp_path, device):
    truth = np.zeros(64, np.uint8)
    truth[3] = 7  # HOLE is not a class the kernel may report
    with pytest.raises(DumpError, match="class 7, which was not asked for"):
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
    cache = cache_dir()
    return all(
        (cache / f"kernels/tree/linux-{v}/.git/debian-version").exists()
        for v in ("6.1", "6.12", "7.2")
    )


@pytest.mark.skipif(
    not _debian_trees_ready(),
    reason="Debian's 6.1/6.12/7.2 source trees are not in the cache (make sources fetches them)",
)
def test_committed_patch_series_match_the_canonical_sources():
    r = subprocess.run(
        [sys.executable, str(REPO / "kernel-patches/mkseries.py"), "--check"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr


def _mkseries():
    spec = importlib.util.spec_from_file_location("mkseries", REPO / "kernel-patches/mkseries.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_series_form_of_the_source_drops_the_module_only_parts():
    src = KSRC.read_text()
    intree = _mkseries().strip_oot(src)
    assert "VMCORE_PFN_LISTS_OOT" not in intree
    for module_only in ("kern_mount", "vpl_check_module_layout", "kernel_read"):
        assert module_only in src and module_only not in intree, module_only
    assert "vmcore_oldmem_layout(" in intree and "vmcore_has_callbacks()" in intree
    assert src.count("static int vpl_load_oldmem(") == 2
    assert intree.count("static int vpl_load_oldmem(") == 1


def test_series_form_keeps_else_branches_and_nested_conditionals():
    oot = "VMCORE_PFN_LISTS_OOT"
    text = (f"a\n#ifdef {oot}\nb\n#ifdef X\nc\n#endif\n#else\nd\n#ifdef Y\ny\n#endif\n"
            f"#endif /* {oot} */\ne\n#ifndef {oot}\nf\n#else\ng\n#endif\n")  # fmt: skip
    assert _mkseries().strip_oot(text) == "a\nd\n#ifdef Y\ny\n#endif\ne\nf\n"


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


# --- The kernel's own refusal, validation and scan code, compiled in userspace -------------
#
# The VMCOREINFO comparison, the note parser, the chunk checks and the scan loop of
# kernel-patches/src/fs/proc/vmcore_pfn_lists.c are cut out of the kernel source by name and
# compiled against small shims of the kernel functions they call, so the code that decides
# EXDEV / EINVAL / E2BIG / ERANGE and what is mapped and read in the capture kernel is tested
# here without one.

KSRC = REPO / "kernel-patches/src/fs/proc/vmcore_pfn_lists.c"
SHIM = r"""
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
typedef uint64_t u64; typedef uint32_t u32;
#define __user
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define ALIGN(x, a) (((x) + (a) - 1) & ~((__typeof__(x))(a) - 1))
#define IS_ALIGNED(x, a) (((x) & ((a) - 1)) == 0)
#define min_t(t, a, b) ((t)(a) < (t)(b) ? (t)(a) : (t)(b))
#define min(a, b) ((a) < (b) ? (a) : (b))
#define max(a, b) ((a) > (b) ? (a) : (b))
#define U64_MAX UINT64_MAX
#define U32_MAX UINT32_MAX
#define SZ_16K (16U << 10)
#define SZ_4G (1ULL << 32)
#define SZ_1M (1U << 20)
#define PAGE_SHIFT 12
#define PAGE_SIZE 4096UL
#define GFP_KERNEL 0
#define VMCOREINFO_NOTE_NAME "VMCOREINFO"
#define sizeof_field(t, m) sizeof(((t *)0)->m)
#define snprintf_ok snprintf
#define KERNEL_VERSION(a, b, c) (((a) << 16) + ((b) << 8) + (c))
#define LINUX_VERSION_CODE KERNEL_VERSION(6, 12, 0)
struct elf64_note { uint32_t n_namesz, n_descsz, n_type; };
/* A 64-byte struct page with the words the classification shim below reads. */
struct page {
    unsigned long flags, compound_head, lru, mapping, private;
    union { unsigned int page_type; int _mapcount; };
    unsigned int order; int _refcount, pad0; unsigned long pad1;
};
_Static_assert(sizeof(struct page) == 64, "struct page");
enum { PG_lru = 4, PG_head = 6, PG_private = 13, PG_swapcache = 9, PG_swapbacked = 19,
       PG_hwpoison = 22 };
#define PG_head_mask (1UL << PG_head)
#define CONFIG_MEMORY_FAILURE 1
struct free_area { unsigned long x; };
struct zone { struct free_area free_area[11]; };
static void *kmalloc(size_t n, int gfp) { return malloc(n); }
static void kfree(const void *p) { free((void *)p); }
static char vpl_reason[128];
"""
MAIN = r"""
static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb"); fseek(f, 0, SEEK_END); long sz = ftell(f); rewind(f);
    char *b = malloc(sz + 1); *n = fread(b, 1, sz, f); fclose(f); return b;
}
int main(int argc, char **argv) {
    size_t a, b;
    if (!strcmp(argv[1], "cmp")) {
        char *old = slurp(argv[2], &a), *cur = slurp(argv[3], &b);
        printf("%d|%s\n", vpl_compare_vmcoreinfo(old, a, cur, b), vpl_reason);
    } else if (!strcmp(argv[1], "layout")) {
        char *cur = slurp(argv[2], &a);
        printf("%d|%s\n", vpl_check_module_layout(cur, a), vpl_reason);
    } else {
        struct vpl_buf notes; char *d = NULL; size_t n = 0;
        notes.data = slurp(argv[2], &a); notes.size = a;
        int ret = vpl_find_vmcoreinfo(vpl_read_buf, &notes, a, &d, &n);
        if (!ret) { printf("found|"); fwrite(d, 1, n, stdout); } else printf("%d|", ret);
    }
    return 0;
}
"""
CUT = ["vpl_key_prefixes", "vpl_required_keys", "vpl_key_selected", "vpl_find_key",
       "vpl_lines_match", "vpl_compare_vmcoreinfo", "vpl_read_t", "vpl_buf", "vpl_read_buf",
       "vpl_find_vmcoreinfo", "vpl_check_module_layout"]  # fmt: skip


def _cut(src: str, name: str) -> str:
    """The definition of ``name`` (a static function or array, a struct or a typedef)."""
    lines = src.splitlines()
    pat = re.compile(rf"^(static .*\b{name}(\(|\[\])|struct {name} {{|typedef .*\b{name}\)?\()")
    start = next(i for i, ln in enumerate(lines) if pat.match(ln))
    if lines[start].startswith("typedef"):
        return lines[start] + "\n"
    end = next(i for i in range(start, len(lines)) if lines[i] in ("}", "};"))
    return "\n".join(lines[start : end + 1]) + "\n"


def _defines(src: str) -> str:
    """The file's own single-line ``#define VPL_...`` constants."""
    return "".join(ln + "\n" for ln in src.splitlines() if ln.startswith("#define VPL_"))


def _compile(d: Path, body: str, name: str):
    (d / f"{name}.c").write_text(body)
    subprocess.run(["gcc", "-Wall", "-Werror", "-Wno-unused-function", "-I/usr/include",
                    "-o", str(d / name), str(d / f"{name}.c")], check=True)  # fmt: skip

    def run(*args: str) -> str:
        return subprocess.run([str(d / name), *args], check=True, capture_output=True,
                              text=True).stdout  # fmt: skip

    return run


@pytest.fixture(scope="module")
def kernel_code(tmp_path_factory):
    if not shutil.which("gcc"):
        pytest.skip("gcc needed")
    d = tmp_path_factory.mktemp("vplc")
    text = KSRC.read_text()
    body = SHIM + _defines(text) + "".join(_cut(text, n) for n in CUT) + MAIN
    return d, _compile(d, body, "t")


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
    assert run("note", str(d / "n2")) == f"{-errno.ENODATA}|"


def test_kernel_finds_vmcoreinfo_after_the_notes_of_thousands_of_cpus(kernel_code):
    # 9000 CPUs' PRSTATUS notes come to more than 3 MiB before VMCOREINFO: the segment's
    # size is not a limit, only the VMCOREINFO descriptor's is.
    d, run = kernel_code
    core = _note(b"CORE\0", b"\1" * 336, 1)
    (d / "n3").write_bytes(core * 9000 + _note(b"VMCOREINFO\0", INFO_61.encode()))
    assert (d / "n3").stat().st_size > 3 << 20
    assert run("note", str(d / "n3")) == "found|" + INFO_61
    (d / "n4").write_bytes(core + _note(b"VMCOREINFO\0", b"X=1\n" * 5000))
    assert run("note", str(d / "n4")) == f"{-errno.ENODATA}|"


# The harness's struct page: 64 bytes, flags at 0, compound_head 8, lru 16, mapping 24,
# private 32, _mapcount 40, _refcount 48; its PG_* numbers are those of SHIM.
OWN_LAYOUT = (
    "SIZE(page)=64\nOFFSET(page.flags)=0\nOFFSET(page._refcount)=48\n"
    "OFFSET(page.mapping)=24\nOFFSET(page.lru)=16\nOFFSET(page._mapcount)=40\n"
    "OFFSET(page.private)=32\nOFFSET(page.compound_head)=8\nLENGTH(zone.free_area)=11\n"
    "NUMBER(PG_lru)=4\nNUMBER(PG_private)=13\nNUMBER(PG_swapcache)=9\n"
    "NUMBER(PG_swapbacked)=19\nNUMBER(PG_head_mask)=64\nNUMBER(PG_hwpoison)=22\n"
)


def _layout(kernel_code, info: str) -> tuple[int, str]:
    d, run = kernel_code
    (d / "own").write_text("OSRELEASE=6.12.117\n" + info + "CRASHTIME=1\n")
    status, reason = run("layout", str(d / "own")).strip().split("|", 1)
    return int(status), reason


def test_module_accepts_a_running_kernel_with_its_own_struct_page_layout(kernel_code):
    assert _layout(kernel_code, OWN_LAYOUT) == (0, "")


@pytest.mark.parametrize(
    ("old_line", "new_line"),
    [("SIZE(page)=64", "SIZE(page)=56"), ("OFFSET(page.private)=32", "OFFSET(page.private)=40"),
     ("NUMBER(PG_lru)=4", "NUMBER(PG_lru)=5"), ("NUMBER(PG_hwpoison)=22\n", ""),
     ("LENGTH(zone.free_area)=11", "LENGTH(zone.free_area)=12")],
)  # fmt: skip
def test_module_refuses_a_running_kernel_whose_layout_it_was_not_built_for(
    kernel_code, old_line, new_line
):
    status, reason = _layout(kernel_code, OWN_LAYOUT.replace(old_line, new_line))
    assert status == -errno.EXDEV
    assert old_line.strip() in reason and "running kernel has" in reason


# The scan harness: vpl_scan() over a fake physical memory.  Old memory is one range of
# 64 MiB whose struct pages follow a fixed pattern; memremap() outside it hands out a scratch
# buffer and counts a bad mapping; the page helpers count every struct page they are given
# that lies in a mapping of old memory (classified in place) or on a page boundary; the
# user's chunk table can be rewritten behind the kernel's back once it has been read whole.
SCAN_SHIM = r"""
#include <linux/vmcore_pfn_lists.h>
#define ERESTARTSYS 512
#define MEMREMAP_WB 1
#define IORESOURCE_SYSTEM_RAM 1
#define IORES_DESC_NONE 0
enum { REGION_INTERSECTS, REGION_DISJOINT, REGION_MIXED };
#define OLD_BASE 0x100000000ULL
#define OLD_SIZE (64ULL << 20)
#define CAP_BASE 0x7000000ULL
#define CAP_SIZE 0x100000ULL
#define current 0
#define cond_resched() do { } while (0)
#define pr_info_once(...) do { } while (0)
#define u64_to_user_ptr(x) ((void *)(uintptr_t)(x))
static int vpl_status;
static unsigned char *oldmem;
static long n_maps, n_bad_maps, n_inplace, n_aligned, n_sigchecks, sig_after = -1;
static unsigned char *map_lo, *map_hi;
static struct vmcore_pfn_chunk *utable; static size_t utable_bytes, utable_read;
static int race, has_cb;
static void *kzalloc(size_t n, int gfp) { return calloc(1, n); }
static unsigned long __get_free_page(int gfp)
{ return (unsigned long)aligned_alloc(4096, 4096); }
static void free_page(unsigned long p) { free((void *)p); }
static int region_intersects(u64 s, size_t n, unsigned long f, unsigned long d)
{ return s < CAP_BASE + CAP_SIZE && CAP_BASE < s + n ? REGION_INTERSECTS : REGION_DISJOINT; }
static bool vmcore_has_callbacks(void) { return has_cb; }
static void *memremap(u64 pa, size_t n, int flags)
{
    n_maps++;
    if (pa < OLD_BASE || pa + n > OLD_BASE + OLD_SIZE) {
        n_bad_maps++;
        map_lo = map_hi = NULL;
        return calloc(1, n);
    }
    map_lo = oldmem + (pa - OLD_BASE); map_hi = map_lo + n;
    return map_lo;
}
static void memunmap(void *p)
{
    if ((unsigned char *)p != map_lo)
        free(p);
    map_lo = map_hi = NULL;
}
static bool signal_pending(int t) { return sig_after >= 0 && n_sigchecks++ >= sig_after; }
static bool fatal_signal_pending(int t) { return false; }
static unsigned long copy_from_user(void *d, const void *s, size_t n)
{
    memcpy(d, s, n);
    if ((const unsigned char *)s >= (unsigned char *)utable &&
        (const unsigned char *)s < (unsigned char *)utable + utable_bytes) {
        utable_read += n;
        if (race && utable_read >= utable_bytes)
            for (size_t i = 0; i < utable_bytes / sizeof(*utable); i++)
                utable[i].mem_map_paddr = CAP_BASE;
    }
    return 0;
}
static unsigned long copy_to_user(void *d, const void *s, size_t n)
{ memcpy(d, s, n); return 0; }
#define BIT(n) (1UL << (n))
#define get_user(x, p) ((x) = *(p), 0)
static int copy_struct_from_user(void *d, size_t ksize, const void *s, size_t usize)
{
    for (size_t i = ksize; i < usize; i++)
        if (((const unsigned char *)s)[i])
            return -E2BIG;
    memset(d, 0, ksize);
    copy_from_user(d, s, min(ksize, usize));
    return 0;
}
static void seen(const void *p)
{
    n_inplace += (const unsigned char *)p >= map_lo && (const unsigned char *)p < map_hi;
    n_aligned += (uintptr_t)p % 4096 == 0;
}
#define P(name, expr) static bool name(const struct page *p) { seen(p); return expr; }
P(PagePoisoned, p->flags == ~0UL) P(PageTail, p->compound_head & 1)
P(PageHead, (p->flags >> PG_head) & 1) P(PageHuge, false) P(PageSlab, p->page_type == 0x80)
P(PageBuddy, p->page_type == 0xf0) P(PageLRU, (p->flags >> PG_lru) & 1)
P(PageAnon, p->mapping & 1) P(PagePrivate, (p->flags >> PG_private) & 1)
P(PageHWPoison, (p->flags >> PG_hwpoison) & 1) P(PageOffline, p->page_type == 0xf1)
#define CONFIG_UNACCEPTED_MEMORY 1
P(PageUnaccepted, p->page_type == 0xf7)
static unsigned int compound_order(const struct page *p)
{ seen(p); return (p->flags >> PG_head) & 1 ? p[1].order : 0; }
static unsigned long page_private(const struct page *p) { seen(p); return p->private; }
static bool test_bit(int nr, const unsigned long *w) { seen(w); return (*w >> nr) & 1; }
#define page_folio(p) (p)
static unsigned long *folio_flags(struct page *p, int n) { seen(p); return &p[n].flags; }
static struct vpl_range vpl_store[1] = { { OLD_BASE, OLD_BASE + OLD_SIZE } };
static struct vpl_range *vpl_ranges = vpl_store;
static unsigned int vpl_nr_ranges = 1;
"""
SCAN_MAIN = r"""
/* s MODE NCHUNKS PAGES ALIAS SIG_AFTER MAX_RUNS MAX_CALLS | s chunk START NR PADDR PREV */
int main(int argc, char **argv) {
    oldmem = aligned_alloc(4096, OLD_SIZE);
    memset(oldmem, 0, OLD_SIZE);
    if (!strcmp(argv[1], "chunk")) {
        vpl_store[0].start = 0x100000; vpl_store[0].end = 0x10000000;
        struct vmcore_pfn_chunk c = { strtoull(argv[2], 0, 0), strtoull(argv[3], 0, 0),
                                      strtoull(argv[4], 0, 0) };
        printf("%d\n", vpl_check_chunk(&c, strtoull(argv[5], 0, 0)));
        return 0;
    }
    struct page *sp = (struct page *)oldmem;
    for (size_t k = 0; k < OLD_SIZE / sizeof(*sp); k++) {
        if (k % 7 == 0) sp[k].page_type = 0xf0;
        if (k % 7 == 1) sp[k].flags = 1UL << PG_lru;
        if (k % 7 == 2) sp[k].mapping = 1;
    }
    race = !strcmp(argv[1], "race"); has_cb = !strcmp(argv[1], "callback");
    if (!strcmp(argv[1], "unaccepted"))  /* a block not accepted yet, typed on page 1024 */
        sp[1024] = (struct page){ .page_type = 0xf7 };
    u32 nchunks = atoi(argv[2]); u64 pages = atoi(argv[3]); int alias = atoi(argv[4]);
    sig_after = atol(argv[5]);
    u32 max_runs = atoi(argv[6]); int max_calls = atoi(argv[7]);
    utable = calloc(nchunks, sizeof(*utable)); utable_bytes = nchunks * sizeof(*utable);
    for (u32 i = 0; i < nchunks; i++) {
        utable[i].start_pfn = i * pages; utable[i].nr_pages = pages;
        utable[i].mem_map_paddr = OLD_BASE + (alias ? 0 : i * pages * sizeof(struct page));
    }
    struct vmcore_pfn_run *runs = calloc(max_runs, sizeof(*runs));
    /* VPL_CLASSES / VPL_SIZE: the class mask and the size field of the request */
    const char *cls = getenv("VPL_CLASSES"), *usz = getenv("VPL_SIZE");
    struct vmcore_pfn_scan req = { .size = usz ? atoi(usz) : sizeof(req),
        .classes = cls ? strtoul(cls, 0, 0) : VMCORE_PFN_CLASSES_ALL,
        .nr_chunks = nchunks, .chunks = (uintptr_t)utable, .runs = (uintptr_t)runs,
        .max_runs = max_runs };
    for (int call = 0; call < max_calls && !req.done; call++) {
        long ret = vpl_scan(&req);
        u64 covered = 0;
        for (int k = 0; k < VMCORE_PFN_NR_CLASSES; k++) covered += req.counts[k];
        printf("C %ld %u %u %llu %u %llu", ret, req.nr_runs, req.next_chunk,
               (unsigned long long)req.next_pfn, req.done, (unsigned long long)covered);
        for (int k = 0; k < VMCORE_PFN_NR_CLASSES; k++) printf(" %llu",
               (unsigned long long)req.counts[k]);
        printf("\n");
        if (ret) break;
        /* the runs of small scans only: the large ones are about bounds */
        for (u32 r = 0; nchunks * pages <= 65536 && r < req.nr_runs; r++)
            printf("R %llu %u %u\n", (unsigned long long)runs[r].pfn, runs[r].count,
                   runs[r].class);
    }
    printf("T %ld %ld %ld %ld\n", n_maps, n_bad_maps, n_inplace, n_aligned);
    return 0;
}
"""
# Whatever of these the source defines: the harness compiles the scan of any version.
SCAN_CUT = ["vpl_range", "vpl_in_old_memory", "vpl_check_chunk", "vpl_check_chunks",
            "vpl_classify", "vpl_out", "vpl_state", "vpl_flush", "vpl_close_cur",
            "vpl_add_run", "vpl_check_callbacks", "vpl_scan_chunk", "vpl_scan_chunks",
            "vpl_scan"]  # fmt: skip


@pytest.fixture(scope="module")
def scan_code(tmp_path_factory):
    if not shutil.which("gcc"):
        pytest.skip("gcc needed")
    d = tmp_path_factory.mktemp("vpls")
    text = KSRC.read_text()
    cuts = []
    for n in SCAN_CUT:
        try:
            cuts.append(_cut(text, n))
        except StopIteration:
            continue
    uapi = f"-I{UAPI.parents[1]}"
    # struct vpl_range (cuts[0]) comes before the shim's globals that use it
    body = SHIM + _defines(text) + cuts[0] + SCAN_SHIM + "".join(cuts[1:]) + SCAN_MAIN
    (d / "s.c").write_text(body)
    subprocess.run(["gcc", "-O1", "-Wall", "-Werror", "-Wno-unused-function",
                    "-Wno-unused-variable", uapi,
                    "-I/usr/include", "-o", str(d / "s"), str(d / "s.c")], check=True)  # fmt: skip
    return d / "s"


@dataclass
class Scan:
    calls: list[list[int]]  # ret nr_runs next_chunk next_pfn done covered counts[8]
    runs: np.ndarray  # (pfn, count, class) rows
    maps: int
    bad_maps: int
    inplace: int
    aligned: int


def _run_scan(exe: Path, mode="plain", nchunks=2, pages=1024, alias=0, sig_after=-1,
              max_runs=1 << 16, max_calls=1 << 20, classes: int | None = None,
              size: int | None = None) -> Scan:  # fmt: skip
    env = dict(os.environ)
    if classes is not None:
        env["VPL_CLASSES"] = str(classes)
    if size is not None:
        env["VPL_SIZE"] = str(size)
    out = subprocess.run(
        [str(exe), mode, *(str(x) for x in (nchunks, pages, alias, sig_after, max_runs,
                                            max_calls))],
        check=True, capture_output=True, text=True, env=env,
    ).stdout.splitlines()  # fmt: skip
    calls = [[int(x) for x in ln.split()[1:]] for ln in out if ln.startswith("C ")]
    runs = np.array([[int(x) for x in ln.split()[1:]] for ln in out if ln.startswith("R ")],
                    np.int64).reshape(-1, 3)  # fmt: skip
    maps, bad, inplace, aligned = (int(x) for x in out[-1].split()[1:])
    return Scan(calls, runs, maps, bad, inplace, aligned)


def _pattern_classes(n: int) -> np.ndarray:
    """The classes the harness's old memory pattern gives struct page k (dump level 31)."""
    k = np.arange(n)
    out = np.zeros(n, np.uint8)
    out[k % 7 == 0] = PageClass.FREE
    out[k % 7 == 1] = PageClass.CACHE
    out[k % 7 == 2] = PageClass.USER
    return out


def _expand(runs: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n, np.uint8)
    for pfn, count, cls in runs:
        out[pfn : pfn + count] = cls
    return out


def test_kernel_scan_resumed_with_small_buffers_gives_every_page_its_class(scan_code):
    # 3 chunks of 1000 pages: batches of copied struct pages end mid-chunk, and a 3-run
    # buffer makes the scan resume hundreds of times.
    s = _run_scan(scan_code, nchunks=3, pages=1000, max_runs=3)
    assert all(c[0] == 0 for c in s.calls) and s.calls[-1][4] == 1
    assert np.array_equal(_expand(s.runs, 3000), _pattern_classes(3000))
    totals = np.sum([c[6:] for c in s.calls], axis=0)
    assert totals.tolist() == np.bincount(_pattern_classes(3000), minlength=8).tolist()
    assert s.bad_maps == 0


@pytest.mark.parametrize(
    "asked", [[PageClass.CACHE], [PageClass.FREE, PageClass.USER], [PageClass.HWPOISON], []]
)
def test_kernel_reports_only_the_classes_asked_for(scan_code, asked):
    s = _run_scan(scan_code, nchunks=2, pages=1024, classes=sum(1 << c for c in asked))
    want = _pattern_classes(2048)
    want[~np.isin(want, asked)] = PageClass.KEEP
    assert s.calls[-1][0] == 0
    assert np.array_equal(_expand(s.runs, 2048), want)
    assert s.calls[-1][6:] == np.bincount(want, minlength=8).tolist()


@pytest.mark.parametrize("free", [True, False])
def test_kernel_counts_an_unaccepted_block_as_free_as_the_userspace_scan_does(scan_code, free):
    # classify.py: unaccepted memory is FREE for 1 << (LENGTH(zone.free_area) - 1) pages
    asked = [PageClass.FREE, PageClass.CACHE, PageClass.USER] if free else [PageClass.USER]
    s = _run_scan(scan_code, "unaccepted", nchunks=3, pages=1024,
                  classes=sum(1 << c for c in asked))  # fmt: skip
    want = _pattern_classes(3072)
    if free:
        want[1024:2048] = PageClass.FREE  # 11 orders in the harness's struct zone
    else:
        want[1024] = PageClass.KEEP  # the typed page is not user memory
    want[~np.isin(want, asked)] = PageClass.KEEP
    assert np.array_equal(_expand(s.runs, 3072), want)


@pytest.mark.parametrize(
    ("classes", "size", "err"),
    [(1, None, errno.EINVAL), (0x80, None, errno.EINVAL), (None, 112, errno.EINVAL),
     (None, 8192, errno.E2BIG)],
)  # fmt: skip
def test_kernel_refuses_unknown_classes_and_sizes_before_reading_a_page(
    scan_code, classes, size, err
):
    s = _run_scan(scan_code, classes=classes, size=size)
    assert s.calls[0][0] == -err and s.maps == 0


def test_kernel_scan_maps_only_the_validated_table_when_it_is_rewritten_during_the_call(
    scan_code,
):
    # Once the kernel has read the whole chunk table, the "other thread" points every chunk
    # at the capture kernel's RAM.  Every mapping must still be of old memory, and the
    # answer must be the unraced one.
    raced = _run_scan(scan_code, "race", nchunks=4, pages=1024)
    plain = _run_scan(scan_code, nchunks=4, pages=1024)
    assert raced.bad_maps == 0
    assert raced.calls == plain.calls and np.array_equal(raced.runs, plain.runs)


def test_kernel_classifies_a_copy_of_the_struct_pages_never_page_aligned(scan_code):
    s = _run_scan(scan_code, nchunks=2, pages=1024)
    assert s.maps > 0
    assert s.inplace == 0, "a page helper read a struct page where the old memory is mapped"
    # compound_head() would take a page-aligned copy for a hugetlb fake head
    assert s.aligned == 0


def test_kernel_scan_of_aliasing_chunks_is_bounded_per_call_and_resumes(scan_code):
    # 8192 chunks of 256 page frames each, all naming the same struct pages: 2^21 frames.
    one = _run_scan(scan_code, nchunks=8192, pages=256, alias=1, max_calls=1)
    ret, _, next_chunk, _, done, covered = one.calls[0][:6]
    # 256 chunks of 256 frames: the chunk bound ends the call first
    assert ret == 0 and not done and covered == 256 * 256 and next_chunk == 256
    whole = _run_scan(scan_code, nchunks=8192, pages=256, alias=1)
    assert whole.calls[-1][4] == 1 and all(c[0] == 0 for c in whole.calls)
    assert sum(c[5] for c in whole.calls) == 1 << 21
    assert whole.bad_maps == 0


def test_kernel_scan_call_ends_after_4_gib_of_page_frames(scan_code):
    # 64 chunks of 2^17 frames (the struct pages of 2^17 frames fill the harness's old
    # memory, so they alias): the page frame bound ends the call inside chunk 8.
    one = _run_scan(scan_code, nchunks=64, pages=1 << 17, alias=1, max_runs=1 << 20, max_calls=1)
    ret, _, next_chunk, next_pfn, done, covered = one.calls[0][:6]
    assert (ret, done, covered, next_chunk, next_pfn) == (0, 0, 1 << 20, 8, 1 << 20)


def test_kernel_scan_returns_erestartsys_on_a_pending_signal_before_reading(scan_code):
    s = _run_scan(scan_code, nchunks=2, pages=1024, sig_after=0)
    assert s.calls[0][0] == -512 and s.maps == 0


def test_kernel_scan_stops_early_with_its_cursor_when_a_signal_arrives(scan_code):
    s = _run_scan(scan_code, nchunks=2, pages=1024, sig_after=1, max_calls=1)
    ret, _, _, next_pfn, done, covered = s.calls[0][:6]
    assert ret == 0 and not done and 0 < covered < 2048 and next_pfn == covered


def test_kernel_scan_is_refused_while_a_vmcore_callback_is_registered(scan_code):
    s = _run_scan(scan_code, "callback", nchunks=2, pages=1024)
    assert s.calls[0][0] == -errno.EOPNOTSUPP and s.maps == 0


@pytest.mark.parametrize(
    ("chunk", "prev_end", "expect"),
    [
        ((0x8000, 0x8000, 0x1000000), 0, 0),
        ((0x8000, 0x8000, 0x1000000), 0x8001, -errno.EINVAL),  # overlaps the previous chunk
        ((0x8000, 0, 0x1000000), 0, -errno.EINVAL),  # empty
        ((0x8000, 1 << 19, 0x1000000), 0, -errno.E2BIG),  # larger than the cap
        ((0x8000, 1 << 63, 0x1000000), 1 << 62, -errno.E2BIG),  # huge: capped before use
        (((1 << 64) - 8, 16, 0x1000000), 0, -errno.EINVAL),  # pfn range wraps
        ((0x8000, 0x8000, 0x1000004), 0, -errno.EINVAL),  # misaligned struct pages
        ((0x8000, 0x8000, 0xFF00000), 0, -errno.ERANGE),  # straddles the end of old memory
        ((0x8000, 0x8000, 0x20000000), 0, -errno.ERANGE),  # outside old memory
        ((0x8000, 4, (1 << 64) - 64), 0, -errno.ERANGE),  # address wraps
        ((0x8000, 0x8000, 0x6FF0000), 0, -errno.ERANGE),  # old memory, but the capture
        ((0x8000, 0x8000, 0x70F0000), 0, -errno.ERANGE),  # kernel's RAM overlaps it
        ((0x8000, 0x8000, 0x8000000), 0, 0),
    ],
)  # fmt: skip
def test_kernel_chunk_validation(scan_code, chunk, prev_end, expect):
    out = subprocess.run([str(scan_code), "chunk", *(str(x) for x in chunk), str(prev_end)],
                         check=True, capture_output=True, text=True).stdout  # fmt: skip
    assert int(out) == expect


# The setup harness: vpl_setup() as an open() runs it, over fake sources of the crashed
# kernel's memory and notes (vmcore's own data, or a /proc/vmcore read through a path), with
# one allocation or open that fails on request.
SETUP_SHIM = r"""
#include <elf.h>
#define GFP_KERNEL 0
#define CC_ATTR_MEM_ENCRYPT 1
#define VMCOREINFO_NOTE_SIZE 4096
#define O_RDONLY 0
#define ENODATA_ 61
#define IS_ERR(p) ((uintptr_t)(p) >= (uintptr_t)-4095)
#define PTR_ERR(p) ((long)(intptr_t)(p))
#define ERR_PTR(e) ((void *)(intptr_t)(e))
#define pr_info(...) do { } while (0)
#define mutex_lock(m) do { } while (0)
#define mutex_unlock(m) do { } while (0)
#define mutex_lock_killable(m) 0
struct elf64_hdr {
    unsigned char e_ident[16]; uint16_t e_type, e_machine; uint32_t e_version;
    uint64_t e_entry, e_phoff, e_shoff; uint32_t e_flags;
    uint16_t e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx;
};
struct elf64_phdr {
    uint32_t p_type, p_flags; uint64_t p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align;
};
struct file { int x; };
static int vpl_lock, fail_next, encrypted, n_layout, n_paths;
static bool vpl_ready; static int vpl_status;
static struct vpl_range *vpl_ranges; static unsigned int vpl_nr_ranges;
static unsigned char image[1 << 16]; static size_t image_size, notes_off, notes_size;
static char running_note[VMCOREINFO_NOTE_SIZE];
static void *kcalloc(size_t n, size_t s, int g)
{ if (fail_next) { fail_next = 0; return NULL; } return calloc(n ? n : 1, s); }
static void *kvcalloc(size_t n, size_t s, int g) { return kcalloc(n, s, g); }
static void *kvmalloc(size_t n, int g) { return malloc(n); }
static void kvfree(const void *p) { free((void *)p); }
static void *kmemdup(const void *p, size_t n, int g)
{ void *q = malloc(n); memcpy(q, p, n); return q; }
static bool cc_platform_has(int attr) { return encrypted; }
static unsigned long paddr_vmcoreinfo_note(void) { return 0; }
static void *phys_to_virt(unsigned long pa) { return running_note; }
static void sort(void *b, size_t n, size_t s, int (*cmp)(const void *, const void *), void *sw)
{ qsort(b, n, s, cmp); }
/* the crashed kernel as fs/proc/vmcore.c holds it */
static int vmcore_oldmem_layout(int (*fn)(void *, u64, u64), void *arg, const void **notes,
                                size_t *size)
{
    n_layout++;
    fn(arg, 0x100000, 0x3f00000); fn(arg, 0x100000000ULL, 0x40000000);
    *notes = image + notes_off; *size = notes_size;
    return 0;
}
/* the crashed kernel as a path names it */
static struct file the_file;
static struct file *filp_open(const char *path, int flags, int mode)
{
    n_paths++;
    if (fail_next) { fail_next = 0; return ERR_PTR(-ENOMEM); }
    return &the_file;
}
static long kernel_read(struct file *f, void *buf, size_t n, loff_t *pos)
{
    if (*pos >= (loff_t)image_size) return 0;
    if (n > image_size - *pos) n = image_size - *pos;
    memcpy(buf, image + *pos, n); *pos += n; return n;
}
static void filp_close(struct file *f, void *id) { }
"""
SETUP_MAIN = r"""
static size_t put_note(unsigned char *at, const char *name, const char *desc)
{
    Elf64_Nhdr *nh = (Elf64_Nhdr *)at;
    size_t nl = strlen(name) + 1, dl = strlen(desc);
    nh->n_namesz = nl; nh->n_descsz = dl; nh->n_type = 0;
    memcpy(at + sizeof(*nh), name, nl);
    memcpy(at + sizeof(*nh) + ((nl + 3) & ~3UL), desc, dl);
    return sizeof(*nh) + ((nl + 3) & ~3UL) + ((dl + 3) & ~3UL);
}
/* u SCENARIO CRASHED_INFO RUNNING_INFO OPENS */
int main(int argc, char **argv) {
    size_t a, b;
    char *old = slurp(argv[2], &a), *cur = slurp(argv[3], &b);
    old[a] = cur[b] = 0;
    Elf64_Ehdr *eh = (Elf64_Ehdr *)image; Elf64_Phdr *ph = (Elf64_Phdr *)(image + 64);
    memcpy(eh->e_ident, ELFMAG, SELFMAG); eh->e_ident[EI_CLASS] = ELFCLASS64;
    eh->e_phoff = 64; eh->e_phentsize = sizeof(*ph); eh->e_phnum = 3;
    notes_off = 64 + 3 * sizeof(*ph);
    notes_size = put_note(image + notes_off, "VMCOREINFO", old);
    image_size = notes_off + notes_size;
    ph[0].p_type = PT_NOTE; ph[0].p_offset = notes_off; ph[0].p_filesz = notes_size;
    ph[1].p_type = PT_LOAD; ph[1].p_paddr = 0x100000; ph[1].p_memsz = 0x3f00000;
    ph[2].p_type = PT_LOAD; ph[2].p_paddr = 0x100000000ULL; ph[2].p_memsz = 0x40000000;
    put_note((unsigned char *)running_note, "VMCOREINFO", cur);
    fail_next = !strcmp(argv[1], "transient"); encrypted = !strcmp(argv[1], "encrypted");
    for (int i = 0; i < atoi(argv[4]); i++) {
        vpl_setup();
        printf("%d %d %u %d %d|%s\n", vpl_ready, vpl_status, vpl_nr_ranges, n_layout, n_paths,
               vpl_reason);
    }
    return 0;
}
"""
SETUP_CUT = ["vpl_key_prefixes", "vpl_required_keys", "vpl_key_selected", "vpl_find_key",
             "vpl_lines_match", "vpl_compare_vmcoreinfo", "vpl_read_t", "vpl_buf",
             "vpl_read_buf", "vpl_find_vmcoreinfo", "vpl_cmp_range", "vpl_merge_ranges",
             "vpl_layout", "vpl_add_range", "vpl_vmcore_range", "vpl_load_oldmem",
             "vpl_read_vmcore_headers", "vpl_permanent", "vpl_setup"]  # fmt: skip


@pytest.fixture(scope="module")
def setup_code(tmp_path_factory):
    if not shutil.which("gcc"):
        pytest.skip("gcc needed")
    d = tmp_path_factory.mktemp("vplu")
    text = KSRC.read_text()
    cuts = []
    for n in SETUP_CUT:
        try:
            cuts.append(_cut(text, n))
        except StopIteration:
            continue
    slurp = MAIN[: MAIN.index("int main")]
    body = (SHIM + _defines(text) + _cut(text, "vpl_range") + SETUP_SHIM + "".join(cuts)
            + slurp + SETUP_MAIN)  # fmt: skip
    (d / "u.c").write_text(body)
    subprocess.run(["gcc", "-Wall", "-Werror", "-Wno-unused-function", "-Wno-unused-variable",
                    "-I/usr/include", "-o", str(d / "u"), str(d / "u.c")], check=True)  # fmt: skip

    def run(scenario: str, crashed: str, running: str, opens: int) -> list[tuple]:
        (d / "old").write_text(crashed)
        (d / "cur").write_text(running)
        out = subprocess.run([str(d / "u"), scenario, str(d / "old"), str(d / "cur"),
                              str(opens)], check=True, capture_output=True,
                             text=True).stdout  # fmt: skip
        rows = []
        for ln in out.splitlines():
            nums, reason = ln.split("|", 1)
            rows.append((*(int(x) for x in nums.split()), reason))
        return rows

    return run


def test_open_after_a_failed_setup_tries_again_and_succeeds(setup_code):
    # The first open runs out of memory; it must not leave the interface refused.
    first, second = setup_code("transient", INFO_61, INFO_61, 2)
    assert first[0] == 0  # not ready: nothing was kept
    assert second[:3] == (1, 0, 2)


def test_a_verdict_about_the_kernels_is_kept_and_not_recomputed(setup_code):
    other = INFO_61.replace("BUILD-ID=0123abcd", "BUILD-ID=0123abce")
    rows = setup_code("plain", other, INFO_61, 3)
    assert [r[:2] for r in rows] == [(1, -errno.EXDEV)] * 3
    assert rows[0][3:5] == rows[-1][3:5]  # the crashed kernel's data was read once
    assert "BUILD-ID" in rows[-1][5]


def test_setup_refuses_when_memory_encryption_is_active(setup_code):
    ((ready, status, _, layout, paths, reason),) = setup_code("encrypted", INFO_61, INFO_61, 1)
    assert (ready, status, layout, paths) == (1, -errno.EOPNOTSUPP, 0, 0)
    assert "encryption" in reason


def test_setup_takes_old_memory_from_vmcore_not_from_a_path(setup_code):
    ((ready, status, nr_ranges, layout, paths, _),) = setup_code("plain", INFO_61, INFO_61, 1)
    assert (ready, status, nr_ranges, paths) == (1, 0, 2, 0) and layout > 0


def test_memmap_chunks_with_a_split_struct_page_are_packed_without_it():
    from dumpfilter.memmap import Chunk

    rows = [Chunk(0, 100, 0x1000), Chunk(100, 1, 0x2FF8, split=8, paddr2=0x9000),
            Chunk(101, 50, 0x9038)]  # fmt: skip
    packed = ks.pack_chunks(rows, 56)
    assert packed["start_pfn"].tolist() == [0, 101]
    assert packed["paddr"].tolist() == [0x1000, 0x9038]


@pytest.mark.parametrize("seed", range(6))
def test_painted_window_has_each_run_class_and_keep_between(seed):
    """Disjoint sorted runs, adjacent or separated, touching the window's edges or not: every
    page of a run gets its class, every other page is KEEP."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 5000))
    cuts = np.unique(rng.integers(0, n + 1, size=int(rng.integers(0, 60))))
    bounds = np.concatenate([[0], cuts, [n]]) if seed % 2 else cuts
    lo, hi = bounds[:-1], bounds[1:]
    take = (hi > lo) & (rng.random(len(lo)) < 0.7)
    lo, hi = lo[take], hi[take]
    cls = rng.integers(1, 7, size=len(lo)).astype(np.uint8)
    want = np.zeros(n, np.uint8)
    for a, b, c in zip(lo, hi, cls, strict=True):
        want[a:b] = c
    got = ks._painted(n, lo.astype(np.int64), hi.astype(np.int64), cls)
    assert got.dtype == np.uint8 and np.array_equal(got, want)


@pytest.mark.parametrize(
    "pfn,count,after",
    [
        ([10, 5], [2, 2], 0),  # descending
        ([10, 11], [2, 2], 0),  # overlapping
        ([10], [2], 11),  # starts before the end of the previous call's last run
        ([1 << 63], [1], 0),  # beyond int64: would wrap negative
        ([(1 << 63) - 2], [4], 0),  # its end would wrap
    ],
)
def test_runs_out_of_order_or_overlapping_are_refused(pfn, count, after):
    with pytest.raises(ks.KernelScanUnavailable, match="out of PFN order or overlapping"):
        ks.ScanResult.from_runs(np.array(pfn, np.uint64), np.array(count, np.uint64),
                                np.full(len(pfn), 4, np.uint32), after=after)  # fmt: skip


def test_overlapping_runs_from_the_kernel_fall_back_with_one_line(tmp_path, device):
    """A kernel answering overlapping runs cannot be painted from: ``auto`` says so and lets
    the userspace scan run."""

    def overlapping(fd: int, request: int, buf: bytearray) -> int:
        if request == ks.IOC_INFO:
            return FakeKernel(np.zeros(64, np.uint8))(fd, request, buf)
        f = list(ks.SCAN.unpack(bytes(buf)))
        arr = np.array([(8, 4, 4), (10, 4, 4)], ks.RUN_DTYPE)
        ctypes.memmove(f[5], arr.ctypes.data, arr.nbytes)
        f[7], f[8], f[9], f[10] = 2, f[3], 1, 64
        buf[:] = ks.SCAN.pack(*f)
        return 0

    said: list[str] = []
    out = ks.try_kernel_scan(
        _src(tmp_path), 31, "auto", said.append, device=device, ioctl=overlapping,
        chunks=ks.pack_chunks([(0, 64, 0x1000)], 64), assume_proc_vmcore=True,
    )  # fmt: skip
    assert out is None and said == [
        "kernel scan not used (kernel returned runs out of PFN order or overlapping); "
        "using the userspace scan"
    ]


def test_kernel_scan_windows_are_bounded_as_the_userspace_scans_are(tmp_path, device):
    """The report and the writers hold arrays of a window's size: a kernel scan must not
    hand them larger windows than the userspace scan does."""
    n = 3 * WINDOW_PFNS + 5
    truth = np.zeros(n, np.uint8)
    truth[WINDOW_PFNS - 3 : WINDOW_PFNS + 3] = PageClass.FREE  # a run across a window edge
    src = _src(tmp_path, max_pfn=n, ram=((0, n),))
    c = _scan(src, device, FakeKernel(truth), ks.pack_chunks([(0, n, 0x1000)], 64))
    sizes = [len(w) for _, w in c.windows()]
    assert sizes == [WINDOW_PFNS] * 3 + [5]
    assert np.array_equal(_as_array(c), truth)
