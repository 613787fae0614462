"""Flattened stream (``-F``) and its reassembly (``-R``).

The stream (makedumpfile.h ``makedumpfile_header`` / ``makedumpfile_data_header``,
docs/kdump-compressed.md §9): a 4096-byte header ``"makedumpfile"``, type 1, version 1
(big-endian int64s), then records ``(offset, size)`` + ``size`` bytes meant for ``offset`` of the
random-access file, in any order, ended by ``(-1, -1)``.  Writing is ``output.FlatSink``; this
module rebuilds the file from a stream, ours or makedumpfile's.
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO

import numpy as np

from .elfcore import ELF_INCOMPLETE
from .errors import DumpError
from .kdumpformat import (
    DUMP_DH_COMPRESSED_INCOMPLETE,
    FLAT_HEADER,
    FLAT_HEADER_SIZE,
    FLAT_RECORD,
    FLAT_SIGNATURE,
    FLAT_TYPE,
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
from .output import OutputFull, _write_all

_CHUNK = 1 << 20
# Where the "incomplete" mark of an ELF dump lives: ELF64 ``e_flags`` (offset 48).
_ELF_FLAGS = 48
_DESC_STEP = 1 << 20  # descriptors checked per step


class _Written:
    """The byte ranges the records filled, merged; ``has(a, b)`` for arrays of ranges."""

    def __init__(self, ranges: list[tuple[int, int]]):
        starts: list[int] = []
        ends: list[int] = []
        for a, b in sorted(r for r in ranges if r[0] < r[1]):
            if ends and a <= ends[-1]:
                ends[-1] = max(ends[-1], b)
            else:
                starts.append(a)
                ends.append(b)
        self.starts = np.array(starts, np.int64)
        self.ends = np.array(ends, np.int64)

    def has(self, a, b) -> np.ndarray:
        a, b = np.atleast_1d(np.asarray(a, np.int64)), np.atleast_1d(np.asarray(b, np.int64))
        i = np.searchsorted(self.starts, a, side="right") - 1
        ok = i >= 0
        return ok & (self.ends[np.maximum(i, 0)] >= b)


def _missing_in(wfd: int, written: _Written) -> str | None:
    """``_missing`` of the file open (perhaps write-only) as ``wfd``, read through a
    descriptor of its own."""
    try:
        fd = os.open(f"/proc/self/fd/{wfd}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise DumpError(f"cannot read back the rebuilt dump: {e.strerror}") from e
    try:
        return _missing(fd, written)
    finally:
        os.close(fd)


def _missing(fd: int, written: _Written) -> str | None:
    """What the rebuilt file lacks that its own headers say it holds, or None if whole.

    A stream that ends early but with its end marker (a writer that stopped and still
    closed the stream) rebuilds into a file of the right shape with parts never written;
    those parts are found here from the file's layout: kdump header, bitmaps, descriptors
    and the page data they point at, or an ELF's program headers and segments."""
    head = os.pread(fd, 4096, 0)
    if head[:8] in SIGNATURES and len(head) >= HEADER.size:
        return _kdump_missing(fd, head, written)
    if head[:4] == b"\x7fELF" and len(head) >= 64 and head[4] == 2:
        return _elf_missing(fd, head, written)
    return None


def _kdump_missing(fd: int, head: bytes, written: _Written) -> str | None:
    hdr = Header.unpack(head)
    status, bs, sub_blocks = hdr.status, hdr.block_size, hdr.sub_hdr_size
    bitmap_blocks, max_mapnr = hdr.bitmap_blocks, hdr.max_mapnr
    if bs <= 0 or sub_blocks <= 0 or bitmap_blocks <= 0:
        return None  # not a layout to check; reading it will say what is wrong
    bm_off, desc_off = hdr.bitmap_off, hdr.desc_off
    if not written.has([0, bs], [HEADER.size, bs + SUB_HEADER.size]).all():
        return "the kdump header"
    sub = SubHeader.unpack(os.pread(fd, SUB_HEADER.size, bs).ljust(SUB_HEADER.size, b"\0"))
    off_note, size_note = sub.offset_note, sub.size_note
    if size_note and not written.has(off_note, off_note + size_note)[0]:
        return "the notes"
    if not written.has(bm_off, desc_off)[0]:
        return "the bitmaps"
    size = os.fstat(fd).st_size
    half = hdr.bitmap_len
    nbytes = min((max_mapnr + 7) // 8, half)
    dumpable = 0
    for b0 in range(0, nbytes, _CHUNK):
        bm = np.frombuffer(os.pread(fd, min(_CHUNK, nbytes - b0), bm_off + half + b0), np.uint8)
        dumpable += int(np.unpackbits(bm).sum())
    dsz = PAGE_DESC.itemsize
    if not written.has(desc_off, desc_off + dsz * dumpable)[0]:
        return "page descriptors"
    for i in range(0, dumpable, _DESC_STEP):
        n = min(_DESC_STEP, dumpable - i)
        raw = os.pread(fd, dsz * n, desc_off + dsz * i)
        if len(raw) != dsz * n:
            return "page descriptors"
        d = np.frombuffer(raw, PAGE_DESC)
        off, end = d["offset"], d["offset"] + d["size"].astype(np.int64)
        lost = off == 0  # never written: allowed only in a dump already marked so
        if status & DUMP_DH_COMPRESSED_INCOMPLETE:
            off, end = off[~lost], end[~lost]
        if not ((off > 0) & (end <= size) & written.has(off, end)).all():
            return "page data"
    return None


def _elf_missing(fd: int, head: bytes, written: _Written) -> str | None:
    (phoff,) = struct.unpack_from("<Q", head, 32)
    (shoff,) = struct.unpack_from("<Q", head, 40)
    phentsize, phnum = struct.unpack_from("<HH", head, 54)
    if phentsize != 56:
        return None
    if not written.has(0, 64)[0]:
        return "the ELF header"
    if phnum == 0xFFFF and shoff:  # PN_XNUM: the count is in section header 0
        if not written.has(shoff, shoff + 64)[0]:
            return "the section header"
        (phnum,) = struct.unpack_from("<I", os.pread(fd, 64, shoff).ljust(64, b"\0"), 44)
    if not written.has(phoff, phoff + 56 * phnum)[0]:
        return "program headers"
    ph = np.frombuffer(
        os.pread(fd, 56 * phnum, phoff).ljust(56 * phnum, b"\0"),
        np.dtype(
            [
                ("type", "<u4"),
                ("flags", "<u4"),
                ("offset", "<u8"),
                ("x", "<u8", 4),
                ("align", "<u8"),
            ]
        ),
    )
    filesz = ph["x"][:, 2]
    used = (np.isin(ph["type"], (1, 4))) & (filesz > 0)
    off = ph["offset"][used].astype(np.int64)
    if len(off) and not written.has(off, off + filesz[used].astype(np.int64)).all():
        return "segment data"
    return None


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    """Read *n* bytes unless the stream ends first (then fewer)."""
    parts = []
    while n:
        b = stream.read(n)
        if not b:
            break
        parts.append(b)
        n -= len(b)
    return b"".join(parts)


def reassemble(stream: BinaryIO, path: str, force: bool = False) -> int:
    """Rebuild *path* from the flattened *stream*; returns the file size.

    The file appears under *path* only when the end marker was read: a cut stream (a transfer
    that died) is an error and leaves nothing behind.
    """
    head = _read_exact(stream, FLAT_HEADER_SIZE)
    if len(head) < FLAT_HEADER.size or not head.startswith(FLAT_SIGNATURE[:13]):
        raise DumpError("stdin is not a flattened dump (no makedumpfile header)")
    _sig, ftype, version = FLAT_HEADER.unpack_from(head, 0)
    if ftype != FLAT_TYPE:
        raise DumpError(f"flattened header has type {ftype}, expected {FLAT_TYPE}")
    if len(head) < FLAT_HEADER_SIZE:
        raise DumpError("flattened stream ends inside its header")
    del version  # makedumpfile writes 1 and does not check it either
    buf = bytearray(_CHUNK)
    end = 0
    ranges: list[tuple[int, int]] = []
    with SafeFile(path, force=force, inputs=(0,)) as out:  # stdin must not be the output
        while True:
            rec = _read_exact(stream, FLAT_RECORD.size)
            if len(rec) < FLAT_RECORD.size:
                raise DumpError("flattened stream ends without its end marker (incomplete dump)")
            offset, size = FLAT_RECORD.unpack(rec)
            if offset == -1 and size == -1:
                break
            if offset < 0 or size < 0:
                raise DumpError(f"flattened stream has a bad record (offset {offset}, size {size})")
            pos = offset
            while size:
                n = min(size, _CHUNK)
                view = memoryview(buf)[:n]
                got = stream.readinto(view) if hasattr(stream, "readinto") else None
                if got is None:
                    data = stream.read(n)
                    got = len(data)
                    view[:got] = data
                if not got:
                    raise DumpError("flattened stream ends inside a record (incomplete dump)")
                try:
                    _write_all(out.fd, pos, [view[:got]], path)
                except OutputFull as e:
                    raise DumpError(str(e)) from e
                pos += got
                size -= got
            ranges.append((offset, pos))
            end = max(end, pos)
        if not out.direct:  # a file ends where the stream's last record ended
            try:
                os.ftruncate(out.fd, max(end, os.fstat(out.fd).st_size))
            except OSError as e:
                raise DumpError(f"{path}: {e.strerror}") from e
        if not ranges:
            raise DumpError("flattened stream holds no data (its end marker comes first)")
        lacks = _missing_in(out.fd, _Written(ranges))
        if lacks is not None:
            _mark_incomplete(out, path, lacks)
        out.commit()
    return end


def _mark_incomplete(out: SafeFile, path: str, lacks: str) -> None:
    """Set the rebuilt dump's own "incomplete" mark and keep it under *path* (as a dump cut
    by -L is kept), then fail.  Parts of the layout that were never written read as zeros:
    descriptors that say "lost", program headers that are PT_NULL; if even so the dump does
    not open, nothing is kept."""
    early = f"flattened stream ends early (its end marker comes before the {lacks})"
    fd = os.open(f"/proc/self/fd/{out.fd}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        head = os.pread(fd, 4096, 0)
        need = _layout_end(fd, head)
    finally:
        os.close(fd)
    elf = head[:4] == b"\x7fELF"
    at = _ELF_FLAGS if elf else HEADER_OFFSET["status"]
    bit = ELF_INCOMPLETE if elf else DUMP_DH_COMPRESSED_INCOMPLETE
    (value,) = STATUS.unpack_from(head, at)  # both are little-endian u32
    try:
        if need > os.fstat(out.fd).st_size:
            os.ftruncate(out.fd, need)
        _write_all(out.fd, at, [STATUS.pack(value | bit)], path)
    except OutputFull as e:
        raise DumpError(str(e)) from e
    except (OSError, OverflowError):  # a size the layout cannot have
        raise DumpError(f"{early}; nothing usable was rebuilt") from None
    from .source import open_source

    try:
        open_source(f"/proc/self/fd/{out.fd}").close()
    except DumpError:
        raise DumpError(f"{early}; nothing usable was rebuilt") from None
    out.commit()
    raise DumpError(f"{early}; {path} is marked incomplete")


def _layout_end(fd: int, head: bytes) -> int:
    """Where the layout of a rebuilt kdump or ELF file needs it to end at least: the end of
    the descriptor table, or of the program header table (0 when that is not known)."""
    if head[:8] in SIGNATURES and len(head) >= HEADER.size:
        hdr = Header.unpack(head)
        bs, sub_blocks, max_mapnr = hdr.block_size, hdr.sub_hdr_size, hdr.max_mapnr
        if bs <= 0 or sub_blocks <= 0:
            return 0
        bm_off = hdr.bitmap_off
        half = hdr.bitmap_len
        nbytes = min((max_mapnr + 7) // 8, half)
        dumpable = 0
        for b0 in range(0, nbytes, _CHUNK):
            bm = os.pread(fd, min(_CHUNK, nbytes - b0), bm_off + half + b0)
            dumpable += int(np.unpackbits(np.frombuffer(bm, np.uint8)).sum())
        return hdr.desc_off + PAGE_DESC.itemsize * dumpable
    if head[:4] == b"\x7fELF" and len(head) >= 64:
        (phoff,) = struct.unpack_from("<Q", head, 32)
        (phnum,) = struct.unpack_from("<H", head, 56)
        return phoff + 56 * phnum if phnum != 0xFFFF else 0
    return 0
