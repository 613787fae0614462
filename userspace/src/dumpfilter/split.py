"""``--split`` and ``--reassemble``: one dump as several kdump-compressed files, and back.

A split set (docs/kdump-compressed.md §3, §8) is N complete kdump files of the same dump:
each has the whole dump's header, notes and both bitmaps, sub header ``split = 1`` and its
own ``[start_pfn, end_pfn)``; its descriptor table is sized for the whole dump but holds, from
index 0, only the descriptors of the pages in its range, and only those pages have data,
after the whole table (makedumpfile 1.7.2's parts, observed).  crash opens the set as is;
``--reassemble D1 .. DN D`` (ours or makedumpfile's) makes one ordinary file of it.  Our
ranges hold about the same number of dumpable pages, so that the parts take about the same
time and room.

Reassembly copies, never recompresses: the merged file takes the first part's header block,
sub header (split fields cleared) and bitmaps, then from each part the descriptors of its
range, data offsets moved by where that part's data lands, and its page data.  Everything
is streamed in bounded pieces.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import DumpError
from .kdumpformat import (
    DUMP_DH_COMPRESSED_INCOMPLETE,
    HEADER,
    HEADER_OFFSET,
    PAGE_DESC,
    SIGNATURES,
    STATUS,
    SUB_HEADER,
    Header,
    SubHeader,
)
from .outfile import SafeFile
from .output import _write_all

_CHUNK = 8 << 20  # bytes per streamed piece (bitmaps, descriptors, data)
_STATUS = HEADER_OFFSET["status"]  # parts of one dump agree on the header up to here


def split_ranges(
    windows: Callable[[], Iterable[tuple[int, np.ndarray]]], max_pfn: int, n: int
) -> list[tuple[int, int]]:
    """``n`` contiguous ``[start, end)`` ranges covering ``[0, max_pfn)`` that hold about the
    same number of dumpable pages each.  ``windows()`` yields (start_pfn, dumpable bool array)
    in PFN order; it is iterated twice (counts, then cuts), so memory stays per window.

    Boundaries are rounded up to multiples of 8 PFNs, so each part's bitmap bytes are its own."""
    total = sum(int(np.count_nonzero(d)) for _, d in windows())
    if total == 0:
        cuts = [max_pfn * i // n for i in range(1, n)]
    else:
        targets = [-(-total * i // n) for i in range(1, n)]
        cuts, seen, t = [], 0, 0
        for start, d in windows():
            count = int(np.count_nonzero(d))
            if t < len(targets) and seen + count >= targets[t]:
                cum = np.cumsum(d, dtype=np.int64)
                while t < len(targets) and seen + count >= targets[t]:
                    cuts.append(start + int(np.searchsorted(cum, targets[t] - seen)) + 1)
                    t += 1
            seen += count
    cuts = [min(max_pfn, -(-c // 8) * 8) for c in cuts]
    bounds = [0, *cuts, max_pfn]
    return [(bounds[i], max(bounds[i], bounds[i + 1])) for i in range(n)]


@dataclass
class _Part:
    """One split file: geometry, range, where its descriptors and data are."""

    path: str
    fd: int
    head: bytes  # header block + sub header blocks
    status: int
    block_size: int
    bitmap_blocks: int
    max_mapnr: int
    start: int
    end: int
    nr_dumpable: int  # the whole dump's (the descriptor table's length)
    size: int
    first: int = 0  # whole-dump descriptor index of the first page in [start, end)
    last: int = 0  # and of the first page after it (the part holds last - first, from 0)

    @property
    def bitmap_off(self) -> int:
        return len(self.head)

    @property
    def desc_off(self) -> int:
        return self.bitmap_off + self.bitmap_blocks * self.block_size

    @property
    def data_off(self) -> int:
        return self.desc_off + PAGE_DESC.itemsize * self.nr_dumpable

    def pread(self, size: int, off: int) -> bytes:
        data = os.pread(self.fd, size, off)
        if len(data) != size:
            raise DumpError(f"{self.path} is truncated (short read at offset {off:#x})")
        return data

    def bitmap2(self, lo: int, hi: int) -> np.ndarray:
        """Bytes [lo, hi) of the 2nd bitmap."""
        half = self.bitmap_blocks * self.block_size // 2
        return np.frombuffer(self.pread(hi - lo, self.bitmap_off + half + lo), np.uint8)


def _open_part(path: str) -> _Part:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise DumpError(f"cannot open {path}: {e.strerror}") from None
    try:
        size = os.fstat(fd).st_size
        first = os.pread(fd, HEADER.size, 0)
        if len(first) < HEADER.size or first[:8] not in SIGNATURES:
            raise DumpError(f"{path} is not a kdump-compressed file")
        hdr = Header.unpack(first)
        version, status, bs = hdr.header_version, hdr.status, hdr.block_size
        sub_blocks, bitmap_blocks, max_mapnr = hdr.sub_hdr_size, hdr.bitmap_blocks, hdr.max_mapnr
        if bs <= 0 or bs & (bs - 1) or not 0 < sub_blocks < 1 << 20 or bitmap_blocks <= 0:
            raise DumpError(f"{path}: corrupt kdump header")
        head = os.pread(fd, (1 + sub_blocks) * bs, 0)
        if len(head) != (1 + sub_blocks) * bs or version < 6:
            raise DumpError(f"{path}: no split range (header version {version}, truncated?)")
        sub = SubHeader.unpack(head, bs)
        split, start, end = sub.split, sub.start_pfn_64, sub.end_pfn_64
        max_mapnr = sub.max_mapnr_64 or max_mapnr
        if split != 1:
            raise DumpError(f"{path} is not a --split file")
        if not 0 <= start <= end <= max_mapnr or bitmap_blocks * bs * 4 < max_mapnr:
            raise DumpError(f"{path}: corrupt split range {start:#x}-{end:#x}")
        part = _Part(path, fd, head, status, bs, bitmap_blocks, max_mapnr, start, end, 0, size)
        for lo in range(0, (max_mapnr + 7) // 8, _CHUNK):
            bits = np.unpackbits(part.bitmap2(lo, min(lo + _CHUNK, (max_mapnr + 7) // 8)),
                                 bitorder="little")  # fmt: skip
            pfn0 = 8 * lo
            part.first += int(bits[: max(start - pfn0, 0)].sum(dtype=np.int64))
            part.last += int(bits[: max(end - pfn0, 0)].sum(dtype=np.int64))
            part.nr_dumpable += int(bits.sum(dtype=np.int64))
        if size < part.data_off:
            raise DumpError(f"{path} is truncated (page descriptors)")
        return part
    except BaseException:
        os.close(fd)
        raise


def _check_set(parts: list[_Part]) -> None:
    a = parts[0]
    for p in parts[1:]:
        same = (p.block_size, p.bitmap_blocks, p.max_mapnr, len(p.head))
        if same != (a.block_size, a.bitmap_blocks, a.max_mapnr, len(a.head)):
            raise DumpError(f"{p.path} is not from the same dump as {a.path}")
        if p.head[:_STATUS] != a.head[:_STATUS] or p.nr_dumpable != a.nr_dumpable:
            raise DumpError(f"{p.path} is not from the same dump as {a.path}")
        size = a.bitmap_blocks * a.block_size
        for lo in range(0, size, _CHUNK):
            n = min(_CHUNK, size - lo)
            if p.pread(n, p.bitmap_off + lo) != a.pread(n, a.bitmap_off + lo):
                raise DumpError(f"{p.path} is not from the same dump as {a.path} (bitmaps)")
    if parts[0].start != 0 or parts[-1].end != a.max_mapnr:
        raise DumpError("the split files do not cover the whole dump (a part is missing)")
    for p, q in zip(parts, parts[1:], strict=False):
        if p.end != q.start:
            what = "missing" if p.end < q.start else "overlapping"
            raise DumpError(f"{p.path} and {q.path}: pfns {p.end:#x}-{q.start:#x} {what}")


def reassemble(paths: Sequence[str], out: str, force: bool = False) -> None:
    """Merge the split files ``paths`` (any order) into the ordinary kdump file ``out``."""
    parts: list[_Part] = []
    try:
        for path in paths:
            parts.append(_open_part(path))
        parts.sort(key=lambda p: p.start)
        _check_set(parts)
        with SafeFile(out, force=force, inputs=paths) as f:
            _merge(parts, f.fd, out)
            f.commit()
    finally:
        for p in parts:
            os.close(p.fd)


def _merge(parts: list[_Part], fd: int, name: str) -> None:
    a = parts[0]
    bs = a.block_size
    head = bytearray(a.head)
    status = a.status
    if any(p.status & DUMP_DH_COMPRESSED_INCOMPLETE for p in parts):
        status |= DUMP_DH_COMPRESSED_INCOMPLETE  # a lost page in any part is lost in the whole
    STATUS.pack_into(head, HEADER_OFFSET["status"], status)
    sub = SubHeader.unpack(head, bs)
    whole = sub._replace(split=0, start_pfn=0, end_pfn=0, start_pfn_64=0, end_pfn_64=0)
    head[bs : bs + SUB_HEADER.size] = whole.pack()
    _write_all(fd, 0, [bytes(head)], name)

    size = a.bitmap_blocks * bs  # both bitmaps: the whole dump's, the same in every part
    for lo in range(0, size, _CHUNK):
        n = min(_CHUNK, size - lo)
        _write_all(fd, a.bitmap_off + lo, [a.pread(n, a.bitmap_off + lo)], name)

    data_at = a.data_off
    per = _CHUNK // PAGE_DESC.itemsize
    for p in parts:
        shift = data_at - p.data_off
        for i in range(0, p.last - p.first, per):
            k = min(per, p.last - p.first - i)
            at = PAGE_DESC.itemsize * i
            d = np.frombuffer(p.pread(k * PAGE_DESC.itemsize, p.desc_off + at), PAGE_DESC).copy()
            lost = d["offset"] == 0  # never written (an incomplete part): stays lost
            if np.any(~lost & ((d["offset"] < p.data_off) | (d["offset"] + d["size"] > p.size))):
                raise DumpError(f"{p.path} is truncated or corrupt (page data out of the file)")
            d["offset"] = np.where(lost, 0, d["offset"] + shift)
            _write_all(fd, a.desc_off + PAGE_DESC.itemsize * p.first + at, [d.tobytes()], name)
        data_at += _copy(p, fd, data_at, name)


def _copy(p: _Part, fd: int, at: int, name: str) -> int:
    """Append part ``p``'s page data at ``at``; the number of bytes."""
    total = p.size - p.data_off
    done = 0
    while done < total:
        n = min(_CHUNK, total - done)
        _write_all(fd, at + done, [p.pread(n, p.data_off + done)], name)
        done += n
    return total
