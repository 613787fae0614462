"""Output sinks: ``-L SIZE``, ENOSPC, Ctrl-C, progress (paths and naming: outfile.py).

A dump under its final name is either whole or says in its header that it is not (kdump
``status |= 0x8``, ELF ``e_flags |= 1``, as makedumpfile's ``check_and_modify_kdump_headers``
does).  The writers see a *sink*: ``write_at(offset, buffers)`` on a regular file (pwritev) or
on a flattened stream (one record per call, kdump-compressed-format.md §10).
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from .errors import DumpError

# Linux IOV_MAX: pwritev/writev take at most this many buffers per call.
_IOV_MAX = 1024

# Errors that mean "the output cannot take more data": the dump is then incomplete.
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class OutputFull(DumpError):
    """The output stopped taking data (ENOSPC, a write error, or the ``-L`` limit).

    ``no_space``: the limit or a full filesystem (ENOSPC, EDQUOT, EFBIG), the cases where
    a ``-d 11,31`` retry with a higher dump level may fit; not an I/O error."""

    def __init__(self, message: str, *, no_space: bool = True):
        super().__init__(message)
        self.no_space = no_space


def _view(b) -> bytes | memoryview:
    """A flat byte view: bytes as they are (the common compressed page), anything else cast."""
    return b if type(b) is bytes else memoryview(b).cast("B")


def _nbytes(buffers: Sequence) -> int:
    return sum(len(b) if type(b) is bytes else b.nbytes for b in buffers)


def _skip(buffers: Sequence, n: int) -> list:
    """*buffers* without their first *n* bytes (after a short write)."""
    views = [_view(b) for b in buffers]
    i = 0
    while i < len(views) and n >= len(views[i]):
        n -= len(views[i])
        i += 1
    rest = views[i:]
    if n:
        rest[0] = memoryview(rest[0])[n:]
    return rest


def _write_all(
    fd: int, offset: int | None, buffers: Sequence, what: str, total: int | None = None
) -> None:
    """pwritev/writev every byte of *buffers* (retrying short writes); OutputFull on failure.

    *total*: their byte count when the caller has it already.
    """
    if len(buffers) <= _IOV_MAX:
        # Common case first: one call takes the buffers as they are (bytes, or C-contiguous
        # arrays through the buffer protocol), with no per-buffer view.  Short writes and
        # errors fall through to the careful loop below, which resumes after what was written.
        try:
            n = os.pwritev(fd, buffers, offset) if offset is not None else os.writev(fd, buffers)
        except OSError:
            n = 0
        if n == (_nbytes(buffers) if total is None else total):
            return
        if n:
            _write_all(fd, None if offset is None else offset + n, _skip(buffers, n), what)
            return
    views = [_view(b) for b in buffers]
    pos = offset
    i = 0
    while i < len(views):
        group = views[i : i + _IOV_MAX]
        try:
            n = os.pwritev(fd, group, pos) if pos is not None else os.writev(fd, group)
        except OSError as e:
            if e.errno == errno.EFAULT and not all(type(v) is bytes for v in group):
                # 9p (virtio zero-copy) pins the source pages; pages mmap'ed from /proc/vmcore
                # cannot be pinned: EFAULT. Copy this group and retry.
                views[i : i + len(group)] = [bytes(v) for v in group]
                continue
            if e.errno == errno.EPIPE:
                raise BrokenPipeError(e.errno, e.strerror) from e
            full = e.errno in _FULL_ERRNOS
            raise OutputFull(f"cannot write {what}: {e.strerror}", no_space=full) from e
        if n == 0 and any(len(v) for v in group):
            raise OutputFull(f"cannot write {what}: no progress", no_space=False)
        if pos is not None:
            pos += n
        # Drop fully written views; keep the unwritten tail of a partly written one.
        while i < len(views) and n >= len(views[i]):
            n -= len(views[i])
            i += 1
        if n:
            views[i] = memoryview(views[i])[n:]


class FileSink:
    """Random-access output (a regular file).  ``limit``: ``-L`` size cap in bytes."""

    seekable = True

    def __init__(self, fd: int, name: str, limit: int | None = None):
        self.fd = fd
        self.name = name
        self.limit = limit
        self.end = 0  # highest byte offset written + 1

    def write_at(self, offset: int, buffers: Sequence) -> None:
        n = _nbytes(buffers)
        if self.limit is not None and offset + n > self.limit:
            raise OutputFull(f"{self.name}: size limit (-L {self.limit}) reached")
        _write_all(self.fd, offset, buffers, self.name, n)
        self.end = max(self.end, offset + n)

    @property
    def bytes_written(self) -> int:
        return self.end


class FlatSink:
    """Flattened stream (``-F``): a 4096-byte makedumpfile header, then ``(offset, size)``
    records, big-endian, ended by ``(-1, -1)`` (MDF ``write_start_flat_header``, §10).

    Records never overlap: each writer writes every region once.  ``limit`` caps the stream.
    """

    seekable = False
    SIGNATURE = b"makedumpfile\0\0\0\0"
    TYPE = 1
    VERSION = 1
    HEADER_SIZE = 4096

    def __init__(self, fd: int, name: str = "stdout", limit: int | None = None):
        self.fd = fd
        self.name = name
        self.limit = limit
        self.emitted = 0
        self.end = 0
        head = self.SIGNATURE + self.TYPE.to_bytes(8, "big") + self.VERSION.to_bytes(8, "big")
        self._emit([head.ljust(self.HEADER_SIZE, b"\0")])

    def _emit(self, buffers: Sequence) -> None:
        n = _nbytes(buffers)
        if self.limit is not None and self.emitted + n > self.limit:
            raise OutputFull(f"{self.name}: size limit (-L {self.limit}) reached")
        _write_all(self.fd, None, buffers, self.name, n)
        self.emitted += n

    def write_at(self, offset: int, buffers: Sequence) -> None:
        n = _nbytes(buffers)
        if n == 0:
            return
        rec = offset.to_bytes(8, "big", signed=True) + n.to_bytes(8, "big", signed=True)
        self._emit([rec, *buffers])
        self.end = max(self.end, offset + n)

    def finish(self) -> None:
        """The end marker: only a stream that got it is whole."""
        self._emit([(-1).to_bytes(8, "big", signed=True) * 2])

    @property
    def bytes_written(self) -> int:
        return self.emitted


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM/SIGHUP behave like Ctrl-C while writing, so the temporary file is removed."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class Progress:
    """``--message-level`` bit 0: a percentage on stderr, only when stderr is a terminal."""

    def __init__(self, enabled: bool, label: str = "Copying data", total: int = 0):
        self.on = enabled and sys.stderr.isatty()
        self.label = label
        self.total = total
        self._last = 0.0
        self._t0 = time.monotonic()

    def update(self, done: int) -> None:
        if not self.on:
            return
        now = time.monotonic()
        if now - self._last < 0.2:
            return
        self._last = now
        pct = 100.0 * done / self.total if self.total else 100.0
        sys.stderr.write(f"\r{self.label:<28}: [{pct:5.1f} %] {now - self._t0:6.1f}s")
        sys.stderr.flush()

    def finish(self) -> None:
        if self.on:
            self._last = 0.0
            self.update(self.total)
            sys.stderr.write("\n")
            sys.stderr.flush()


def keep_table(dump_level: int):
    """Lookup table PageClass value -> kept (bool) for *dump_level* (makedumpfile's -d bits).

    Bit 2 excludes page cache without private data; bit 4 excludes all page cache (private or
    not, as makedumpfile's ``DL_EXCLUDE_CACHE_PRI`` test does); bit 8 user pages; bit 16 free
    pages.  hwpoison and offline pages are always left out; holes are not RAM.  Zero pages are
    decided by the writers from the data (bit 1), so ZERO itself never reaches this table.
    """
    import numpy as np

    from .pageclass import DL_CACHE, DL_CACHE_PRIVATE, DL_FREE, DL_USER, PageClass

    t = np.ones(256, dtype=bool)
    t[PageClass.HOLE] = False
    t[PageClass.HWPOISON] = False
    t[PageClass.OFFLINE] = False
    t[PageClass.CACHE] = not dump_level & (DL_CACHE | DL_CACHE_PRIVATE)
    t[PageClass.CACHE_PRIVATE] = not dump_level & DL_CACHE_PRIVATE
    t[PageClass.USER] = not dump_level & DL_USER
    t[PageClass.FREE] = not dump_level & DL_FREE
    return t
