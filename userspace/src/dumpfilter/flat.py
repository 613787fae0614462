"""Flattened stream (``-F``) and its reassembly (``-R``).

The stream (makedumpfile.h ``makedumpfile_header`` / ``makedumpfile_data_header``,
kdump-compressed-format.md §10): a 4096-byte header ``"makedumpfile"``, type 1, version 1
(big-endian int64s), then records ``(offset, size)`` + ``size`` bytes meant for ``offset`` of the
random-access file, in any order, ended by ``(-1, -1)``.  Writing is ``output.FlatSink``; this
module rebuilds the file from a stream, ours or makedumpfile's.
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO

from .errors import DumpError
from .outfile import SafeFile
from .output import FlatSink, OutputFull, _write_all

_RECORD = struct.Struct(">qq")
_CHUNK = 1 << 20


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
    head = _read_exact(stream, FlatSink.HEADER_SIZE)
    if len(head) < 32 or not head.startswith(b"makedumpfile\0"):
        raise DumpError("stdin is not a flattened dump (no makedumpfile header)")
    ftype, version = struct.unpack_from(">qq", head, 16)
    if ftype != FlatSink.TYPE:
        raise DumpError(f"flattened header has type {ftype}, expected {FlatSink.TYPE}")
    if len(head) < FlatSink.HEADER_SIZE:
        raise DumpError("flattened stream ends inside its header")
    del version  # makedumpfile writes 1 and does not check it either
    buf = bytearray(_CHUNK)
    end = 0
    with SafeFile(path, force=force, inputs=(0,)) as out:  # stdin must not be the output
        while True:
            rec = _read_exact(stream, _RECORD.size)
            if len(rec) < _RECORD.size:
                raise DumpError("flattened stream ends without its end marker (incomplete dump)")
            offset, size = _RECORD.unpack(rec)
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
            end = max(end, pos)
        if not out.direct:  # a file ends where the stream's last record ended
            try:
                os.ftruncate(out.fd, max(end, os.fstat(out.fd).st_size))
            except OSError as e:
                raise DumpError(f"{path}: {e.strerror}") from e
        out.commit()
    return end
