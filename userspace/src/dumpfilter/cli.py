"""Command line: a drop-in for makedumpfile's common invocations.

Flow (one way): open the input -> classify every PFN (kernel or userspace scan) ->
write the dump (or only report, with --dry-run).  Every failure the user can act on is a
DumpError and becomes one line on stderr and exit status 1, like makedumpfile's FAILED.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

# No BLAS routine is ever called, but numpy's import starts OpenBLAS, whose threads (one per
# CPU) spin for a while: 0.08 s of CPU taken from the compression threads on two CPUs.  Set
# before anything imports numpy; a value the user gave is kept.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from . import __version__  # noqa: E402
from .contracts import WriteOptions  # noqa: E402
from .dumplevel import DumpLevel
from .errors import DumpError
from .messages import ML_COMMON, ML_DEBUG, ML_ERROR, ML_PROGRESS, ML_REPORT, STDOUT_NAME, Messages
from .outfile import STDOUT

if TYPE_CHECKING:
    from .report import Stats

# makedumpfile's exit codes (makedumpfile.h): COMPLETED, FAILED.
EXIT_OK = 0
EXIT_FAILED = 1


@dataclass
class Options:
    """Parsed command line, independent of argparse."""

    vmcore: str | None
    dumpfile: str | None
    dump_level: DumpLevel  # the first of dump_levels
    compression: str | None  # None, "zlib", "lzo", "snappy", "zstd"
    elf: bool
    flatten: bool
    reassemble: bool
    num_threads: int
    message_level: int
    dump_dmesg: bool
    partial_dmesg: bool
    dry_run: bool
    show_stats: bool
    force: bool
    limit: int | None  # -L SIZE in bytes
    kernel_scan: str | None  # None (off), "auto" or "require"
    stats_json: str | None
    check_params: bool = False
    split_files: tuple[str, ...] = ()  # --split VMCORE D1 .. DN
    merge_files: tuple[str, ...] = ()  # --reassemble D1 .. DN DUMPFILE
    dump_levels: tuple[DumpLevel, ...] = ()  # -d 11,31: the next one when the output is full
    mem_usage: bool = False  # --mem-usage /proc/kcore: classify live memory, print sizes

    def says(self, bit: int) -> bool:
        return bool(self.message_level & bit)

    @property
    def output(self) -> str:
        """DUMPFILE, where the command line requires one."""
        if self.dumpfile is None:
            raise DumpError("missing DUMPFILE")
        return self.dumpfile

    @property
    def inputs(self) -> tuple[str, ...]:
        """Files an output must not be: the input vmcore."""
        return tuple(p for p in (self.vmcore,) if p)

    def write_options(self) -> WriteOptions:
        """What the writers are told."""
        return WriteOptions(
            dump_level=self.dump_level,
            compression=self.compression,
            elf=self.elf,
            flatten=self.flatten,
            dumpfile=self.dumpfile,
            split_files=self.split_files,
            force=self.force,
            limit=self.limit,
            num_threads=self.num_threads,
            progress=self.says(ML_PROGRESS),
            inputs=self.inputs,
        )


def _size(text: str) -> int:
    """Parse -L SIZE: bytes, or with a K/M/G suffix (binary units)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().removesuffix("B")
    try:
        if t and t[-1] in units:
            value = int(float(t[:-1]) * units[t[-1]])
        else:
            value = int(t)
    except (ValueError, OverflowError) as e:  # OverflowError: inf, 1e400
        raise argparse.ArgumentTypeError(f"bad size {text!r}") from e
    if not 0 < value < 1 << 63:  # an off_t
        raise argparse.ArgumentTypeError(f"size {text!r} out of range")
    return value


def one_line(text: str) -> str:
    """``text`` with control characters escaped as Python would (a file name may hold a
    newline), so that an error stays one line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _dump_levels(text: str) -> tuple[DumpLevel, ...]:
    """``-d 31`` or a retry list ``-d 11,31``: makedumpfile tries the next level when the
    dump outgrows ``-L`` or the filesystem (makedumpfile(8), -d)."""
    levels = []
    for part in text.split(","):
        try:
            value = int(part, 0)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"bad dump level {part!r} (0-31)") from e
        if not 0 <= value <= 31:
            raise argparse.ArgumentTypeError(f"dump level {value} out of range (0-31)")
        levels.append(DumpLevel(value))
    return tuple(levels)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """argparse's help layout and width rule (``COLUMNS``, else the terminal on stdout, else
    80, less 2) without the ``import shutil`` its own default width does: argparse makes a
    formatter for every ``add_argument``, and shutil brings bz2 and lzma, whose shared
    libraries every run would map for nothing (a page fault each is dear in a capture kernel
    under emulation)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=_columns() - 2)


def _columns() -> int:
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, makedumpfile's status
        if sys.stderr is not None:  # fd 2 closed: nowhere to say it
            sys.stderr.write(f"dumpfilter: {one_line(message)}\n")
        raise SystemExit(EXIT_FAILED)


_USAGE = """
  dumpfilter [-d LEVEL[,LEVEL...]] [-c|-l|-p|-z|-E] [--num-threads N] [-L SIZE] [-f]
             [--message-level N] [--show-stats] [--stats-json FILE] [--dry-run]
             [--kernel-scan[=auto|require]] [-D] VMCORE DUMPFILE
  dumpfilter -F [-d LEVEL] [-c|-l|-p|-z|-E] [options] VMCORE > STREAM
  dumpfilter -R DUMPFILE < STREAM
  dumpfilter --split [options] VMCORE DUMPFILE1 DUMPFILE2 [DUMPFILE3 ..]
  dumpfilter --reassemble DUMPFILE1 DUMPFILE2 [DUMPFILE3 ..] DUMPFILE
  dumpfilter --dump-dmesg [--partial-dmesg] VMCORE [LOGFILE]
  dumpfilter --dry-run --show-stats [-d LEVEL] VMCORE
  dumpfilter --mem-usage /proc/kcore
  dumpfilter --check-params [options] VMCORE [DUMPFILE] | -h | -v"""

_EPILOG = """\
messages (--message-level, as makedumpfile's):
  1   progress on stderr: rewritten in place on a terminal, a line every 5 s in a log
  2   common messages on stdout: "The dumpfile is saved to X.", "makedumpfile Completed."
  4   errors: one line on stderr
  8   debug messages on stderr (-D)
  16  the STEP times and the page report on stdout (--show-stats)
  With -F, stdout carries the dump and messages for stdout go to stderr.

exit status: 0 on success, 1 on any failure."""


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="dumpfilter",
        usage=_USAGE,
        description="Filter a Linux kernel crash dump (makedumpfile-compatible command line).",
        epilog=_EPILOG,
        formatter_class=_Formatter,
    )
    p.add_argument(
        "-d",
        "--dump-level",
        type=_dump_levels,
        default=(DumpLevel(0),),
        metavar="LEVEL[,LEVEL...]",
        help="pages to exclude, a bit mask: 1 zero pages, 2 page cache without private data, "
        "4 all page cache, 8 user process data, 16 free pages (31: all; default 0). "
        "Hardware-poisoned and offline pages are always excluded. A list such as 11,31 "
        "retries with the next level when the dump outgrows -L or the filesystem",
    )
    comp = p.add_mutually_exclusive_group()
    comp.add_argument(
        "-c", dest="compression", action="store_const", const="zlib", help="compress with zlib"
    )
    comp.add_argument(
        "-l", dest="compression", action="store_const", const="lzo", help="compress with lzo"
    )
    comp.add_argument(
        "-p", dest="compression", action="store_const", const="snappy", help="compress with snappy"
    )
    comp.add_argument(
        "-z", dest="compression", action="store_const", const="zstd", help="compress with zstd"
    )
    p.add_argument(
        "-E", dest="elf", action="store_true", help="write an ELF core, not kdump-compressed"
    )
    p.add_argument(
        "-F",
        dest="flatten",
        action="store_true",
        help="write a flattened stream to stdout (rebuild it with -R); messages go to stderr",
    )
    p.add_argument(
        "-R",
        dest="reassemble",
        action="store_true",
        help="rebuild DUMPFILE from a flattened stream on stdin",
    )
    p.add_argument(
        "--split",
        action="store_true",
        help="VMCORE D1 D2 [D3 ..]: one kdump file per PFN range, equal dumpable pages",
    )
    p.add_argument(
        "--reassemble",
        dest="merge",
        action="store_true",
        help="D1 D2 [D3 ..] DUMPFILE: merge --split files into one",
    )
    p.add_argument(
        "--num-threads",
        type=int,
        default=0,
        metavar="N",
        help="classify in N forked processes over PFN ranges and compress in N threads "
        "(0, the default, where two CPUs are free: two scan processes, a thread per CPU "
        "that compresses or zero-tests pages, one that reads uncompressed pages; on one "
        "CPU everything in one thread); the output is the same",
    )
    p.add_argument(
        "--message-level",
        type=int,
        default=7,
        metavar="N",
        help="which messages to print, makedumpfile's bit mask: 1 progress, 2 common "
        "messages, 4 errors, 8 debug, 16 report (default 7; 0: none)",
    )
    p.add_argument("--dump-dmesg", action="store_true", help="write the kernel log as text")
    p.add_argument(
        "--partial-dmesg",
        action="store_true",
        help="with --dump-dmesg: only what was logged since the log was last cleared",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="do everything but write: check and report"
    )
    p.add_argument(
        "--show-stats", action="store_true", help="print the page report (message level 16)"
    )
    p.add_argument("-f", dest="force", action="store_true", help="overwrite DUMPFILE")
    p.add_argument(
        "-L",
        dest="limit",
        type=_size,
        default=None,
        metavar="SIZE",
        help="write at most SIZE bytes (suffix K, M or G); a dump cut short is kept marked "
        "incomplete and the run fails, unless a -d list has a level left",
    )
    p.add_argument(
        "--kernel-scan",
        nargs="?",
        const="auto",
        default=None,
        choices=["auto", "require"],
        help="classify in the capture kernel via /proc/vmcore_pfn_lists "
        "(auto: else our own scan; require: else fail)",
    )
    p.add_argument("--stats-json", metavar="FILE", help="write a JSON report to FILE")
    p.add_argument(
        "--mem-usage",
        action="store_true",
        help="VMCORE is /proc/kcore: print the running system's pages per class and the "
        "estimated dump size per dump level",
    )
    p.add_argument(
        "--check-params",
        action="store_true",
        help="only check that the command line is valid (exit 0) or not (exit 1)",
    )
    p.add_argument(
        "-D", dest="debug", action="store_true", help="debug messages too (message level 8)"
    )
    p.add_argument(
        "-v", action="version", version=f"dumpfilter {__version__}", help="show the version"
    )
    p.add_argument(
        "files",
        nargs="*",
        metavar="VMCORE [DUMPFILE]",
        help="the crash dump (/proc/vmcore, a saved ELF vmcore or a kdump-compressed dump) "
        "and the file to write",
    )
    return p


def parse_args(argv: Sequence[str] | None) -> Options:
    p = build_parser()
    a = p.parse_args(argv)
    files = list(a.files)
    if "" in files or a.stats_json == "":
        p.error("an empty file name was given")
    split_files: tuple[str, ...] = ()
    merge_files: tuple[str, ...] = ()
    if a.merge:
        if len(files) < 3:
            p.error("--reassemble takes two or more split files, then DUMPFILE")
        vmcore, dumpfile, merge_files = None, files[-1], tuple(files[:-1])
    elif a.reassemble:
        if len(files) != 1:
            p.error("-R takes exactly one DUMPFILE (the stream comes on stdin)")
        vmcore, dumpfile = None, files[0]
    else:
        if not files:
            p.error("missing VMCORE")
        if a.split:
            if len(files) < 3:
                p.error("--split takes VMCORE and two or more DUMPFILEs")
            if a.elf or a.flatten or a.dump_dmesg:
                p.error("--split writes kdump-compressed files (not with -E, -F, --dump-dmesg)")
            split_files = tuple(files[1:])
            files = files[:1]
        if len(files) > 2:
            p.error("too many arguments")
        vmcore = files[0]
        dumpfile = files[1] if len(files) == 2 else None
        if a.mem_usage and len(files) != 1:
            p.error("--mem-usage takes one file, /proc/kcore")
        if dumpfile is None and not (
            a.flatten or a.dry_run or a.dump_dmesg or split_files or a.mem_usage
        ):
            p.error("missing DUMPFILE")
        if a.flatten and dumpfile is not None:
            p.error("-F writes to stdout; give no DUMPFILE")
    if a.partial_dmesg and not a.dump_dmesg:
        p.error("--partial-dmesg needs --dump-dmesg")
    if a.num_threads < 0:
        p.error("--num-threads must be >= 0")
    if a.elf and a.compression:
        p.error("ELF output (-E) cannot be compressed")
    msg = a.message_level | (ML_REPORT if a.show_stats else 0) | (ML_DEBUG if a.debug else 0)
    return Options(
        vmcore=vmcore,
        dumpfile=dumpfile,
        dump_level=a.dump_level[0],
        dump_levels=a.dump_level,
        compression=a.compression,
        elf=a.elf,
        flatten=a.flatten,
        reassemble=a.reassemble,
        num_threads=a.num_threads,
        message_level=msg,
        dump_dmesg=a.dump_dmesg,
        partial_dmesg=a.partial_dmesg,
        dry_run=a.dry_run,
        show_stats=a.show_stats,
        force=a.force,
        limit=a.limit,
        kernel_scan=a.kernel_scan,
        stats_json=a.stats_json,
        check_params=a.check_params,
        split_files=split_files,
        merge_files=merge_files,
        mem_usage=a.mem_usage,
    )


def _keep_freed_memory() -> None:
    """Let glibc reuse freed memory instead of returning it to the kernel.

    The scan makes many short-lived arrays of 0.1-1 MiB per window.  By default glibc
    serves those from fresh mmap()s and unmaps them on free, so every window pays the
    first-touch page faults again (bench/NOTES.md, "Measurements behind the source").
    Raising the mmap and trim thresholds keeps them in the heap; peak RSS is unchanged,
    since the arrays never coexist.  The compression threads allocate from the same arena:
    an arena of their own each would keep its own freed batches resident.  Not glibc (or no
    mallopt): nothing to do.
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8  # glibc malloc.h
    mallopt(m_mmap_threshold, 256 << 20)
    mallopt(m_trim_threshold, 512 << 20)
    mallopt(m_arena_max, 1)


def run(opts: Options) -> int:
    # Imports are local so that `dumpfilter --help` and argument errors stay fast.
    from . import report, source, write

    _keep_freed_memory()

    msgs = _messages(opts)
    if opts.reassemble:
        from . import flat

        flat.reassemble(sys.stdin.buffer, opts.output, force=opts.force)
        return _completed(msgs, [opts.output])

    if opts.merge_files:
        from . import split

        split.reassemble(opts.merge_files, opts.output, force=opts.force)
        return _completed(msgs, [opts.output])

    if opts.mem_usage:
        from . import memusage

        assert opts.vmcore is not None  # --mem-usage takes the file to read
        msgs.write(ML_COMMON, memusage.mem_usage(opts.vmcore))
        return _completed(msgs, [])

    t0 = time.monotonic()
    with source.open_source(opts.vmcore) as src:
        if opts.dump_dmesg:
            from . import dmesg

            dmesg.dump_dmesg(
                src,
                opts.dumpfile,
                force=opts.force,
                partial=opts.partial_dmesg,
                inputs=opts.inputs,
            )
            return _completed(msgs, [opts.dumpfile or STDOUT_NAME], "dmesg log")

        levels = opts.dump_levels or (opts.dump_level,)
        if opts.dry_run or opts.flatten or opts.split_files:
            levels = levels[:1]  # nothing to outgrow / a stream or a set is not retried
        for i, level in enumerate(levels):
            attempt = dataclasses.replace(opts, dump_level=level)
            try:
                stats = _filter(src, attempt, retry=i + 1 < len(levels))
            except write.Retry as e:
                msgs.common(f"{e}; retrying with dump level {levels[i + 1]}")
                continue
            break
        stats.seconds["total"] = time.monotonic() - t0

    if msgs.says(ML_REPORT):
        msgs.write(ML_REPORT, "\n".join(report.report_lines(stats)))
    if opts.stats_json:
        report.write_json(stats, opts.stats_json, inputs=opts.inputs)
    if opts.dry_run:
        return _completed(msgs, [])
    if opts.flatten:
        return _completed(msgs, [STDOUT_NAME])
    return _completed(msgs, list(opts.split_files) or [opts.output])


def _messages(opts: Options) -> Messages:
    """makedumpfile's message levels; stdout is taken by the dump with -F, by an output
    named ``-`` (a --dump-dmesg log also without a name) and by ``--stats-json -``."""
    busy = (
        opts.flatten
        or opts.dumpfile == "-"
        or opts.stats_json == "-"
        or (opts.dump_dmesg and not opts.dumpfile)
    )
    return Messages(opts.message_level, stdout_busy=busy)


def _completed(msgs: Messages, saved: list[str], what: str = "dumpfile") -> int:
    """makedumpfile's closing lines (common messages): where the output went, "Completed"."""
    if saved:
        msgs.saved([STDOUT_NAME if p == STDOUT else p for p in saved], what)
    msgs.completed()
    return EXIT_OK


def _filter(src, opts: Options, *, retry: bool) -> Stats:
    """Classify at ``opts.dump_level`` and write (or only count, with --dry-run)."""
    from . import report, scan
    from .output import Progress

    msgs = _messages(opts)
    if opts.kernel_scan:
        # Imported before the step is timed, as the userspace scan's modules are: without
        # bytecode (a capture environment run with -B) compiling it was a large part of the
        # step on small dumps, and it is no part of classifying.
        from . import kernelscan
    t_scan = time.monotonic()
    classification = None
    if opts.kernel_scan:
        classification = kernelscan.try_kernel_scan(
            src, opts.dump_level, opts.kernel_scan, say=msgs.common
        )
    if classification is None:
        workers = scan.workers_for(opts.num_threads)
        classification = scan.userspace_scan(src, opts.dump_level, workers)
    progress = Progress(
        opts.says(ML_PROGRESS), "Excluding unnecessary pages", classification.max_pfn
    )
    stats = report.Stats.from_classification(
        classification, opts.dump_level, src=src, progress=progress
    )
    stats.split = bool(opts.split_files)
    prepare = classification.prepare_seconds
    stats.seconds["prepare"] = prepare
    stats.seconds["scan"] = time.monotonic() - t_scan - prepare
    for key, step in report.STEPS[:2]:
        msgs.step(step, stats.seconds[key])
    if opts.says(ML_DEBUG):
        _debug_layout(src, classification, stats)

    t_write = time.monotonic()
    # from here pages are read in PFN order: one input window and the next are enough
    src.limit_windows()
    if not opts.dry_run:
        from . import write

        write.write_dump(src, classification, opts.write_options(), stats, retry=retry)
    else:
        # as makedumpfile's dry run: all but the writing, so zero pages and sizes are known
        report.dry_run(src, classification, opts.write_options(), stats)
    stats.seconds["write"] = time.monotonic() - t_write
    msgs.step(report.STEPS[2][1], stats.seconds["write"])
    return stats


def _debug_layout(src, classification, stats: Stats) -> None:
    """``-D`` / message level 8: what the scan found out about the dump, on stderr."""
    lines = [
        f"input: {src.kind}, page size {src.page_size}, "
        f"max_pfn {src.max_pfn:#x}, {len(src.ram_ranges)} RAM range(s)",
    ]
    lines += [f"  RAM pfn {a:#x}-{b - 1:#x}" for a, b in src.ram_ranges]
    lines += classification.describe()
    lines.append(
        f"scan: {classification.scan}, prepare {stats.seconds['prepare'] * 1e3:.1f} ms, "
        f"classify {stats.seconds['scan'] * 1e3:.1f} ms"
    )
    for line in lines:
        print(f"dumpfilter: debug: {line}", file=sys.stderr)


def _closed_std_fds() -> set[int]:
    """Which of fds 0, 1, 2 the caller left closed (``>&-``, ``<&-``).

    Each is reopened on /dev/null, so that no file this run opens takes its number (a dump
    written through "stdout" into the input vmcore's fd, say)."""
    closed = set()
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            closed.add(fd)
    for fd in sorted(closed):
        new = os.open(os.devnull, os.O_RDWR)
        if new != fd:
            os.dup2(new, fd)
            os.close(new)
    # Python made the streams of closed fds None; print(file=None) would then write to
    # sys.stdout, which may be a -F stream
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w")  # for the whole run
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")
    return closed


def _check_std_streams(opts: Options, closed: set[int]) -> None:
    """The standard streams this run reads or writes must be open (and stdin not a
    directory): one error line now rather than a traceback later."""
    if opts.reassemble:
        if 0 in closed:
            raise DumpError("-R reads the flattened stream from stdin, which is closed")
        if _is_dir(0):
            raise DumpError("-R reads the flattened stream from stdin, which is a directory")
    to_stdout = opts.flatten or (opts.dump_dmesg and opts.dumpfile is None)
    to_stdout = to_stdout or STDOUT in (opts.dumpfile, opts.stats_json)
    to_stdout = to_stdout or (opts.says(ML_REPORT) and not opts.flatten and not opts.dump_dmesg)
    if to_stdout and 1 in closed:
        raise DumpError("standard output is closed")


def _is_dir(fd: int) -> bool:
    import stat

    try:
        return stat.S_ISDIR(os.fstat(fd).st_mode)
    except OSError:
        return False


def _say_error(opts: Options, text: str) -> None:
    if opts.says(ML_ERROR):
        print(f"dumpfilter: {one_line(text)}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    closed = _closed_std_fds()
    opts = parse_args(argv)  # a bad command line exits 1 here, with one line
    if opts.check_params:  # makedumpfile --check-params: nothing is opened
        return EXIT_OK
    try:
        _check_std_streams(opts, closed)
        return run(opts)
    except DumpError as e:
        _say_error(opts, str(e))
        return e.exit_code
    except KeyboardInterrupt:
        _say_error(opts, "interrupted")
        return EXIT_FAILED
    except BrokenPipeError:
        # stdout went away under -F: nothing useful left to say on it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        _say_error(opts, "output pipe closed")
        return EXIT_FAILED
    except OSError as e:
        name = getattr(e, "filename", None)
        _say_error(opts, f"{e.strerror or e}" + (f": {name}" if name else ""))
        return EXIT_FAILED
    except MemoryError:
        _say_error(opts, "out of memory")
        return EXIT_FAILED
    except Exception as e:
        # Last resort: a value no check caught.  One line; the traceback with -D.
        if opts.says(ML_DEBUG):
            import traceback

            traceback.print_exc()
        _say_error(opts, f"internal error: {type(e).__name__}: {e}")
        return EXIT_FAILED


def console() -> NoReturn:
    """The ``dumpfilter`` command: ``main()``, then an exit that skips the interpreter's
    teardown.

    When ``main`` returns, the dump is written and closed, the encoder threads and the scan
    workers are joined and every message is printed; the teardown would only free each
    object and module one by one, numpy's too, which is a few per cent of a short run
    (bench/NOTES.md, "The kernel scan's memory").  What Python would still do is flush the
    two streams, done here; a stream that went away loses its messages, not the dump, as
    everywhere else (``Messages.write``).  A command line error or ``--help`` leaves
    through ``SystemExit`` as usual.
    """
    rc = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(rc)


if __name__ == "__main__":
    console()
