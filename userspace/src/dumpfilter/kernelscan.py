"""Client of ``/proc/vmcore_pfn_lists``: let the capture kernel classify the pages.

The kernel side (kernel-patches/src/fs/proc/vmcore_pfn_lists.c, UAPI
``include/uapi/linux/vmcore_pfn_lists.h``) takes the mem_map chunk table the userspace scan
builds (memmap.py: ``(start_pfn, nr_pages, struct_page_paddr)``), the page classes to report
and a run buffer, and answers ``(pfn, count, class)`` runs, classified by its own
``PageBuddy()``/``PageLRU()``/... helpers; which classes a dump level excludes is decided
in userspace (``DumpLevel.kernel_request``), not in the kernel.  It refuses with
``EXDEV`` unless the crashed kernel's VMCOREINFO shows the running kernel (build id, struct
page layout, page flag and type values), because only then do its helpers read the old
struct pages correctly (the version-skew objection of 2012).  It also refuses, with
``EOPNOTSUPP``, when memory encryption is active or a driver registered a vmcore callback;
the kernel log says why.  One call does a bounded amount of work; ``KernelScanner.scan``
resumes until the kernel says done.  Class numbers are ``PageClass``.

``try_kernel_scan`` returns a ``Classification`` or, in ``auto`` mode, ``None`` after one
line saying why the userspace scan has to run instead; ``require`` raises ``DumpError``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from .contracts import Source
from .dumplevel import DumpLevel
from .errors import DumpError
from .layout import WINDOW_PFNS, Layout, apply_rules, mark_holes
from .pageclass import PageClass
from .source import PROC_VMCORE, is_proc_vmcore

DEVICE = "/proc/vmcore_pfn_lists"

# ---- The ABI of include/uapi/linux/vmcore_pfn_lists.h (x86_64 little-endian layout; every
# u64 is 8-aligned in the C structs, so there is no padding).  Nothing else in this module
# knows how the structures are laid out or how the ioctl numbers are made.

NR_CLASSES = 8
CLASSES_ALL = 0x7E  # VMCORE_PFN_CLASSES_ALL: classes 1..6, bit (1 << class) each
INFO = struct.Struct("<IiIIIII")  # struct vmcore_pfn_info
SCAN = struct.Struct("<IIIIQQIIIIQ8Q")  # struct vmcore_pfn_scan
CHUNK_DTYPE = np.dtype([("start_pfn", "<u8"), ("nr_pages", "<u8"), ("paddr", "<u8")])
RUN_DTYPE = np.dtype([("pfn", "<u8"), ("count", "<u4"), ("cls", "<u4")])
assert INFO.size == 28 and SCAN.size == 120
assert CHUNK_DTYPE.itemsize == 24 and RUN_DTYPE.itemsize == 16

_IOC_MAGIC = 0xB9


def _ioc(direction: int, nr: int, size: int) -> int:
    """Linux _IOC() on x86_64: dir(2) | size(14) | type(8) | nr(8)."""
    return (direction << 30) | (size << 16) | (_IOC_MAGIC << 8) | nr


IOC_INFO = _ioc(3, 1, INFO.size)  # _IOWR
IOC_SCAN = _ioc(3, 2, SCAN.size)  # _IOWR


@dataclass
class ScanReply:
    """The fields of struct vmcore_pfn_scan the kernel writes back."""

    nr_runs: int
    next_chunk: int
    done: bool
    next_pfn: int
    counts: list[int]


def pack_scan(classes: int, chunks_ptr: int, nr_chunks: int, runs_ptr: int, max_runs: int,
              next_chunk: int = 0, next_pfn: int = 0, *, size: int = SCAN.size,
              flags: int = 0) -> bytearray:  # fmt: skip
    """A struct vmcore_pfn_scan request; ``size``/``flags`` other than the defaults are for
    tests of the kernel's checks."""
    return bytearray(
        SCAN.pack(size, flags, classes, nr_chunks, chunks_ptr, runs_ptr, max_runs, 0,
                  next_chunk, 0, next_pfn, *([0] * NR_CLASSES))
    )  # fmt: skip


def unpack_scan(buf: bytes | bytearray) -> ScanReply:
    f = SCAN.unpack(bytes(buf[: SCAN.size]))
    return ScanReply(f[7], f[8], bool(f[9]), f[10], list(f[11:]))


@dataclass
class KernelInfo:
    status: int  # 0 or a negative errno
    struct_page_size: int
    classes: int
    max_chunks: int
    max_chunk_pages: int
    nr_old_ranges: int

    @staticmethod
    def request() -> bytearray:
        return bytearray(INFO.pack(INFO.size, *([0] * 6)))

    @classmethod
    def unpack(cls, buf: bytes) -> KernelInfo:
        size, status, spage, classes, mchunks, mpages, nranges = INFO.unpack(bytes(buf))
        if size != INFO.size:
            raise KernelScanUnavailable(f"kernel wrote {size} bytes of info, expected {INFO.size}")
        return cls(status, spage, classes, mchunks, mpages, nranges)


# ---- End of the ABI.

# Runs per ioctl: 1 MiB of buffer; the cursor protocol makes the size a speed knob only.
RUNS_PER_CALL = 1 << 16
# The kernel's VMCORE_PFN_MAX_CHUNK_PAGES; chunks are split at multiples of it (a power of
# two, so no compound head is separated from page[1]).
MAX_CHUNK_PAGES = 1 << 18

# The kernel's classes are PageClass values (the ABI shares the numbering).
_EXCLUDABLE = {
    PageClass.CACHE,
    PageClass.CACHE_PRIVATE,
    PageClass.USER,
    PageClass.FREE,
    PageClass.HWPOISON,
    PageClass.OFFLINE,
}
_ALLOWED_CLASSES = np.array(sorted(int(c) for c in _EXCLUDABLE), np.uint32)

IoctlFn = Callable[[int, int, bytearray], int]


class KernelScanUnavailable(Exception):
    """The interface cannot be used; ``reason`` says why, in one line."""


@dataclass
class ScanResult:
    """The kernel's runs as the windows read them, checked (``from_runs``): ``pfn`` and
    ``end`` (int64) ascending and disjoint, ``cls`` (uint8) the page class of each; and the
    per-class page counts the kernel reported.  Three arrays, 17 bytes a run, are all a kernel
    scan keeps of its answer: no raw copy, no sorted copy (bench/NOTES.md, "The kernel scan's
    memory")."""

    pfn: np.ndarray
    end: np.ndarray
    cls: np.ndarray
    counts: list[int] = field(default_factory=lambda: [0] * NR_CLASSES)
    calls: int = 0

    @classmethod
    def from_runs(cls, pfn: np.ndarray, count: np.ndarray, klass: np.ndarray,
                  classes: int = CLASSES_ALL, after: int = 0) -> ScanResult:  # fmt: skip
        """Runs as the kernel writes them (``RUN_DTYPE``'s fields), checked: each of a class
        in ``classes``, not empty, in ascending PFN order without overlap, the first at or
        after PFN ``after``.  ``KernelScanUnavailable`` says what is wrong otherwise: the
        windows are painted from these runs and take them as given."""
        _check_runs(count, klass, classes)
        start = pfn.astype(np.int64)  # a PFN of 2**63 or more becomes negative: out of order
        end = start + count.astype(np.int64)
        if len(start) and (
            start[0] < after or (end <= start).any() or (start[1:] < end[:-1]).any()
        ):
            raise KernelScanUnavailable("kernel returned runs out of PFN order or overlapping")
        return cls(start, end, klass.astype(np.uint8))


def pack_chunks(
    chunks: Sequence[tuple[int, int, int]], spage: int, max_pages: int = MAX_CHUNK_PAGES
) -> np.ndarray:
    """The chunk table as the kernel wants it: sorted, split at multiples of ``max_pages``.

    memmap.py merges physically adjacent sections, so a chunk may cover many GiB; the kernel
    maps one chunk at a time and caps its size.  ``spage`` is SIZE(page): the split moves the
    struct page address along with the PFN.
    """
    rows: list[tuple[int, int, int]] = []
    # memmap.Chunk may carry more fields (a struct page split over two physical pages: its
    # ``split`` is non-zero); such a page cannot be described to the kernel and is left out.
    table = [c[:3] for c in chunks if len(c) <= 3 or not c[3]]
    for start, nr, paddr in sorted((int(a), int(b), int(c)) for a, b, c in table):
        pfn, end = start, start + nr
        while pfn < end:
            stop = min(end, (pfn // max_pages + 1) * max_pages)
            rows.append((pfn, stop - pfn, paddr + (pfn - start) * spage))
            pfn = stop
    return np.array(rows, CHUNK_DTYPE)


def _check_runs(count: np.ndarray, klass: np.ndarray, classes: int) -> None:
    asked = np.array([c for c in _ALLOWED_CLASSES if classes >> int(c) & 1], np.uint32)
    if len(klass) and not np.isin(klass, asked).all():
        bad = int(klass[~np.isin(klass, asked)][0])
        raise KernelScanUnavailable(f"kernel returned page class {bad}, which was not asked for")
    if len(count) and (count == 0).any():
        raise KernelScanUnavailable("kernel returned an empty run")


class KernelScanner:
    """One open ``/proc/vmcore_pfn_lists``; ``ioctl`` is injectable for tests."""

    def __init__(self, path: str = DEVICE, ioctl: IoctlFn | None = None):
        self._ioctl = ioctl or fcntl.ioctl
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise KernelScanUnavailable(
                f"{path} is absent (capture kernel without CONFIG_PROC_VMCORE_PFN_LISTS "
                "and no vmcore_pfn_lists module loaded)"
            ) from None
        except OSError as e:
            raise KernelScanUnavailable(f"cannot open {path}: {e.strerror}") from None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> KernelScanner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, request: int, buf: bytearray) -> None:
        try:
            self._ioctl(self.fd, request, buf)
        except OSError as e:
            raise _errno_reason(e) from None

    def info(self) -> KernelInfo:
        buf = KernelInfo.request()
        self._call(IOC_INFO, buf)
        return KernelInfo.unpack(bytes(buf))

    def scan(self, chunks: np.ndarray, classes: int, runs_per_call: int | None = None):
        """All runs of ``classes`` (bit ``1 << class`` each) for ``chunks`` (CHUNK_DTYPE),
        resuming until the kernel says done."""
        if not len(chunks):
            raise KernelScanUnavailable("no mem_map chunks to scan")
        chunks = np.ascontiguousarray(chunks, CHUNK_DTYPE)
        runs = np.zeros(runs_per_call or RUNS_PER_CALL, RUN_DTYPE)
        parts: list[ScanResult] = []
        counts = [0] * NR_CLASSES
        next_chunk, next_pfn, calls, after = 0, 0, 0, 0
        while True:
            buf = pack_scan(classes, chunks.ctypes.data, len(chunks), runs.ctypes.data,
                            len(runs), next_chunk, next_pfn)  # fmt: skip
            self._call(IOC_SCAN, buf)
            calls += 1
            r = unpack_scan(buf)
            nr_runs, new_chunk, new_pfn = r.nr_runs, r.next_chunk, r.next_pfn
            if nr_runs > len(runs) or new_chunk > len(chunks):
                raise KernelScanUnavailable("kernel returned an inconsistent cursor")
            got = runs[:nr_runs]
            # converted out of the reused buffer at once: the raw runs are not kept
            part = ScanResult.from_runs(got["pfn"], got["count"], got["cls"], classes, after)
            if nr_runs:
                parts.append(part)
                after = int(part.end[-1])
            for i, n in enumerate(r.counts):
                counts[i] += n
            if r.done:
                break
            if (new_chunk, new_pfn) <= (next_chunk, next_pfn) and not nr_runs:
                raise KernelScanUnavailable("kernel made no progress")
            next_chunk, next_pfn = new_chunk, new_pfn
        return ScanResult(
            pfn=np.concatenate([p.pfn for p in parts] or [np.zeros(0, np.int64)]),
            end=np.concatenate([p.end for p in parts] or [np.zeros(0, np.int64)]),
            cls=np.concatenate([p.cls for p in parts] or [np.zeros(0, np.uint8)]),
            counts=counts,
            calls=calls,
        )


def _errno_reason(e: OSError) -> KernelScanUnavailable:
    what = {
        errno.EXDEV: "refused: the crashed kernel is not the running kernel",
        errno.ENODATA: "refused: /proc/vmcore is not set up or has no VMCOREINFO",
        errno.EOPNOTSUPP: (
            "refused: memory encryption is active or a driver registered a vmcore callback"
        ),
        errno.EINTR: "error: interrupted by a signal",
        errno.ERANGE: "error: a mem_map chunk lies outside the crashed kernel's memory",
        errno.E2BIG: "error: request too large",
        errno.EINVAL: "error: request rejected as invalid",
        errno.EPERM: "error: permission denied (needs CAP_SYS_ADMIN)",
        errno.ENOTTY: "error: not the vmcore_pfn_lists interface (ioctl unknown)",
    }.get(e.errno or 0, f"error: {e.strerror or e}")
    return KernelScanUnavailable(what)


class KernelClassification:
    """``Classification`` built from the kernel's runs: KEEP in RAM, HOLE outside it."""

    scan = "kernel"

    def __init__(
        self, max_pfn: int, ram_ranges: Sequence[tuple[int, int]], result: ScanResult,
        image: Sequence[tuple[int, int]] = (), nodata: Sequence[int] = (),
        window: int = WINDOW_PFNS,
    ):  # fmt: skip
        self.max_pfn = max_pfn
        self.ram_ranges = [(int(a), int(b)) for a, b in ram_ranges]
        self.image = [(int(a), int(b)) for a, b in image]
        self.nodata = np.array(sorted(int(p) for p in nodata), np.int64)
        self.window = window
        self.result = result
        self.prepare_seconds = 0.0  # reading the layout the kernel was handed (kernel_scan)

    def describe(self) -> list[str]:
        """Nothing beyond what the kernel reported (``try_kernel_scan`` says that)."""
        return []

    def windows(self, size: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        size = size or self.window
        r = self.result
        for start in range(0, self.max_pfn, size):
            stop = min(self.max_pfn, start + size)
            i = int(np.searchsorted(r.end, start, side="right"))
            j = int(np.searchsorted(r.pfn, stop, side="left"))
            out = _painted(stop - start, np.clip(r.pfn[i:j], start, stop) - start,
                           np.clip(r.end[i:j], start, stop) - start, r.cls[i:j])  # fmt: skip
            mark_holes(self.ram_ranges, start, out)  # a run never makes a hole RAM
            # the rules on top of the per-page verdicts, the userspace scan's (layout.py)
            apply_rules(start, out, self.image, self.nodata)
            out.flags.writeable = False  # the Classification contract: read-only
            yield start, out


def _painted(n: int, lo: np.ndarray, hi: np.ndarray, cls: np.ndarray) -> np.ndarray:
    """A window of ``n`` pages: ``cls[r]`` in ``lo[r]:hi[r]`` for sorted, disjoint runs r,
    KEEP in between.

    The window is cut into alternating gaps and runs (gap, run 0, gap, run 1, ..., gap), each
    segment's class repeated into the one uint8 array returned.  One byte per page, and no
    other array of the window's size: painting by position needs three arrays of 8-byte
    indices per painted page, more memory than the whole window's classes and more time than
    the kernel's scan of it (userspace/bench/NOTES.md, "Kernel scan in big guests").
    """
    edges = np.empty(2 * len(lo) + 2, np.int64)
    edges[0], edges[-1] = 0, n
    edges[1:-1:2], edges[2:-1:2] = lo, hi
    seg = np.full(2 * len(lo) + 1, PageClass.KEEP, np.uint8)
    seg[1::2] = cls
    return np.repeat(seg, np.diff(edges))


def layout(src: Source) -> tuple[np.ndarray, list[tuple[int, int]], list[int]]:
    """The chunk table, kernel-image PFN ranges and no-data PFNs: the very layout the
    userspace scan reads (``layout.Layout``), so both scans apply their rules to identical
    inputs."""
    lay = Layout.read(src)
    chunks = pack_chunks(lay.chunk_table(), lay.encoding.struct_size)
    return chunks, list(lay.image), [int(p) for p in lay.nodata]


def kernel_scan(
    src, classes: int, *, device: str = DEVICE, ioctl: IoctlFn | None = None,
    chunks: np.ndarray | None = None, image: Sequence[tuple[int, int]] = (),
    nodata: Sequence[int] = (),
) -> KernelClassification:  # fmt: skip
    """Run the kernel scan for ``classes`` (a class mask, ``DumpLevel.kernel_request()``) or
    raise ``KernelScanUnavailable`` saying why it cannot."""
    with KernelScanner(device, ioctl) as ks:
        info = ks.info()
        if info.status:
            why = _errno_reason(OSError(-info.status, os.strerror(-info.status)))
            raise KernelScanUnavailable(f"{why} (the kernel log says why)")
        if classes & ~info.classes:
            raise KernelScanUnavailable(f"kernel reports classes {info.classes:#x} only")
        spage = src.vmcoreinfo.size("page")
        if info.struct_page_size != spage:
            raise KernelScanUnavailable(
                f"refused: struct page is {info.struct_page_size} bytes here, {spage} in the dump"
            )
        t0 = time.perf_counter()
        if chunks is None:
            chunks, image, nodata = layout(src)
        prepare = time.perf_counter() - t0
        if len(chunks) > info.max_chunks:
            raise KernelScanUnavailable(
                f"error: {len(chunks)} chunks, kernel takes at most {info.max_chunks}"
            )
        result = ks.scan(chunks, classes)
    c = KernelClassification(src.max_pfn, src.ram_ranges, result, image, nodata)
    c.prepare_seconds = prepare
    return c


def try_kernel_scan(src, dump_level: int, mode: str, say: Callable[[str], None], **kw):
    """``Classification`` from the kernel, or ``None`` (auto) / ``DumpError`` (require).

    Only the running capture kernel's own /proc/vmcore can be classified by it: a saved dump
    file belongs to some other crash.
    """
    if mode not in ("auto", "require"):
        raise DumpError(f"--kernel-scan={mode}: expected auto or require")
    try:
        if not kw.pop("assume_proc_vmcore", False) and not (
            src.kind == "elf" and is_proc_vmcore(src.path)
        ):
            raise KernelScanUnavailable(
                f"absent: the input is not this capture kernel's {PROC_VMCORE}"
            )
        c = kernel_scan(src, DumpLevel(dump_level).kernel_request(), **kw)
    except KernelScanUnavailable as e:
        if mode == "require":
            raise DumpError(f"kernel scan unavailable: {e}") from None
        say(f"kernel scan not used ({e}); using the userspace scan")
        return None
    except DumpError as e:
        if mode == "require":
            raise
        say(f"kernel scan not used (error: {e}); using the userspace scan")
        return None
    say(f"kernel scan: {len(c.result.pfn)} runs in {c.result.calls} calls")
    return c
