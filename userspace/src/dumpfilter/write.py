"""``write_dump``: pick the writer and the sink, and make failure visible.

Success: the finished file takes the name DUMPFILE (outfile.py says how, by what the path
names), or the flattened stream gets its end marker.
``-L`` / ENOSPC / a write error: the dump keeps the "incomplete" mark it was written with
(kdump ``status |= 0x8``, ELF ``e_flags |= 1``), is moved under DUMPFILE as makedumpfile leaves
it, and the command fails (exit 1).  Anything else, Ctrl-C included, removes the temporary file.
With ``retry`` (a ``-d 11,31`` list has levels left) the limit or a full filesystem raises
``Retry`` instead and the partial file is removed, so the next level has the space back.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import partial

from .contracts import Classification, Sink, Source, WriteOptions, WriteStats
from .errors import DumpError
from .outfile import SafeFile
from .output import FileSink, FlatSink, OutputFull, sigterm_as_interrupt

Writer = Callable[[Source, Classification, WriteOptions, WriteStats, Sink], None]


def _writer(opts: WriteOptions) -> Writer:
    if opts.elf:
        from .elfdump import write_elf

        return write_elf
    from .diskdump import write_kdump

    return write_kdump


class Retry(DumpError):
    """No room for the dump at this level; nothing was left under DUMPFILE."""


def _write_split(
    src: Source, classification: Classification, opts: WriteOptions, stats: WriteStats
) -> None:
    """``--split D1 .. DN``: N kdump files, each dumpable for one PFN range (split.py)."""
    from .diskdump import dumpable_windows, write_kdump
    from .split import split_ranges

    def windows():
        for start, _ram, dumpable in dumpable_windows(src, classification, opts.dump_level):
            yield start, dumpable

    ranges = split_ranges(windows, classification.max_pfn, len(opts.split_files))
    written = 0
    for path, part in zip(opts.split_files, ranges, strict=True):
        write = partial(write_kdump, src, classification, opts, stats, part=part)
        written += _to_file(path, write, src, opts, stats, written)


def _to_file(
    path: str,
    write: Callable[[Sink], None],
    src: Source,
    opts: WriteOptions,
    stats: WriteStats,
    before: int = 0,
    retry: bool = False,
) -> int:
    """Run ``write(sink)`` into ``path`` through a SafeFile; the bytes written.

    A full output: ``Retry`` (file removed) when ``retry`` and it is the limit or a full
    filesystem; otherwise the file keeps its "incomplete" mark under ``path`` if anything
    usable made it, and the command fails.  ``before``: bytes of earlier files (the report)."""
    with SafeFile(path, force=opts.force, inputs=opts.inputs) as out:
        sink = FileSink(out.fd, path, opts.limit)
        try:
            write(sink)
        except OutputFull as e:
            _written(stats, before + sink.bytes_written)
            if retry and e.no_space:
                raise Retry(str(e)) from e  # leaving the with-block removes the file
            if sink.bytes_written < src.page_size:
                raise DumpError(f"{e}; nothing usable was written") from e
            out.commit()
            raise DumpError(f"{e}; {path} is marked incomplete") from e
        out.commit()
    _written(stats, before + sink.bytes_written)
    return sink.bytes_written


def write_dump(
    src: Source,
    classification: Classification,
    opts: WriteOptions,
    stats: WriteStats,
    *,
    retry: bool = False,
) -> None:
    """Write the dump that *opts* asks for; DumpError (exit 1) if it is not whole.

    ``retry``: a full output raises ``Retry`` (the caller tries the next dump level).  A
    flattened stream is never retried: what went to stdout cannot be taken back."""
    if opts.split_files:
        with sigterm_as_interrupt():
            _write_split(src, classification, opts, stats)
        return
    writer = _writer(opts)
    with sigterm_as_interrupt():
        if opts.flatten:
            sys.stdout.flush()
            sink = FlatSink(1, "stdout", opts.limit)  # fd 1 itself: -F means the process stdout
            try:
                writer(src, classification, opts, stats, sink)
            except OutputFull as e:
                # A stream cannot be patched: without its end marker it is not a whole dump.
                _written(stats, sink.bytes_written)
                raise DumpError(f"{e}; the flattened stream is incomplete") from e
            sink.finish()
            _written(stats, sink.bytes_written)
            return
        if opts.dumpfile is None:
            raise DumpError("missing DUMPFILE")
        write = partial(writer, src, classification, opts, stats)
        _to_file(opts.dumpfile, write, src, opts, stats, retry=retry)


def _written(stats: WriteStats, n: int) -> None:
    """``report.Stats.written_bytes``: what the report prints as "Write bytes"."""
    stats.written_bytes = n
