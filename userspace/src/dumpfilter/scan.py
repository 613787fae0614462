"""``userspace_scan(source, dump_level) -> Classification``: classify every PFN from mem_map.

The scan is lazy and deterministic: ``windows()`` walks the mem_map chunks in PFN order,
classifies each run of struct pages straight from the input mapping (``classify``), and
yields bounded windows of PageClass values.  Iterating again gives the same answer; small
dumps keep their result so a second pass (the writer after the report) is free, large ones
recompute it so that memory stays flat whatever the dump size, and so do dumps whose classes
would take a noticeable share of the memory left (a capture kernel's small reservation).
What is read before the first page is judged, and the rules applied on top of the per-page
decision (holes, the kernel image, pages without data), are the kernel scan's too:
``layout.py``.
"""

from __future__ import annotations

import bisect
import fcntl
import os
import select
import signal
import struct
import time
import warnings
from collections.abc import Iterator

import numpy as np

from . import memmap
from .classify import Carry, classify, plan_for
from .contracts import Source
from .errors import DumpError
from .layout import WINDOW_PFNS, Layout, split_page

CACHE_LIMIT_PFNS = 1 << 24  # keep results of dumps up to 64 GiB (16 MiB of classes)
# ... and only while they take at most this share of MemAvailable: in a capture kernel with
# a crashkernel= of ~100 MiB a 16 GiB dump's 4 MiB of classes is memory the writer needs more,
# and scanning again costs no memory there (/proc/vmcore's mapping of the old kernel's
# memory is not the capture kernel's RAM).  makedumpfile sizes its bitmaps by free memory too.
CACHE_SHARE_OF_AVAILABLE = 1 / 16
# Classes that may not be kept as they are are kept zstd-compressed, up to this many bytes:
# windows are mostly long runs of one class (free buddy blocks, holes, page cache), so a
# synthetic 64 GiB dump's 16.6 MiB of classes take 0.6 MiB, compressed in 18 ms and
# expanded in 11 ms per pass, against 0.2 s (two CPUs) to scan again.  The bound keeps the
# peak memory flat for dumps too big or too fragmented to compress that well.
PACKED_CACHE_BYTES = 4 << 20
DEFAULT_WORKERS = 2  # scan processes without --num-threads (capped at the CPUs)
# fewer windows than this per worker are scanned in the process itself: a fork costs
# about as much as scanning one GiB
MIN_WINDOWS_PER_WORKER = 2
# windows handed to the workers beyond one each, so that none waits for the parent
AHEAD_WINDOWS = 2


class UserspaceClassification:
    """The Classification contract of ARCHITECTURE.md, computed from the dump's mem_map."""

    scan = "userspace"

    def __init__(
        self, src: Source, dump_level: int, *, window: int = WINDOW_PFNS, workers: int = 1
    ):
        t0 = time.perf_counter()
        self.workers = max(1, workers)
        self.src = src
        self.dump_level = dump_level
        self.max_pfn = src.max_pfn
        self.window = window
        self.layout = Layout.read(src)
        self.encoding = self.layout.encoding
        self.chunks = self.layout.chunks
        # RAM PFNs without full data (classified HOLE); a writer may still mark them RAM in
        # the 1st bitmap, as makedumpfile does (it only clears them from the 2nd)
        self.nodata = self.layout.nodata
        self._cache: _Kept | _Packed | None = None
        self._span = src.span_array
        self._cache_size = 0
        plan_for(self.encoding, dump_level)  # the level's lookup tables, made once
        # everything up to here reads the layout (makedumpfile's setup before its
        # "Excluding unnecessary pages" step); iterating windows() is the scan proper
        self.prepare_seconds = time.perf_counter() - t0

    def describe(self) -> list[str]:
        """The encoding and the mem_map layout this scan reads (``-D``)."""
        enc = self.encoding
        return [
            f"kernel {enc.osrelease}: encoding {enc.name}, SIZE(page) {enc.struct_size}, "
            f"page types {'top byte' if enc.top_byte else '_mapcount'}, "
            f"hugetlb by {enc.hugetlb_kind}, order by {enc.order_kind}",
            f"mem_map: {len(self.chunks)} chunk(s) of struct pages",
        ]

    # ------------------------------------------------------------------ iteration
    def windows(self, size: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Read-only class arrays: the kept answer is handed out as is, never copied."""
        size = size or self.window
        if self._cache is not None and self._cache_size == size:
            yield from self._cache.windows()
            return
        budget = CACHE_SHARE_OF_AVAILABLE * mem_available()
        cache: _Kept | _Packed | None
        if self.max_pfn <= min(CACHE_LIMIT_PFNS, budget):
            cache = _Kept()
        else:
            cache = _Packed(size, min(PACKED_CACHE_BYTES, budget))
        for w0, arr in self._compute(size):
            arr.flags.writeable = False
            if cache is not None and not cache.add(w0, arr):
                cache = None  # over its budget: the next pass scans again
            yield w0, arr
        if cache is not None:
            self._cache, self._cache_size = cache, size

    def _compute(self, size: int) -> Iterator[tuple[int, np.ndarray]]:
        if self.workers > 1 and self.max_pfn > MIN_WINDOWS_PER_WORKER * self.workers * size:
            yield from self._compute_forked(size)
            return
        carry = Carry()
        for w0 in range(0, self.max_pfn, size):
            yield w0, self._window(w0, min(w0 + size, self.max_pfn), carry)

    def _compute_forked(self, size: int) -> Iterator[tuple[int, np.ndarray]]:
        """The windows classified by ``workers`` forked processes, each window from an empty
        carry, handed out in PFN order; bit for bit the sequential answer.

        Windows depend on each other only through the carry: a range (buddy block, compound
        page) that runs on past a window's end.  A window is therefore classified
        speculatively as if nothing ran into it; when the true carry from the window before
        does reach into it (a range crossing a window edge: misaligned, i.e. corrupt, or
        larger than a window), the parent classifies that window again with it.  Processes,
        not threads: the scan is thousands of numpy calls per GiB on 8192-page steps, and
        the Python between them holds the GIL.

        Workers take window numbers from one shared pipe as each becomes free, so a worker
        whose windows are cheap (holes, long free blocks) takes more of them instead of
        waiting for the other; windows differ in cost several-fold.  Each worker sends its
        results, in the order it took the windows, on its own pipe.  The parent reads only
        the header of a result that comes early; its classes wait in the pipe until the
        parent hands that window on, so the parent holds no window but the caller's.  At
        most ``workers + AHEAD_WINDOWS`` windows are handed to the workers beyond the one the
        caller is at, and a worker whose pipe is full waits there.  Workers inherit the
        prepared scan (layout, lookup tables) and share the parent's memory copy-on-write."""
        n = self.workers
        starts = list(range(0, self.max_pfn, size))
        tasks_r, tasks_w = os.pipe()
        results: set[int] = set()  # the read end of each live worker's pipe
        pids: list[int] = []
        try:
            for _ in range(n):
                r, w = _result_pipe(2 * (_RESULT.size + size))
                with warnings.catch_warnings():
                    # a writer's compression threads may run (dumps whose classes no cache
                    # holds are scanned again while writing): the worker only runs numpy on
                    # its own memory and never takes a lock those threads could hold
                    warnings.simplefilter("ignore", DeprecationWarning)
                    pid = os.fork()
                if pid == 0:  # the worker: never returns
                    os.close(r)
                    os.close(tasks_w)
                    self._worker(tasks_r, w, starts, size)
                os.close(w)
                pids.append(pid)
                results.add(r)
            os.close(tasks_r)
            tasks_r = -1
            issued = 0
            heads: dict[int, tuple[int, int, int, int, int]] = {}  # pipe -> next header
            carry = Carry()
            for i, w0 in enumerate(starts):
                want = min(len(starts), i + 1 + n + AHEAD_WINDOWS)
                if issued < want:
                    try:
                        os.write(tasks_w, b"".join(_TASK.pack(k) for k in range(issued, want)))
                    except BrokenPipeError:
                        raise DumpError("a scan worker died") from None
                    issued = want
                    if issued == len(starts):
                        os.close(tasks_w)  # the workers exit when the tasks run out
                        tasks_w = -1
                w1 = min(w0 + size, self.max_pfn)
                end, cls, err, out = _take(results, heads, i, w1 - w0, finished=tasks_w < 0)
                if carry.end_pfn > w0:  # a range runs into this window: again, with it
                    out = self._window(w0, w1, carry)
                elif err is not None:
                    raise DumpError(err)
                else:
                    carry.end_pfn, carry.cls = end, cls
                assert out is not None
                yield w0, out
        finally:
            for fd in (tasks_r, tasks_w, *results):
                if fd >= 0:
                    os.close(fd)  # a worker still writing gets EPIPE and exits
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                os.waitpid(pid, 0)

    def _worker(self, tasks: int, fd: int, starts: list[int], size: int) -> None:
        """A forked worker: classify the windows whose numbers it reads from ``tasks``
        until that pipe ends, writing each result to ``fd``."""
        code = 0
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
            # every task is written as one _TASK-sized record and read as one (pipe writes
            # of at most PIPE_BUF bytes are atomic), so workers never split a number
            while len(task := os.read(tasks, _TASK.size)) == _TASK.size:
                (k,) = _TASK.unpack(task)
                w0 = starts[k]
                c = Carry()
                try:
                    out = self._window(w0, min(w0 + size, self.max_pfn), c)
                except DumpError as e:
                    # the parent raises it only if the carry does not cover the window
                    msg = str(e).encode()[:_MAX_ERR]
                    _write_all(fd, _RESULT.pack(k, 1, 0, 0, len(msg)) + msg)
                    continue
                _write_all(fd, _RESULT.pack(k, 0, c.end_pfn, c.cls, out.size))
                _write_all(fd, out)
        except BaseException as e:  # noqa: BLE001  (a worker must never return)
            try:
                msg = f"scan worker failed: {type(e).__name__}: {e}".encode()[:_MAX_ERR]
                _write_all(fd, _RESULT.pack(_NO_TASK, 1, 0, 0, len(msg)) + msg)
            except OSError:
                pass
            code = 1
        finally:
            os._exit(code)

    def _window(self, w0: int, w1: int, carry: Carry) -> np.ndarray:
        """Classes of PFNs [w0, w1), ``carry`` holding a range that runs into them."""
        enc = self.encoding
        spage = enc.struct_size
        chunks = self.chunks
        layout = self.layout
        out = layout.blank_window(w0, w1)
        j = bisect.bisect_right(layout.chunk_ends, w0)
        while j < len(chunks) and chunks[j].start_pfn < w1:
            c = chunks[j]
            c0, c1 = max(c.start_pfn, w0), min(c.start_pfn + c.nr_pages, w1)
            for p0, p1 in layout.ram_pieces(c0, c1):
                while p0 < p1:
                    raw, q = self._struct_pages(c, p0, p1)
                    # page[1] only of a PFN judged too (the kernel scan's rule)
                    nxt = self._next_page(j, q, spage) if q < p1 or layout.in_ram(q) else None
                    out[p0 - w0 : q - w0] = classify(enc, raw, p0, self.dump_level, carry, nxt)
                    p0 = q
            j += 1
        layout.apply_rules(w0, out)
        return out

    def _struct_pages(self, c: memmap.Chunk, p0: int, p1: int) -> tuple[np.ndarray, int]:
        """The struct pages of PFNs [p0, q) of chunk ``c`` as (q - p0, SIZE(page)) rows,
        for the longest q <= p1 whose rows are a view of the scan's mapping (no copy,
        elfcore.span_array), or of one struct page read piecewise when none holds it."""
        spage = self.encoding.struct_size
        pa = c.paddr + (p0 - c.start_pfn) * spage
        if c.split:  # one struct page in two physical pieces (memmap.Chunk)
            return split_page(self.src, c, spage), p0 + 1
        # no MADV_POPULATE_READ here (see elfcore._MAP_FLAGS): fault-around (64 KiB per
        # fault) maps what classify touches more cheaply
        view = self._span(pa, (p1 - p0) * spage)
        k = len(view) // spage
        if not k:  # a struct page across a PT_LOAD edge, or beyond its file data
            return self.src.phys_array(pa, spage).reshape(1, spage), p0 + 1
        return view[: k * spage].reshape(k, spage), p0 + k

    def _next_page(self, j: int, pfn: int, spage: int) -> np.ndarray | None:
        """The struct page of ``pfn`` (right after a classified run), if it has one."""
        c = self.chunks[j]
        if pfn < c.start_pfn + c.nr_pages:
            pa = c.paddr + (pfn - c.start_pfn) * spage
        elif j + 1 < len(self.chunks) and self.chunks[j + 1].start_pfn == pfn:
            c = self.chunks[j + 1]
            if c.split:
                return split_page(self.src, c, spage)[0]
            pa = c.paddr
        else:
            return None
        if len(row := self._span(pa, spage)) == spage:
            return row.copy()
        return self.src.phys_array(pa, spage).copy()

    def chunk_table(self) -> list[tuple[int, int, int]]:
        """The layout's chunk table (``Layout.chunk_table``): the struct pages this scan reads."""
        return self.layout.chunk_table()


_TASK = struct.Struct("<I")  # a window's number, parent -> workers
# a worker's result: window number, error?, carry end_pfn, carry class, bytes that follow
# (the window's classes, or the error's text)
_RESULT = struct.Struct("<IBqBI")
_NO_TASK = 0xFFFFFFFF  # a worker's failure outside any window
_MAX_ERR = 4000


def _result_pipe(capacity: int) -> tuple[int, int]:
    """A pipe for a worker's results that holds ``capacity`` bytes if it may, so that a
    worker can send a window while the parent is busy with the one before, not wait until
    the parent reads (a default pipe holds 64 KiB, a 1 GiB window's classes 256 KiB).
    F_SETPIPE_SZ (Linux 2.6.35, commit 35f3d14dbbc5) is capped for unprivileged processes
    by /proc/sys/fs/pipe-max-size and their user's pipe quota; past those the pipe keeps
    its size, which is slower, not wrong."""
    r, w = os.pipe()
    try:
        with open("/proc/sys/fs/pipe-max-size", "rb") as f:
            limit = int(f.read())
    except (OSError, ValueError):
        limit = capacity
    try:
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, min(capacity, limit))
    except OSError:
        pass
    return r, w


def _write_all(fd: int, data) -> None:
    view = memoryview(data).cast("B")
    while len(view):
        view = view[os.write(fd, view) :]


def _read_exact(fd: int, view: memoryview) -> bool:
    """Fill ``view`` from the pipe ``fd``; False if the writer went away first."""
    while len(view):
        got = os.readv(fd, [view])
        if not got:
            return False
        view = view[got:]
    return True


def _take(
    results: set[int],
    heads: dict[int, tuple[int, int, int, int, int]],
    k: int,
    npfns: int,
    *,
    finished: bool,
) -> tuple[int, int, str | None, np.ndarray | None]:
    """Window ``k``'s result: (carry end, carry class, error or None, its ``npfns`` classes).

    ``heads`` holds the header of the next result of each pipe that has one waiting.  A
    worker sends results in the order it took the windows, and every window before ``k`` has
    been taken, so the first result on each pipe is ``k`` or a later window: the parent
    reads headers until one is ``k``, then that result's classes.

    A worker whose pipe ends has exited: normally only once every window is handed out
    (``finished``).  One that exits before, or the last one while ``k`` is missing, died; a
    failure a worker reports outside any window is the scan's error."""
    while (fd := next((f for f, h in heads.items() if h[0] == k), None)) is None:
        idle = [f for f in results if f not in heads]
        if not idle:
            raise DumpError("a scan worker died")
        poll = select.poll()
        for f in idle:
            poll.register(f, select.POLLIN)
        for f, _ in poll.poll():
            raw = bytearray(_RESULT.size)
            if not _read_exact(f, memoryview(raw)):
                results.discard(f)
                os.close(f)
                if not finished:
                    raise DumpError("a scan worker died")
                continue
            heads[f] = _RESULT.unpack(raw)
            if heads[f][0] == _NO_TASK:
                raise DumpError(_read_text(f, heads[f][4]))
    _, err, end, cls, length = heads.pop(fd)
    if err:
        return 0, 0, _read_text(fd, length), None
    out = np.empty(npfns, np.uint8)
    if length != npfns or not _read_exact(fd, out.data.cast("B")):
        raise DumpError("a scan worker died")
    return end, cls, None, out


def _read_text(fd: int, length: int) -> str:
    """A worker's error message of ``length`` bytes."""
    text = bytearray(length)
    if length > _MAX_ERR or not _read_exact(fd, memoryview(text)):
        raise DumpError("a scan worker died")
    return text.decode(errors="replace") or "scan worker failed"


class _Kept:
    """A scan's windows, kept as they are."""

    def __init__(self) -> None:
        self.store: list[tuple[int, np.ndarray]] = []

    def add(self, w0: int, arr: np.ndarray) -> bool:
        self.store.append((w0, arr))
        return True

    def windows(self) -> Iterator[tuple[int, np.ndarray]]:
        yield from self.store


class _Packed:
    """A scan's windows, kept zstd-compressed while they fit in *budget* bytes."""

    def __init__(self, size: int, budget: float) -> None:
        import zstandard

        self.size = size
        self.budget = budget
        self.used = 0
        self.store: list[tuple[int, bytes, np.dtype]] = []
        self._zc = zstandard.ZstdCompressor(level=1)
        self._zd = zstandard.ZstdDecompressor()

    def add(self, w0: int, arr: np.ndarray) -> bool:
        # A copy of exact size: python-zstandard's result keeps the allocation of the bound
        # it compressed into (the window's size), whatever the compressed size.
        blob = bytes(memoryview(self._zc.compress(arr.data)))
        self.used += len(blob)
        if self.used > self.budget:
            self.store.clear()
            return False
        self.store.append((w0, blob, arr.dtype))
        return True

    def windows(self) -> Iterator[tuple[int, np.ndarray]]:
        for w0, blob, dtype in self.store:
            data = self._zd.decompress(blob, max_output_size=self.size * dtype.itemsize)
            # an array over bytes is read-only, as the Classification contract asks
            yield w0, np.frombuffer(data, dtype)


def mem_available(meminfo: str = "/proc/meminfo") -> int:
    """Bytes the kernel estimates can be allocated without swapping (MemAvailable, since
    Linux 3.14, commit 34e431b0ae39); unlimited when it cannot be read."""
    try:
        with open(meminfo, "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 1 << 62


def workers_for(num_threads: int) -> int:
    """Scan workers for ``--num-threads N``: N, or with 0 (the default) DEFAULT_WORKERS
    capped at the CPUs this process may run on."""
    if num_threads > 0:
        return num_threads
    return max(1, min(DEFAULT_WORKERS, len(os.sched_getaffinity(0))))


def userspace_scan(src, dump_level: int, workers: int = 1) -> UserspaceClassification:
    """Prepare the scan of ``src`` (reads VMCOREINFO, page tables, mem_section now);
    ``workers`` processes classify it."""
    return UserspaceClassification(src, dump_level, workers=workers)
