"""Page counts per class, makedumpfile's text report, and the stable ``--stats-json``.

Each page is counted once, in the class that excluded it (kernel-page-types.md §3.3).
``zero`` is not known to a scan: writers (or ``count_zero_pages`` for ``--dry-run``) read the
kept pages and move all-zero ones from ``kept`` to ``zero`` (§3.5).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import IO

import numpy as np

from .errors import DumpError
from .pageclass import DL_ZERO, PageClass

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
# Plain ints: an IntEnum operand sends numpy's comparison down its int64 path (6x slower).
_COMMON = tuple(int(k) for k in (PageClass.KEEP, PageClass.HOLE, PageClass.FREE))
_COMMON += (int(PageClass.CACHE), int(PageClass.USER))
_RARE = tuple(int(k) for k in PageClass if int(k) not in _COMMON)


def class_counts(arr: np.ndarray) -> np.ndarray:
    """How many pages of each PageClass ``arr`` holds (16 slots).

    One equality count per class: 3x faster than ``np.bincount``, which first widens the
    uint8 classes to intp (a 2 MiB temporary per 1 GiB window).  The rare classes cost a
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

    @classmethod
    def from_classification(cls, c, dump_level: int) -> Stats:
        """Count ``c``'s classes.  ``ram`` is what the writer's 1st bitmap marks: every
        non-HOLE PFN plus ``c.nodata``, the RAM pages a PT_LOAD only partly holds (e.g. PFN
        159 when a range ends at 0x9fc00), which makedumpfile marks RAM in the 1st bitmap but
        drops from the 2nd.  They are in no class: ``ram - excluded - kept`` counts them."""
        counts = np.zeros(16, np.int64)
        nd_attr = getattr(c, "nodata", None)  # a list (userspace) or an array (kernel scan)
        nodata = np.asarray([] if nd_attr is None else nd_attr, np.int64)
        nodata_ram = 0
        for w0, arr in c.windows():
            counts += class_counts(arr)
            nd = nodata[(nodata >= w0) & (nodata < w0 + len(arr))] - w0
            nodata_ram += int(np.count_nonzero(arr[nd] == PageClass.HOLE))
        total = int(c.max_pfn)
        hole = int(counts[PageClass.HOLE]) - nodata_ram
        pages = {"total": total, "ram": total - hole, "zero": int(counts[PageClass.ZERO])}
        for name, k in _COUNTED.items():
            pages[name] = int(counts[k])
        pages["kept"] = int(counts[PageClass.KEEP])
        ps = getattr(getattr(c, "src", None), "page_size", 4096)
        return cls(dump_level=dump_level, scan=c.scan, pages=pages, page_size=ps)

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


def count_zero_pages(src, c, dump_level: int) -> int:
    """Dumpable pages whose contents are all zero (``--dry-run`` with dump level bit 1).

    Read as the writers read them (diskdump.kept_batches): sparse spans gathered with one
    ``preadv`` per run of kept pages, dense ones viewed in the mapping; reading every span
    with a kept page in it read most of RAM on a real 6.1 dump (48 ms; makedumpfile's whole
    dry run takes 20)."""
    from .compress import zero_rows
    from .diskdump import RunReader, dumpable_windows, kept_batches

    n = 0
    with RunReader(src) as runs:
        for b in kept_batches(src, dumpable_windows(src, c, dump_level), True, runs):
            zero = zero_rows(b.pages)
            n += int(np.count_nonzero(zero if b.rows is None else zero[b.rows]))
    return n


def _h(v: int) -> str:
    return f"0x{v:016x}"


def print_report(stats: Stats, file: IO[str]) -> None:
    """The report makedumpfile prints with --show-stats (makedumpfile-anchor.md §4)."""
    p = stats.pages
    hole = p["total"] - p["ram"]
    remaining = p["ram"] - stats.excluded
    pct = (100.0 * remaining / p["ram"]) if p["ram"] else 0.0
    lines = [
        "",
        f"Original pages  : {_h(p['ram'])}",
        f"  Excluded pages   : {_h(stats.excluded)}",
        f"    Pages filled with zero  : {_h(p['zero'])}",
        f"    Non-private cache pages : {_h(p['cache'])}",
        f"    Private cache pages     : {_h(p['cache_private'])}",
        f"    User process data pages : {_h(p['user'])}",
        f"    Free pages              : {_h(p['free'])}",
        f"    Hwpoison pages          : {_h(p['hwpoison'])}",
        f"    Offline pages           : {_h(p['offline'])}",
        f"  Remaining pages  : {_h(remaining)}",
        f"  (The number of pages is reduced to {pct:.0f}%.)",
        f"Memory Hole     : {_h(hole)}",
        "--------------------------------------------------",
        f"Total pages     : {_h(p['total'])}",
        f"Write bytes     : {stats.written_bytes}",
        f"Scan            : {stats.scan}, dump level {stats.dump_level}",
        f"Seconds         : prepare {stats.seconds.get('prepare', 0.0):.3f}, "
        f"scan {stats.seconds.get('scan', 0.0):.3f}, "
        f"write {stats.seconds.get('write', 0.0):.3f}, "
        f"total {stats.seconds.get('total', 0.0):.3f}",
        "",
    ]
    file.write("\n".join(lines))
    file.flush()


def write_json(stats: Stats, path: str, inputs: tuple[str, ...] = ()) -> None:
    """Write the JSON report by outfile's rule (a report, so an existing one is replaced);
    ``-`` is stdout."""
    from .outfile import SafeFile
    from .output import OutputFull, _write_all

    data = (json.dumps(stats.as_json(), indent=2, sort_keys=False) + "\n").encode()
    with SafeFile(path, force=True, seek=False, inputs=inputs) as out:
        try:
            _write_all(out.fd, None, [data], path)
        except OutputFull as e:
            raise DumpError(str(e)) from None
        out.commit()


def needs_zero_count(stats: Stats) -> bool:
    return bool(stats.dump_level & DL_ZERO)
