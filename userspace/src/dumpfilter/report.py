"""Page counts per class, makedumpfile's text report, and the stable ``--stats-json``.

Each page is counted once, in the class that excluded it (docs/page-types.md §4.3).
``zero`` is not known to a scan: writers (also in ``--dry-run``, into a sink that keeps
nothing) read the kept pages and move all-zero ones from ``kept`` to ``zero``
(docs/page-types.md §4.5).

The text report (``--show-stats``) prints makedumpfile 1.7.9's lines with makedumpfile's
arithmetic, since scripts read them, and then our own counts under names of their own:

- "Original pages" is the sum of the pages of every PT_LOAD of an ELF input, so RAM that two
  PT_LOADs cover (the kernel text that kexec_file_load maps a second time) counts twice, and
  "Memory Hole" (total - original) wraps below zero; our "RAM pages" counts each PFN once.
  From a kdump-compressed input it is the 1st bitmap's count, as ours.
- "Remaining pages" is original - excluded, so it holds the doubly counted pages too, and the
  RAM pages without data; our "Dumped pages" is what the dump holds.
- The percentage is truncated, not rounded.
- "Write bytes" counts what makedumpfile writes: the block padding of a kdump file's headers
  is skipped, not written, and an ELF file's program headers are written twice; ``--split``
  counts 0 (the parts are written by child processes there).  Our "File bytes" is the size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING

import numpy as np

from .errors import DumpError
from .output import byte_count

if TYPE_CHECKING:
    from .contracts import Classification, Source, WriteOptions
    from .output import Progress
from .pageclass import PageClass

JSON_VERSION = 1
_COUNTED = {
    "cache": PageClass.CACHE,
    "cache_private": PageClass.CACHE_PRIVATE,
    "user": PageClass.USER,
    "free": PageClass.FREE,
    "hwpoison": PageClass.HWPOISON,
    "offline": PageClass.OFFLINE,
}


# Classes every dump has plenty of, counted one by one; the rest (HWPOISON, OFFLINE,
# CACHE_PRIVATE, ZERO) is usually absent and only counted when pages are left over.
# Plain ints: an IntEnum operand sends numpy's comparison down its slower int64 path.
_COMMON = tuple(int(k) for k in (PageClass.KEEP, PageClass.HOLE, PageClass.FREE))
_COMMON += (int(PageClass.CACHE), int(PageClass.USER))
_RARE = tuple(int(k) for k in PageClass if int(k) not in _COMMON)


def class_counts(arr: np.ndarray) -> np.ndarray:
    """How many pages of each PageClass ``arr`` holds (16 slots).

    One equality count per class: faster than ``np.bincount``, which first widens the
    uint8 classes to intp (a temporary eight times the window).  The rare classes cost a
    pass only when the common ones leave pages uncounted (most windows: 5 passes, not 9)."""
    counts = np.zeros(16, np.int64)
    for k in _COMMON:
        counts[k] = np.count_nonzero(arr == k)
    if counts.sum() < arr.size:
        for k in _RARE:
            counts[k] = np.count_nonzero(arr == k)
    return counts


@dataclass
class Stats:
    dump_level: int
    scan: str
    pages: dict[str, int]
    seconds: dict[str, float] = field(
        default_factory=lambda: {"prepare": 0.0, "scan": 0.0, "write": 0.0, "total": 0.0}
    )
    page_size: int = 4096
    written_bytes: int = 0
    # makedumpfile's "Original pages" (see the module doc); -1: not known, the RAM pages
    original: int = -1
    # -E: the pages of each input PT_LOAD that the ELF file holds data for (makedumpfile's
    # "Remaining pages in ELF format"); None for other formats
    elf_pages: int | None = None
    # bytes of the output that makedumpfile does not count in "Write bytes": kdump header
    # padding it skips (positive), ELF program headers it writes twice (negative)
    uncounted_bytes: int = 0
    split: bool = False  # --split: makedumpfile's parent process writes nothing itself

    @classmethod
    def from_classification(
        cls, c: Classification, dump_level: int, src: Source, *, progress: Progress | None = None
    ) -> Stats:
        """Count ``c``'s classes.  ``ram`` is what the writer's 1st bitmap marks: every
        non-HOLE PFN plus ``c.nodata``, the RAM pages a PT_LOAD spans without file data
        (``p_memsz`` beyond ``p_filesz``), which makedumpfile marks RAM in the 1st bitmap but
        drops from the 2nd.  They are in no class: ``ram - excluded - kept`` counts them.

        ``src``: the input, for makedumpfile's "Original pages" and the page size.
        ``progress``: an ``output.Progress`` told how many PFNs are judged (the scan is lazy:
        this loop is where it runs)."""
        counts = np.zeros(16, np.int64)
        nodata = np.asarray(c.nodata, np.int64)
        nodata_ram = 0
        for w0, arr in c.windows():
            counts += class_counts(arr)
            nd = nodata[(nodata >= w0) & (nodata < w0 + len(arr))] - w0
            nodata_ram += int(np.count_nonzero(arr[nd] == PageClass.HOLE))
            if progress is not None:
                progress.update(w0 + len(arr))
        if progress is not None:
            progress.finish()
        total = int(c.max_pfn)
        hole = int(counts[PageClass.HOLE]) - nodata_ram
        pages = {"total": total, "ram": total - hole, "zero": int(counts[PageClass.ZERO])}
        for name, k in _COUNTED.items():
            pages[name] = int(counts[k])
        pages["kept"] = int(counts[PageClass.KEEP])
        original = original_pages(src, total)
        ps = src.page_size
        return cls(dump_level=dump_level, scan=c.scan, pages=pages, page_size=ps, original=original)

    def add_zero(self, n: int) -> None:
        """Writers: ``n`` kept pages were all zero and excluded as such."""
        self.pages["zero"] += n
        self.pages["kept"] -= n

    @property
    def excluded(self) -> int:
        p = self.pages
        return p["zero"] + sum(p[k] for k in _COUNTED)

    def as_json(self) -> dict:
        return {
            "version": JSON_VERSION,
            "dump_level": self.dump_level,
            "scan": self.scan,
            "page_size": self.page_size,
            "pages": {
                k: int(self.pages[k])
                for k in (
                    "total",
                    "ram",
                    "zero",
                    "cache",
                    "cache_private",
                    "user",
                    "free",
                    "hwpoison",
                    "offline",
                    "kept",
                )
            },
            "excluded": self.excluded,
            "seconds": {
                k: round(float(self.seconds.get(k, 0.0)), 6)
                for k in ("prepare", "scan", "write", "total")
            },
            "written_bytes": int(self.written_bytes),
        }


class _CountingSink:
    """Keeps nothing, measures a file: where a real run's bytes would go (``--dry-run``)."""

    seekable: bool = True
    keeps_data: bool = False
    limit: int | None = None
    name: str = "dry run"

    def __init__(self) -> None:
        self.end = 0

    def write_at(self, offset: int, buffers, nbytes: int | None = None) -> None:
        n = byte_count(buffers) if nbytes is None else nbytes
        self.end = max(self.end, offset + n)

    @property
    def bytes_written(self) -> int:
        return self.end


def dry_run(src: Source, c: Classification, opts: WriteOptions, stats: Stats) -> None:
    """``--dry-run``: run the writer ``opts`` asks for into a sink that keeps nothing, as
    makedumpfile's dry run does, so that the zero pages are found and "Write bytes" is what
    the real run would write (compressed sizes included).  A ``--split`` set is measured as
    one file: its "Write bytes" is 0 anyway, its zero pages are the same."""
    from .output import FlatSink

    class _CountingFlatSink(FlatSink):
        keeps_data = False

        def _emit(self, buffers, nbytes: int | None = None) -> None:
            self.emitted += byte_count(buffers) if nbytes is None else nbytes

    flat = _CountingFlatSink(-1, "dry run") if opts.flatten else None
    sink: FlatSink | _CountingSink = _CountingSink() if flat is None else flat
    if opts.elf:
        from .elfdump import write_elf as writer
    else:
        from .diskdump import write_kdump as writer
    writer(src, c, opts, stats, sink)
    if flat is not None:
        flat.finish()
    stats.written_bytes = sink.bytes_written


def original_pages(src, max_pfn: int) -> int:
    """makedumpfile's "Original pages": every PT_LOAD's pages (``p_memsz``, partial pages
    included) summed, overlaps and all; the RAM PFN count of an input without PT_LOADs."""
    ps = src.page_size
    loads = src.loads
    if not loads:
        return sum(b - a for a, b in src.ram_ranges)
    n = 0
    for ld in loads:
        a = min(ld.paddr // ps, max_pfn)
        b = min(-(-(ld.paddr + ld.memsz) // ps), max_pfn)
        n += b - a
    return n


def elf_file_pages(src, ranges: list[tuple[int, int]]) -> int:
    """Pages of each input PT_LOAD (each RAM range without PT_LOADs) that lie in the PFN
    ``ranges`` an ELF output holds data for, summed over the PT_LOADs, as makedumpfile counts
    its "Remaining pages in ELF format" (it writes a PT_LOAD that repeats RAM again)."""
    if not ranges:
        return 0
    ps = src.page_size
    loads = src.loads
    spans = (
        [(ld.paddr // ps, -(-(ld.paddr + ld.memsz) // ps)) for ld in loads]
        if loads
        else list(src.ram_ranges)
    )
    r = np.asarray(ranges, np.int64)
    starts, ends = r[:, 0], r[:, 1]
    n = 0
    for a, b in spans:
        n += int(np.clip(np.minimum(ends, b) - np.maximum(starts, a), 0, None).sum())
    return n


def _h(v: int) -> str:
    return f"0x{v & 0xFFFFFFFFFFFFFFFF:016x}"


# makedumpfile's STEP names for our phases (its report prints one line per step)
STEPS = (
    ("prepare", "Checking for memory holes"),
    ("scan", "Excluding unnecessary pages"),
    ("write", "Copying data"),
)


def makedumpfile_write_bytes(stats: Stats) -> int:
    return 0 if stats.split else stats.written_bytes - stats.uncounted_bytes


def report_lines(stats: Stats) -> list[str]:
    """The ``--show-stats`` report: makedumpfile 1.7.9's lines, then ours (module doc)."""
    p = stats.pages
    total = p["total"]
    original = stats.original if stats.original >= 0 else p["ram"]
    excluded = stats.excluded
    remaining = original - excluded
    shown = remaining
    lines = [
        "",
        f"Original pages  : {_h(original)}",
        f"  Excluded pages   : {_h(excluded)}",
    ]
    if stats.elf_pages is not None:
        shown = stats.elf_pages
        lines.append(f"     in ELF format : {_h(original - stats.elf_pages)}")
    lines += [
        f"    Pages filled with zero  : {_h(p['zero'])}",
        f"    Non-private cache pages : {_h(p['cache'])}",
        f"    Private cache pages     : {_h(p['cache_private'])}",
        f"    User process data pages : {_h(p['user'])}",
        f"    Free pages              : {_h(p['free'])}",
        f"    Hwpoison pages          : {_h(p['hwpoison'])}",
        f"    Offline pages           : {_h(p['offline'])}",
        f"  Remaining pages  : {_h(remaining)}",
    ]
    if stats.elf_pages is not None:
        lines.append(f"     in ELF format : {_h(stats.elf_pages)}")
    pct = shown * 100 // original if original > 0 else 0
    ram = p["ram"]
    kept_pct = 100.0 * p["kept"] / ram if ram else 0.0
    sec = stats.seconds
    lines += [
        f"  (The number of pages is reduced to {pct}%.)",
        f"Memory Hole     : {_h(total - original)}",
        "--------------------------------------------------",
        f"Total pages     : {_h(total)}",
        f"Write bytes     : {makedumpfile_write_bytes(stats)}",
        "",
        f"RAM pages       : {_h(ram)}",
        f"  Dumped pages     : {_h(p['kept'])}",
        f"  (The dump holds {kept_pct:.2f}% of RAM.)",
        f"File bytes      : {stats.written_bytes}",
        f"Scan            : {stats.scan}, dump level {stats.dump_level}",
        f"Seconds         : prepare {sec.get('prepare', 0.0):.3f}, "
        f"scan {sec.get('scan', 0.0):.3f}, "
        f"write {sec.get('write', 0.0):.3f}, "
        f"total {sec.get('total', 0.0):.3f}",
        "",
        "",  # makedumpfile's report ends with a blank line too
    ]
    return lines


def print_report(stats: Stats, file: IO[str]) -> None:
    """Write ``report_lines`` to *file*."""
    file.write("\n".join(report_lines(stats)))
    file.flush()


def write_json(stats: Stats, path: str, inputs: tuple[str, ...] = ()) -> None:
    """Write the JSON report by outfile's rule (a report, so an existing one is replaced);
    ``-`` is stdout."""
    import json  # here: only --stats-json needs it, and start-up is a small dump's cost

    from .outfile import SafeFile
    from .output import OutputFull, _write_all

    data = (json.dumps(stats.as_json(), indent=2, sort_keys=False) + "\n").encode()
    with SafeFile(path, force=True, seek=False, inputs=inputs) as out:
        try:
            _write_all(out.fd, None, [data], path)
        except OutputFull as e:
            raise DumpError(str(e)) from None
        out.commit()
