"""kdump-compressed writer: disk_dump_header v6, sub header, notes, two bitmaps, descriptors, data.

Layout and field values: docs/kdump-compressed.md §1-§7 (what makedumpfile writes):
header in block 0, sub header at ``block_size``, the input PT_NOTE copied verbatim at 4200,
block-aligned 1st (RAM) and 2nd (dumpable) bitmaps, 24-byte ``page_desc`` per set bit of the
2nd bitmap in PFN order, then the page data (shared zero page first when dump level bit 1 is set).

Two streaming passes keep memory bounded whatever the dump size: pass 1 walks the classification
windows and writes both bitmaps while counting dumpable pages (which fixes where the data starts);
pass 2 reads the kept pages, encodes them in parallel and writes data and descriptors, each
sequentially, descriptors only after their data.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .compress import Batch, Encoded, Encoder
from .contracts import Classification, Sink, Source, WriteOptions, WriteStats
from .dumplevel import DumpLevel
from .elfnotes import vmcoreinfo_span
from .errors import DumpError
from .kdumpformat import (
    CODEC_FLAGS,
    DUMP_DH_COMPRESSED_INCOMPLETE,
    HEADER,
    HEADER_VERSION,
    PAGE_DESC,
    SIGNATURE,
    SUB_HEADER,
    UTS_FIELDS,
    UTS_LEN,
    Geometry,
    Header,
    SubHeader,
)
from .output import OutputFull, Progress
from .pagebatch import compression_threads
from .pageclass import PageClass
from .runread import RunPlan, RunReader

# Page data held before one pwritev, and pages whose descriptors are built and written at
# once: small enough that the held data and the descriptor arrays (about 70 bytes a page
# while they are built) add little to the peak RSS, large enough that syscalls and numpy
# steps stay few (bench/NOTES.md, "The kernel scan's memory").
FLUSH_BYTES = 1 << 20
FLUSH_PAGES = 16384
SPAN = 512  # PFNs per encode batch: 2 MiB of source pages at most (divides elfcore's window)
# PFNs of a window whose kept pages are planned at once (_run_batches): the planning takes a
# few int64 arrays of one entry per kept PFN, 2 MiB each for a window kept whole (a 64 GiB
# machine's 1 GiB mem_map), which the heap then keeps (cli._keep_freed_memory); that was the
# 8 MiB a 64 GiB guest's capture kernel needed beyond a 16 GiB one's.  512 KiB each at most.
PLAN_PFNS = 1 << 16
# Kept pages of sparse spans copied into one batch: 1 MiB, so the batches in flight (one per
# compression thread) and the one being read stay small next to the process.
SPARSE_BATCH = 256


def _c_string(text: str | bytes, size: int = UTS_LEN) -> bytes:
    b = text.encode() if isinstance(text, str) else text
    return b[: size - 1]


def read_utsname(src: Source, info: dict[str, str]) -> dict[str, bytes]:
    """The crashed kernel's ``init_uts_ns.name`` (6 x char[65]), as makedumpfile copies it into
    the header (``check_release``), found through SYMBOL(init_uts_ns) + OFFSET(uts_namespace.
    name) and the page tables.  Empty when the dump does not allow it (the header then falls
    back to VMCOREINFO's OSRELEASE)."""
    try:
        va = int(info["SYMBOL(init_uts_ns)"], 16) + int(info["OFFSET(uts_namespace.name)"])
        from .x86_64 import virt_reader

        raw = virt_reader(src)(va, len(UTS_FIELDS) * UTS_LEN)
    except Exception:  # any failure here only costs the nicer header text
        return {}
    n = UTS_LEN
    out = {f: raw[n * i : n * (i + 1)].split(b"\0")[0] for i, f in enumerate(UTS_FIELDS)}
    if out["release"].decode(errors="replace") != info.get("OSRELEASE", ""):
        return {}  # not the kernel VMCOREINFO describes: do not trust it
    return out


def build_header(
    src: Source, geo: Geometry, dump_level: int, status: int, part: tuple[int, int] | None = None
) -> bytes:
    """Block 0 (header) + sub header + notes, ready to write at offset 0.  ``part``: the
    ``[start_pfn, end_pfn)`` of a ``--split`` file (sub header ``split = 1``,
    docs/kdump-compressed.md §3, §8)."""
    info = src.vmcoreinfo.raw
    uts = read_utsname(src, info)
    # libkdumpfile trusts the header's utsname (and so learns the architecture) only when no
    # field is empty; "(none)" is what the kernel itself puts in an unset nodename/domainname.
    defaults = {
        "sysname": "Linux",
        "nodename": "(none)",
        "release": info.get("OSRELEASE", ""),
        "version": "(unknown)",
        "machine": "x86_64",
        "domainname": "(none)",
    }
    names = [_c_string(uts.get(f) or defaults.get(f, "")) for f in UTS_FIELDS]
    try:
        crashtime = int(info.get("CRASHTIME", "0"))
    except ValueError:
        crashtime = 0
    try:
        phys_base = int(info.get("NUMBER(phys_base)", "0"), 0)
    except ValueError:
        phys_base = 0
    ps = geo.page_size
    sysname, nodename, release, version, machine, domainname = names
    header = Header(
        signature=SIGNATURE,
        header_version=HEADER_VERSION,
        utsname_sysname=sysname,
        utsname_nodename=nodename,
        utsname_release=release,
        utsname_version=version,
        utsname_machine=machine,
        utsname_domainname=domainname,
        timestamp_sec=crashtime,
        timestamp_usec=0,
        status=status,
        block_size=ps,
        sub_hdr_size=geo.sub_hdr_blocks,
        bitmap_blocks=2 * geo.bitmap_len // ps,
        max_mapnr=min(geo.max_mapnr, 0xFFFFFFFF),
        total_ram_blocks=0,
        device_blocks=0,
        written_blocks=0,
        current_cpu=0,
        nr_cpus=max(src.nr_cpus, 1),
    ).pack()
    vi_off, vi_size = vmcoreinfo_span(src.notes)
    start, end = part or (0, 0)
    sub = SubHeader(
        phys_base=phys_base % (1 << 64),  # the unsigned C field holds a negative one wrapped
        dump_level=dump_level,
        split=int(part is not None),
        start_pfn=start,
        end_pfn=end,
        offset_vmcoreinfo=geo.offset_note + vi_off if vi_size else 0,
        size_vmcoreinfo=vi_size,
        offset_note=geo.offset_note,
        size_note=geo.size_note,
        offset_eraseinfo=0,
        size_eraseinfo=0,
        start_pfn_64=start,
        end_pfn_64=end,
        max_mapnr_64=geo.max_mapnr,
    ).pack()
    return header.ljust(ps, b"\0") + sub + bytes(src.notes)


class _BitPacker:
    """Packs consecutive bool runs into LSB-first bytes: bit pfn%8 of byte pfn/8
    (docs/kdump-compressed.md §4)."""

    def __init__(self) -> None:
        self.carry = np.zeros(0, dtype=bool)

    def add(self, bits: np.ndarray, final: bool = False) -> bytes:
        if len(self.carry):
            bits = np.concatenate((self.carry, bits))
        n = len(bits) if final else len(bits) & ~7
        self.carry = bits[n:].copy()
        return np.packbits(bits[:n], bitorder="little").tobytes()


def dumpable_windows(
    src: Source,
    classification: Classification,
    dump_level: int,
    part: tuple[int, int] | None = None,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(start_pfn, ram, dumpable) bool arrays per classification window.

    A kdump input's own 2nd bitmap is honoured: a page it left out cannot be dumped again.
    ``part``: only PFNs in ``[start, end)`` are dumpable (a ``--split`` file).
    """
    level = DumpLevel(dump_level)
    # RAM PFNs without file data, which the scan reports as HOLE: makedumpfile keeps
    # them in the 1st bitmap and clears them only from the 2nd (``exclude_nodata_pages``).
    nodata = np.asarray(classification.nodata, dtype=np.int64)
    # The default window size: the scan caches its answer for that size, so a second pass (and
    # the report's count) does not scan mem_map again.
    for start, classes in classification.windows():
        ram = classes != int(PageClass.HOLE)  # an int, not the IntEnum: numpy compares u8
        dumpable = level.kept(classes)
        # Only what the source can read is dumpable, whatever a classification says.
        readable = np.zeros(len(classes), dtype=bool)
        for r0, r1 in src.ram_ranges:
            lo, hi = max(r0, start), min(r1, start + len(classes))
            if lo < hi:
                readable[lo - start : hi - start] = True
        dumpable &= readable
        if len(nodata):
            inside = nodata[(nodata >= start) & (nodata < start + len(classes))]
            ram[inside - start] = True
            dumpable[inside - start] = False
        prior = src.is_dumpable(start, start + len(classes)) if src.kind != "elf" else None
        if prior is not None:
            dumpable &= np.asarray(prior, dtype=bool)
        if part is not None:
            dumpable[: max(part[0] - start, 0)] = False
            dumpable[max(part[1] - start, 0) :] = False
        yield start, ram, dumpable


def read_span(src: Source, pfn: int, count: int) -> np.ndarray:
    """``src.read_pages``, except that a page only partly inside the dump (a PT_LOAD of
    /proc/vmcore may end mid-page, e.g. at 0x9fc00 below the legacy hole) reads as zeros beyond
    the loaded bytes, as makedumpfile's ``read_pfn`` does.  Such pages are rare (range edges),
    so the slow path costs nothing in practice."""
    try:
        return src.read_pages(pfn, count)
    except DumpError:
        loads = src.loads
        if not loads:
            raise
    ps = src.page_size
    out = np.zeros((count, ps), dtype=np.uint8)
    flat = out.reshape(-1)
    lo, hi = pfn * ps, (pfn + count) * ps
    for ld in loads:
        a, b = max(lo, int(ld.paddr)), min(hi, int(ld.paddr) + int(ld.filesz))
        if a < b:
            flat[a - lo : b - lo] = np.frombuffer(src.read_phys(a, b - a), np.uint8)
    return out


def span_cuts(src: Source) -> list[tuple[int, int, int]]:
    """(start_pfn, end_pfn, phase) per input PT_LOAD: spans start where ``(pfn + phase) % SPAN
    == 0``, i.e. at SPAN-page multiples of the *file offset*.  A reader that maps the file in
    windows aligned to a multiple of SPAN pages (elfcore: 8 MiB) then hands out every span as a
    view, never as a copy stitched across two windows."""
    ps = src.page_size
    cuts = []
    for ld in src.loads:
        delta = int(ld.offset) - int(ld.paddr)
        if int(ld.filesz) > 0 and delta % ps == 0:
            a, b = int(ld.paddr) // ps, (int(ld.paddr) + int(ld.filesz)) // ps
            cuts.append((a, b, (delta // ps) % SPAN))
    # Where PT_LOADs overlap (the kernel-text one lies inside a RAM one) the larger one counts.
    cuts.sort(key=lambda c: (c[0], -(c[1] - c[0])))
    out: list[tuple[int, int, int]] = []
    for c in cuts:
        if out and c[1] <= out[-1][1]:
            continue
        if out and c[0] < out[-1][1]:
            c = (out[-1][1], c[1], c[2])
        out.append(c)
    return out


def spans(lo: int, hi: int, cuts: list[tuple[int, int, int]]) -> Iterator[tuple[int, int]]:
    """[s, e) pieces of [lo, hi): at most SPAN pages, cut at load edges and aligned phases."""
    s = lo
    for a, b, phase in cuts:
        if b <= s or a >= hi:
            continue
        if a > s:  # a stretch no PT_LOAD describes: plain SPAN steps
            for x in range(s, min(a, hi), SPAN):
                yield x, min(x + SPAN, a, hi)
            s = min(a, hi)
        end = min(b, hi)
        while s < end:
            e = min(s + SPAN - (s + phase) % SPAN, end)
            yield s, e
            s = e
    for x in range(s, hi, SPAN):
        yield x, min(x + SPAN, hi)


def kept_batches(src, windows, find_zero: bool, runs: RunReader | None = None) -> Iterator[Batch]:
    """Encode batches of kept pages in PFN order (also what ``--dry-run`` zero-tests: it
    reads what a real run would).

    With a RunReader that can read the input (an ELF file), batches are the kept PFNs SPAN at
    a time, wherever the spans and windows they come from end, read by the thread that encodes
    them.  Otherwise (a kdump-compressed input) through the source, span by span."""
    if runs is not None and runs.fd >= 0:
        return _run_batches(src, windows, find_zero, runs)
    return _span_batches(src, windows, find_zero)


def _run_batches(src, windows, find_zero: bool, runs: RunReader) -> Iterator[Batch]:
    """Full batches of SPAN kept pages: -d 31 keeps a few pages of most spans, and each batch
    costs a round of Python in the encoder and the writer, so fewer and fuller batches leave
    more of both threads' time to reading and compressing."""
    carry = np.zeros(0, np.int64)  # kept PFNs short of a full batch, from earlier slices
    for start, _ram, dumpable in windows:
        for lo in range(0, len(dumpable), PLAN_PFNS):
            kept = np.flatnonzero(dumpable[lo : lo + PLAN_PFNS]).astype(np.int64, copy=False)
            if not len(kept):
                continue
            kept += start + lo
            if len(carry):
                kept = np.concatenate((carry, kept))
            full = len(kept) - len(kept) % SPAN
            for i, plan in enumerate(runs.plans(kept[:full], SPAN)):
                yield _run_batch(src, kept[i * SPAN : (i + 1) * SPAN].copy(), find_zero, plan)
            carry = kept[full:].copy()  # not a view that keeps the whole slice
    if len(carry):
        yield _run_batch(src, carry, find_zero, runs.plan(carry))


def _run_batch(src, pfns: np.ndarray, find_zero: bool, plan: RunPlan | None) -> Batch:
    if plan is not None:
        return Batch(pfns=pfns, pages=None, find_zero=find_zero, runs=plan)
    # A run outside the file's data (or the file shrank): the source reads it, and says what
    # is wrong if it cannot.
    brk = np.flatnonzero(np.diff(pfns) != 1) + 1
    parts = [read_span(src, int(r[0]), len(r)) for r in np.split(pfns, brk)]
    return Batch(pfns=pfns, pages=np.concatenate(parts), find_zero=find_zero)


def _span_batches(src, windows, find_zero: bool) -> Iterator[Batch]:
    """Batches read through the source: a mostly kept span of at most SPAN PFNs inside one
    RAM range is a batch of its own (a view of the mapping when the source maps the file);
    the kept pages of sparse spans are copied, several spans into one batch of up to
    SPARSE_BATCH pages."""
    ranges = src.ram_ranges
    cuts = span_cuts(src)
    pend: list[tuple[int, int, np.ndarray]] = []  # sparse spans waiting for their batch
    npend = 0
    for start, _ram, dumpable in windows:
        end = start + len(dumpable)
        for r0, r1 in ranges:
            lo, hi = max(r0, start), min(r1, end)
            if lo >= hi:
                continue
            # Kept pages per span in one pass; a span's kept PFNs are a slice of the range's.
            tiles = np.array(list(spans(lo, hi, cuts)), np.int64).reshape(-1, 2)
            part = dumpable[lo - start : hi - start]
            kept = np.flatnonzero(part) + lo
            if not len(kept):
                continue
            cum = np.concatenate(
                ([0], np.cumsum(np.add.reduceat(part, tiles[:, 0] - lo, dtype=np.intp)))
            )
            for i in np.flatnonzero(cum[1:] != cum[:-1]).tolist():
                s, e = tiles[i].tolist()
                idx = kept[cum[i] : cum[i + 1]] - s
                if 4 * len(idx) < 3 * (e - s):
                    if pend and npend + len(idx) > SPARSE_BATCH:
                        yield _sparse_batch(src, pend, npend, find_zero)
                        pend, npend = [], 0
                    pend.append((s, e, idx))
                    npend += len(idx)
                    continue
                if pend:
                    yield _sparse_batch(src, pend, npend, find_zero)
                    pend, npend = [], 0
                # Mostly kept: a view of the mapping, the few pages not kept only zero-tested.
                rows = idx if len(idx) < e - s else None
                pages = read_span(src, s, e - s)
                yield Batch(pfns=s + idx, pages=pages, find_zero=find_zero, rows=rows)
    if pend:
        yield _sparse_batch(src, pend, npend, find_zero)


def _sparse_batch(src, pend: list, n: int, find_zero: bool) -> Batch:
    """One batch of the kept pages of the sparse spans *pend*, copied in PFN order."""
    pfns = np.concatenate([s + idx for s, _e, idx in pend])
    pages = np.empty((n, src.page_size), dtype=np.uint8)
    pos = 0
    for s, e, idx in pend:
        pages[pos : pos + len(idx)] = read_span(src, s, e - s)[idx]
        pos += len(idx)
    return Batch(pfns=pfns, pages=pages, find_zero=find_zero)


def write_kdump(
    src: Source,
    classification: Classification,
    opts: WriteOptions,
    stats: WriteStats,
    sink: Sink,
    part: tuple[int, int] | None = None,
) -> None:
    """Write the whole kdump-compressed file to *sink* (FileSink or FlatSink).

    ``part``: a ``--split`` file for PFNs ``[start, end)``.  As in makedumpfile's parts
    (docs/kdump-compressed.md §8) both bitmaps are the whole dump's and the descriptor table
    is sized for the whole dump, but it holds only the part's own pages, from index 0, and
    only they have data (which starts after the whole table)."""
    ps = src.page_size
    max_mapnr = classification.max_pfn
    geo = Geometry(ps, max_mapnr, len(src.notes))
    codec = opts.compression
    status = CODEC_FLAGS[codec] if codec else 0
    if src.incomplete:
        status |= DUMP_DH_COMPRESSED_INCOMPLETE  # pages the input lost are lost in the output too
    find_zero = DumpLevel(opts.dump_level).tests_zero_pages

    # Block 0 + sub header + notes.  A random-access file first says "incomplete" and is
    # corrected at the very end; a stream cannot be corrected, so it gets the final header and
    # is whole only with its end marker.
    first_status = status | (DUMP_DH_COMPRESSED_INCOMPLETE if sink.seekable else 0)
    head = build_header(src, geo, opts.dump_level, first_status, part)
    sink.write_at(0, [head])

    # Pass 1: bitmaps, dumpable count.
    p1, p2 = _BitPacker(), _BitPacker()
    pos = 0
    num_dumpable = 0
    first = last = 0  # descriptor indices of a part's first and next-after-last page
    for start, ram, dumpable in dumpable_windows(src, classification, opts.dump_level):
        b1, b2 = p1.add(ram), p2.add(dumpable)
        if b1:
            sink.write_at(geo.bitmap1_off + pos, [b1])
            sink.write_at(geo.bitmap2_off + pos, [b2])
            pos += len(b1)
        if part is not None:
            first += int(np.count_nonzero(dumpable[: max(part[0] - start, 0)]))
            last += int(np.count_nonzero(dumpable[: max(part[1] - start, 0)]))
        num_dumpable += int(np.count_nonzero(dumpable))
    if part is None:
        first, last = 0, num_dumpable
    b1, b2 = p1.add(np.zeros(0, bool), final=True), p2.add(np.zeros(0, bool), final=True)
    # Pad both bitmaps to their block-aligned length so a stream carries every byte too.
    pad = geo.bitmap_len - pos - len(b1)
    sink.write_at(geo.bitmap1_off + pos, [b1, bytes(pad)])
    sink.write_at(geo.bitmap2_off + pos, [b2, bytes(pad)])

    # Pass 2: page data and descriptors.
    data_pos = geo.desc_off + PAGE_DESC.itemsize * num_dumpable
    zero_off = data_pos
    if find_zero:
        sink.write_at(data_pos, [bytes(ps)])
        data_pos += ps
    progress = Progress(opts.progress, "Copying data", last - first)
    desc_index = 0
    data_buf: list = []
    data_buf_start = data_pos
    data_buf_len = 0
    pending: list[Encoded] = []  # results whose pages are in data_buf, in order
    pending_n = 0
    zero_count = 0

    def flush() -> None:
        """Write the pending pages and their descriptors, the descriptors computed for all
        pending results at once (a few numpy steps per flush, not per batch)."""
        nonlocal data_buf, data_buf_len, data_buf_start, pending, pending_n, desc_index
        nonlocal zero_count
        if not pending:
            return
        sizes = np.concatenate([r.sizes for r in pending])
        zero = np.concatenate([r.zero for r in pending])
        desc = np.zeros(len(sizes), dtype=PAGE_DESC)
        ends = data_buf_start + np.cumsum(sizes)
        desc["offset"] = np.where(zero, zero_off, ends - sizes)
        desc["size"] = np.where(zero, ps, sizes)
        desc["flags"] = np.concatenate([r.flags for r in pending])
        zero_count += int(np.count_nonzero(zero))
        if data_buf_len:
            try:
                sink.write_at(data_buf_start, data_buf, data_buf_len)
            except OutputFull:
                if sink.limit is not None:
                    _write_what_fits(sink.limit, desc)
                raise
        sink.write_at(geo.desc_off + PAGE_DESC.itemsize * desc_index, [desc])
        data_buf_start += data_buf_len
        desc_index += len(desc)
        data_buf, data_buf_len, pending, pending_n = [], 0, [], 0

    def _write_what_fits(limit: int, descs: np.ndarray) -> None:
        """``-L``: keep every page that fits below the limit, with its descriptor, as
        makedumpfile does; the pages after it keep an all-zero descriptor (lost,
        docs/kdump-compressed.md §8)."""
        room = limit - data_buf_start
        fit: list = []
        for chunk in data_buf:
            size = memoryview(chunk).nbytes
            if size <= room:
                fit.append(chunk)
                room -= size
                continue
            if isinstance(chunk, np.ndarray) and chunk.ndim == 2 and room >= ps:
                fit.append(chunk[: room // ps])
            break
        end = data_buf_start + sum(memoryview(c).nbytes for c in fit)
        ok = (descs["offset"] + descs["size"] <= end) | (find_zero & (descs["offset"] == zero_off))
        n = len(ok) if ok.all() else int(np.argmin(ok))
        desc_at = geo.desc_off + PAGE_DESC.itemsize * desc_index
        if n and desc_at + PAGE_DESC.itemsize * n <= limit:
            sink.write_at(data_buf_start, fit)
            sink.write_at(desc_at, [descs[:n]])

    windows = dumpable_windows(src, classification, opts.dump_level, part)
    # Uncompressed pages going nowhere (--dry-run) need only their zero test.
    zero_only = codec is None and not sink.keeps_data
    threads = compression_threads(opts.num_threads, codec, zero_test_only=zero_only)
    # The encoder stops (its threads read through runs) before runs closes its descriptor.
    with RunReader(src) as runs, Encoder(codec, ps, threads, zero_test_only=zero_only) as enc:
        for res in enc.map(kept_batches(src, windows, find_zero, runs)):
            pending.append(res)
            pending_n += len(res.sizes)
            data_buf.extend(res.chunks)
            data_buf_len += res.stored
            if data_buf_len >= FLUSH_BYTES or len(data_buf) >= 1024 or pending_n >= FLUSH_PAGES:
                flush()
                progress.update(desc_index)
        flush()
    progress.finish()
    if desc_index != last - first:
        raise DumpError(f"internal error: {desc_index} descriptors for {last - first} pages")
    if sink.seekable:
        sink.write_at(0, [Header.unpack(head)._replace(status=status).pack()])
        # the padding of the header blocks, which makedumpfile seeks over (its "Write bytes")
        pad = ps - HEADER.size + geo.sub_hdr_blocks * ps - SUB_HEADER.size - geo.size_note
        stats.uncounted_bytes = pad
    stats.add_zero(zero_count)


__all__ = ["write_kdump", "Geometry", "build_header", "OutputFull"]
