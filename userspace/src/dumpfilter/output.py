"""Output sinks: ``-L SIZE``, ENOSPC, Ctrl-C, progress (paths and naming: outfile.py).

A dump under its final name is either whole or says in its header that it is not (kdump
``status |= 0x8``, ELF ``e_flags |= 1``, as makedumpfile's ``check_and_modify_kdump_headers``
does).  The writers see a *sink*: ``write_at(offset, buffers)`` on a regular file (pwritev) or
on a flattened stream (one record per call, docs/kdump-compressed.md §9).
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
from .kdumpformat import (
    FLAT_END,
    FLAT_HEADER,
    FLAT_HEADER_SIZE,
    FLAT_RECORD,
    FLAT_SIGNATURE,
    FLAT_TYPE,
    FLAT_VERSION,
)

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


def byte_count(buffers: Sequence) -> int:
    """Bytes in *buffers*: bytes objects, or anything with the buffer protocol."""
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
        if n == (byte_count(buffers) if total is None else total):
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
    keeps_data = True

    def __init__(self, fd: int, name: str, limit: int | None = None):
        self.fd = fd
        self.name = name
        self.limit = limit
        self.end = 0  # highest byte offset written + 1

    def write_at(self, offset: int, buffers: Sequence, nbytes: int | None = None) -> None:
        n = byte_count(buffers) if nbytes is None else nbytes
        if self.limit is not None and offset + n > self.limit:
            raise OutputFull(f"{self.name}: size limit (-L {self.limit}) reached")
        _write_all(self.fd, offset, buffers, self.name, n)
        self.end = max(self.end, offset + n)

    @property
    def bytes_written(self) -> int:
        return self.end


class FlatSink:
    """Flattened stream (``-F``): a 4096-byte makedumpfile header, then ``(offset, size)``
    records, big-endian, ended by ``(-1, -1)`` (makedumpfile's ``write_start_flat_header``).

    Records never overlap: each writer writes every region once.  ``limit`` caps the stream.
    """

    seekable = False
    keeps_data = True

    def __init__(self, fd: int, name: str = "stdout", limit: int | None = None):
        self.fd = fd
        self.name = name
        self.limit = limit
        self.emitted = 0
        self.end = 0
        head = FLAT_HEADER.pack(FLAT_SIGNATURE, FLAT_TYPE, FLAT_VERSION)
        self._emit([head.ljust(FLAT_HEADER_SIZE, b"\0")])

    def _emit(self, buffers: Sequence, nbytes: int | None = None) -> None:
        n = byte_count(buffers) if nbytes is None else nbytes
        if self.limit is not None and self.emitted + n > self.limit:
            raise OutputFull(f"{self.name}: size limit (-L {self.limit}) reached")
        _write_all(self.fd, None, buffers, self.name, n)
        self.emitted += n

    def write_at(self, offset: int, buffers: Sequence, nbytes: int | None = None) -> None:
        n = byte_count(buffers) if nbytes is None else nbytes
        if n == 0:
            return
        self._emit([FLAT_RECORD.pack(offset, n), *buffers], FLAT_RECORD.size + n)
        self.end = max(self.end, offset + n)

    def finish(self) -> None:
        """The end marker: only a stream that got it is whole."""
        self._emit([FLAT_END])

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


# makedumpfile's progress line: the step name in 50 columns, the share done in tenths of a
# percent, a spinner and the estimated time left.
PROGRESS_WIDTH = 50
_SPINNER = "/|\\-"
TTY_INTERVAL = 1.0  # a terminal line is rewritten at most this often, as makedumpfile's
LOG_INTERVAL = 5.0  # a log (stderr not a terminal) gets a full line at most this often


def eta_text(seconds: int) -> str:
    """The time left as makedumpfile shows it: seconds below 100 s, then minutes and seconds,
    hours and minutes, days and hours."""
    minutes, hours = seconds // 60, seconds // 3600
    days = hours // 24
    if seconds < 100:
        return f"eta: {seconds}s"
    if minutes < 100:
        return f"eta: {minutes}m{seconds % 60}s"
    if hours < 48:
        return f"eta: {hours}h{minutes % 60}m"
    if days < 100:
        return f"eta: {days}d{hours % 24}h"
    return "eta: >100day"


class Progress:
    """``--message-level`` bit 1: how far a long step is, on stderr.

    On a terminal one line is rewritten in place (``\\r``) at most once a second, as
    makedumpfile's.  When stderr is a file or a pipe (a kdump service's log) carriage returns
    would pile up into one endless line, so whole lines are written instead: one every
    ``LOG_INTERVAL`` seconds, and the 100 % line after them.  A step shorter than that logs
    nothing, so that a log is not filled with steps of a second and a failure right after a
    short step is still the one line on stderr.  A stderr that cannot be written to (closed)
    silences it: progress is never a reason to fail.
    """

    def __init__(
        self,
        enabled: bool,
        label: str = "Copying data",
        total: int = 0,
        *,
        stream=None,
        clock=time.monotonic,
    ):
        self.stream = sys.stderr if stream is None else stream
        self.on = bool(enabled) and self.stream is not None
        try:
            self.tty = self.on and self.stream.isatty()
        except (OSError, ValueError):
            self.on = self.tty = False
        self.label = label
        self.total = total
        self.clock = clock
        self.interval = TTY_INTERVAL if self.tty else LOG_INTERVAL
        self._t0 = clock()
        self._last: float | None = None
        self._lapse = 0

    def line(self, done: int, now: float) -> str:
        """The progress text for *done* of *total* at time *now* (no line end)."""
        promille = min(done * 1000 // self.total, 1000) if self.total > 0 else 1000
        eta = ""
        if promille:
            elapsed = now - self._t0
            eta = eta_text(max(int(elapsed * 1000 / promille - elapsed), 0))
        spin = _SPINNER[self._lapse % 4]
        return (
            f"{self.label:<{PROGRESS_WIDTH}}: [{promille // 10:3d}.{promille % 10} %] "
            f"{spin}  {eta:>16}"
        )

    def _emit(self, done: int, now: float) -> None:
        text = self.line(done, now)
        self._lapse += 1
        try:
            self.stream.write(f"\r{text}" if self.tty else f"{text}\n")
            self.stream.flush()
        except (OSError, ValueError):
            self.on = False

    def update(self, done: int) -> None:
        if not self.on:
            return
        now = self.clock()
        if self._last is not None and now - self._last < self.interval:
            return
        if self._last is None and not self.tty:
            # a log's first line comes after one interval: short steps log only their 100 %
            self._last = now
            return
        self._last = now
        self._emit(done, now)

    def finish(self) -> None:
        """The 100 % line; on a terminal it ends the rewritten line."""
        if not self.on:
            return
        if not self.tty and not self._lapse:
            return
        self._emit(self.total, self.clock())
        if self.tty:
            try:
                self.stream.write("\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass
        self.on = False
