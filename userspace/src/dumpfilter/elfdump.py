"""ELF writer (``-E``): the input's Ehdr, PT_NOTE first, then PT_LOADs cut at long excluded runs.

Follows makedumpfile's ELF output (docs/kdump-compressed.md §10; makedumpfile's
``write_elf_header`` / ``get_loads_dumpfile_cyclic``): program headers right after the Ehdr, the
input notes verbatim, segment data back to back (not page-aligned). Each input PT_LOAD is walked
page by page: a run of at least 256 excluded pages ends the current segment (it becomes its
``p_memsz > p_filesz`` tail, which readers see as absent/zero) and a new segment starts at the next
dumpable page; shorter runs are written with their real contents, except at the end of a PT_LOAD,
where any excluded tail is left out. The kernel-text PT_LOAD (inside a RAM one) is not repeated.
``PN_XNUM`` headers go into section 0.

With dump level bit 1 the zero pages must be known before the headers can be written, so the
kept pages are read twice (as makedumpfile does): pass 1 counts segments, pass 2 writes.  Both
passes stream, so memory stays bounded; the zero test runs in the parallel encoder.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .compress import Encoder
from .contracts import Classification, Sink, Source, WriteOptions, WriteStats
from .diskdump import (
    RunReader,
    dumpable_windows,
    kept_batches,
    read_span,
    span_cuts,
    spans,
)
from .dumplevel import DumpLevel
from .elfcore import ELF_INCOMPLETE, PT_LOAD, PT_NOTE
from .errors import DumpError
from .output import Progress
from .pagebatch import compression_threads

PFN_EXCLUDED = 256  # makedumpfile.h: a shorter excluded run stays inside the segment
PN_XNUM = 0xFFFF
_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")
_SHDR = struct.Struct("<IIQQQQIIQQ")
assert _EHDR.size == 64 and _PHDR.size == 56 and _SHDR.size == 64


@dataclass
class _Load:
    paddr: int
    vaddr: int
    filesz: int
    flags: int


def _loads(src) -> list[_Load]:
    """Input PT_LOADs with a valid physical address (ELF input), else one per RAM range."""
    ps = src.page_size
    if src.kind == "elf" and src.loads:
        out = [
            _Load(int(seg.paddr), int(seg.vaddr), int(seg.filesz), int(seg.flags))
            for seg in src.loads
            if seg.filesz > 0
        ]
    else:
        out = [_Load(s * ps, 0, (e - s) * ps, 7) for s, e in src.ram_ranges]
    # The kernel-text PT_LOAD that kexec_file_load adds lies inside a RAM PT_LOAD: its pages
    # are written once, with the RAM segment (segments here must not overlap).
    out.sort(key=lambda ld: (ld.paddr, -ld.filesz))
    kept: list[_Load] = []
    for ld in out:
        if kept and ld.paddr + ld.filesz <= kept[-1].paddr + kept[-1].filesz:
            continue
        if kept and ld.paddr < kept[-1].paddr + kept[-1].filesz:
            raise DumpError("input PT_LOADs overlap partially; cannot write ELF output")
        kept.append(ld)
    return kept


def _ehdr_template(src) -> bytes:
    """The input Ehdr (ELF64 only), or a fresh x86_64 ET_CORE one for a kdump input."""
    eh = src.ehdr if src.kind == "elf" else None
    if eh:
        eh = bytes(eh[:64])
        if eh[4] != 2:
            raise DumpError("ELF output (-E) from an ELF32 vmcore is not supported")
        return eh
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    return _EHDR.pack(ident, 4, 62, 1, 0, 0, 0, 0, 64, 56, 0, 64, 0, 0)


class _GapFinder:
    """Excluded runs of at least PFN_EXCLUDED pages, fed window by window (carried across)."""

    def __init__(self) -> None:
        self.open_start: int | None = None  # start of an excluded run reaching the chunk end

    def feed(self, start: int, keep: np.ndarray) -> list[tuple[int, int]]:
        n = len(keep)
        if n == 0:
            return []
        edges = np.diff((~keep).astype(np.int8), prepend=np.int8(0), append=np.int8(0))
        starts = (np.flatnonzero(edges == 1) + start).tolist()
        ends = (np.flatnonzero(edges == -1) + start).tolist()
        out: list[tuple[int, int]] = []
        if self.open_start is not None:
            if starts and starts[0] == start:
                starts[0] = self.open_start
            elif start - self.open_start >= PFN_EXCLUDED:
                out.append((self.open_start, start))
            self.open_start = None
        if ends and ends[-1] == start + n:
            self.open_start = starts.pop()
            ends.pop()
        out.extend((s, e) for s, e in zip(starts, ends, strict=True) if e - s >= PFN_EXCLUDED)
        return out

    def finish(self, end: int) -> list[tuple[int, int]]:
        """Excluded pages at the end of a PT_LOAD are never written, however few (makedumpfile's
        ``write_elf_pages_cyclic`` ends the last segment's file data at the last dumpable page)."""
        s, self.open_start = self.open_start, None
        return [(s, end)] if s is not None else []


def _segments(
    src,
    classification,
    dump_level: int,
    enc: Encoder,
    zeros: dict[int, tuple[str, np.ndarray]] | None = None,
    runs: RunReader | None = None,
) -> Iterator[tuple]:
    """(load, seg_start_pfn, file_end_pfn, mem_end_pfn) in file order, plus zero counts.

    Yields ``("zero", n)`` items too, so one pass can both count segments and zero pages.
    *zeros* carries each window's zero pages from the first pass to the second, so the page
    data is zero-tested once, not twice (the header needs the segment count before any data).
    """
    ps = src.page_size
    loads = _loads(src)
    find_zero = DumpLevel(dump_level).tests_zero_pages
    li = 0
    state: dict = {}

    def load_pfns(ld: _Load) -> tuple[int, int]:
        return ld.paddr // ps, -(-(ld.paddr + ld.filesz) // ps)

    def emit(ld: _Load, gaps: list[tuple[int, int]], final: bool) -> Iterator[tuple]:
        a, b = load_pfns(ld)
        seg = state.setdefault(id(ld), a)
        for g0, g1 in gaps:
            g1 = min(g1, b)
            yield (ld, seg, g0, g1)
            seg = g1
        state[id(ld)] = seg
        if final and seg < b:
            yield (ld, seg, b, b)

    finders = {id(ld): _GapFinder() for ld in loads}
    for start, _ram, dumpable in dumpable_windows(src, classification, dump_level):
        end = start + len(dumpable)
        keep = dumpable
        if find_zero and dumpable.any():
            keep = dumpable.copy()
            known = zeros.get(start) if zeros is not None else None
            if known is not None:
                kind, data = known
                if kind == "bits":
                    keep &= ~np.unpackbits(data, count=len(keep), bitorder="little").astype(bool)
                else:
                    keep[data] = False
                yield ("zero", int(np.count_nonzero(dumpable)) - int(np.count_nonzero(keep)))
            else:
                nz = 0
                one = [(start, None, dumpable)]  # this window, as the writers batch it
                for res in enc.map(kept_batches(src, one, True, runs)):
                    keep[res.batch.pfns[res.zero] - start] = False
                    nz += int(np.count_nonzero(res.zero))
                if zeros is not None:
                    zeros[start] = _zero_record(dumpable & ~keep)
                yield ("zero", nz)
        while li < len(loads):
            ld = loads[li]
            a, b = load_pfns(ld)
            lo, hi = max(a, start), min(b, end)
            if lo < hi:
                yield from emit(ld, finders[id(ld)].feed(lo, keep[lo - start : hi - start]), False)
            if b <= end:
                yield from emit(ld, finders[id(ld)].finish(b), True)
                li += 1
            else:
                break
    for ld in loads[li:]:  # loads beyond max_pfn (should not happen): keep whole
        a, b = load_pfns(ld)
        yield from emit(ld, finders[id(ld)].finish(b), True)


def _zero_record(zero: np.ndarray) -> tuple[str, np.ndarray]:
    """A window's zero pages in the smaller form: uint32 offsets, or a packed bitmap."""
    n = int(np.count_nonzero(zero))
    if 4 * n <= len(zero) // 8:
        return ("offsets", np.flatnonzero(zero).astype(np.uint32))
    return ("bits", np.packbits(zero, bitorder="little"))


def write_elf(
    src: Source, classification: Classification, opts: WriteOptions, stats: WriteStats, sink: Sink
) -> None:
    """Write the ELF core to *sink* (FileSink or FlatSink)."""
    ps = src.page_size
    zeros: dict[int, tuple[str, np.ndarray]] = {}
    # The encoder stops (its threads read through runs) before runs closes its descriptor.
    threads = compression_threads(opts.num_threads, None, zero_test_only=True)
    with RunReader(src) as runs, Encoder(None, ps, threads, zero_test_only=True) as enc:
        nseg = 0
        zero = 0
        data_pages = 0  # pages of segment data: what the progress counts
        for item in _segments(src, classification, opts.dump_level, enc, zeros, runs):
            if item[0] == "zero":
                zero += item[1]
            else:
                nseg += 1
                data_pages += item[2] - item[1]
        nph = nseg + 1
        xnum = nph >= PN_XNUM
        phoff = 64
        shoff = phoff + 56 * nph if xnum else 0
        notes_off = phoff + 56 * nph + (64 if xnum else 0)
        data_off = notes_off + len(src.notes)

        eh = list(_EHDR.unpack(_ehdr_template(src)))
        # e_ident, e_type, e_machine, e_version, e_entry, e_phoff, e_shoff, e_flags,
        # e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
        eh[5], eh[6], eh[8], eh[9] = phoff, shoff, 64, 56
        eh[10] = PN_XNUM if xnum else nph
        eh[11], eh[12], eh[13] = (64, 1, 0) if xnum else (0, 0, 0)
        # an input cut short (its own mark) gives an output that is not whole either
        flags = eh[7] | (ELF_INCOMPLETE if src.incomplete else 0)
        eh[7] = flags | (ELF_INCOMPLETE if sink.seekable else 0)
        head = [_EHDR.pack(*eh)]
        sink.write_at(0, head)
        if xnum:
            sink.write_at(shoff, [_SHDR.pack(0, 0, 0, 0, 0, 0, 0, nph, 0, 0)])
        sink.write_at(
            phoff, [_PHDR.pack(PT_NOTE, 0, notes_off, 0, 0, len(src.notes), len(src.notes), 0)]
        )
        sink.write_at(notes_off, [bytes(src.notes)])

        progress = Progress(opts.progress, "Copying data", data_pages)
        done = 0
        data_pfns: list[tuple[int, int]] = []  # PFN ranges the file holds data for
        cuts = span_cuts(src)
        pos = data_off
        i = 0
        for item in _segments(src, classification, opts.dump_level, enc, zeros, runs):
            if item[0] == "zero":
                continue
            ld, s, fe, me = item
            seg_lo = max(s * ps, ld.paddr)
            file_hi = min(fe * ps, ld.paddr + ld.filesz)
            mem_hi = min(me * ps, ld.paddr + ld.filesz)
            filesz = max(file_hi - seg_lo, 0)
            off = pos if filesz else 0
            if filesz:
                data_pfns.append((s, fe))
            for p, q in spans(s, fe, cuts):
                view = read_span(src, p, q - p).reshape(-1)
                lo = max(seg_lo - p * ps, 0)
                hi = min(file_hi - p * ps, (q - p) * ps)
                sink.write_at(pos, [view[lo:hi]])
                pos += hi - lo
                done += q - p
                progress.update(done)
            vaddr = ld.vaddr + (seg_lo - ld.paddr) if ld.vaddr else 0
            i += 1
            sink.write_at(
                phoff + 56 * i,
                [_PHDR.pack(PT_LOAD, ld.flags, off, vaddr, seg_lo, filesz, mem_hi - seg_lo, 0)],
            )
        progress.finish()
        if i != nseg:
            raise DumpError(f"internal error: {i} segments written, {nseg} counted")
    if sink.seekable:
        eh[7] = flags
        sink.write_at(0, [_EHDR.pack(*eh)])
    from .report import elf_file_pages

    stats.elf_pages = elf_file_pages(src, data_pfns)  # the report's "in ELF format" lines
    # makedumpfile writes the program headers twice: its "Write bytes" counts them so
    stats.uncounted_bytes = -_PHDR.size * nph if sink.seekable else 0
    stats.add_zero(zero)
