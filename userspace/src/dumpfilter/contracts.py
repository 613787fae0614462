"""The contracts between the stages of the pipeline, in code: input -> classification -> output.

``Source`` is what every input reader offers (``elfcore.ElfVmcore``, ``diskdump_in.KdumpInput``),
``Classification`` what both scans produce (``scan.UserspaceClassification``,
``kernelscan.KernelClassification``), ``WriteStats`` what the writers report into
(``report.Stats``) and ``WriteOptions`` what the writers are told, built by the command line.
Every member is present on every implementation: nothing is probed for.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .dumplevel import DumpLevel
from .vmcoreinfo import VmcoreInfo


class Segment(Protocol):
    """One ELF PT_LOAD of an input: physical range at file offset ``offset``."""

    @property
    def paddr(self) -> int: ...
    @property
    def vaddr(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def filesz(self) -> int: ...
    @property
    def memsz(self) -> int: ...
    @property
    def flags(self) -> int: ...


class Source(Protocol):
    """A crash dump opened for reading; pages by PFN, bytes by physical address."""

    kind: str  # "elf" or "kdump"
    path: str
    vmcoreinfo: VmcoreInfo
    notes: bytes  # the whole PT_NOTE segment, verbatim
    nr_cpus: int  # number of NT_PRSTATUS notes
    page_size: int
    max_pfn: int  # end PFN of the highest RAM range
    ram_ranges: list[tuple[int, int]]  # [start_pfn, end_pfn) of RAM, sorted, merged
    incomplete: bool  # the input itself was cut short (some of its pages are lost)
    loads: Sequence[Segment]  # ELF input: its PT_LOADs; a kdump input has none
    ehdr: bytes | None  # ELF input: its ELF header (the -E writer's template); else None

    def read_phys(self, paddr: int, size: int) -> bytes:
        """DumpError if any byte is outside RAM (a hole)."""
        ...

    def phys_array(self, paddr: int, size: int) -> np.ndarray:
        """As ``read_phys``, a uint8 array (a view when possible)."""
        ...

    def span_array(self, paddr: int, size: int) -> np.ndarray:
        """The longest prefix of ``[paddr, paddr + size)`` readable without a copy (the scan's
        struct pages); may be shorter than asked, even empty."""
        ...

    def read_pages(self, pfn: int, count: int) -> np.ndarray:
        """(count, page_size) uint8, a view when possible; pages a kdump input left out
        read as zeros."""
        ...

    def is_dumpable(self, start_pfn: int, end_pfn: int) -> np.ndarray | None:
        """A kdump input's 2nd bitmap over the range (bool); None: every RAM page is."""
        ...

    def release_windows(self) -> None:
        """The layout has been read: mappings made for it may go."""
        ...

    def limit_windows(self) -> None:
        """From here pages are read in PFN order: keep few mappings."""
        ...

    def close(self) -> None: ...


class Classification(Protocol):
    """A PageClass per PFN, window by window."""

    scan: str  # "userspace" or "kernel"
    max_pfn: int
    prepare_seconds: float  # reading the layout, before any window is classified
    # RAM PFNs without full data in the input: HOLE in the windows, RAM in the 1st bitmap
    nodata: np.ndarray

    def windows(self, size: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """(start_pfn, classes) covering [0, max_pfn) in PFN order; classes are read-only
        uint8 PageClass values (HOLE outside RAM), windows bounded; iterating again gives
        the same answer."""
        ...

    def describe(self) -> list[str]:
        """What the scan found out about the dump, for ``-D``."""
        ...


class WriteStats(Protocol):
    """What a writer reports (``report.Stats``)."""

    written_bytes: int
    uncounted_bytes: int  # output bytes makedumpfile's "Write bytes" does not count
    elf_pages: int | None  # -E: pages the ELF file holds data for

    def add_zero(self, n: int) -> None:
        """``n`` kept pages were all zero and are excluded as such."""
        ...


class Sink(Protocol):
    """Where a writer puts its bytes: a file (``output.FileSink``), a flattened stream
    (``output.FlatSink``) or, for ``--dry-run``, a counter."""

    seekable: bool  # a file: regions may be written again (the header at the end)
    # False for --dry-run's counters: page data need not be stored, only its size known
    keeps_data: bool
    limit: int | None  # -L
    name: str

    def write_at(self, offset: int, buffers: Sequence, nbytes: int | None = None) -> None:
        """*buffers* at *offset*; *nbytes*: their byte count, when the caller has it."""
        ...

    @property
    def bytes_written(self) -> int: ...


@dataclass(frozen=True)
class WriteOptions:
    """What the writers are told (built by the command line)."""

    dump_level: DumpLevel = DumpLevel(0)
    compression: str | None = None  # None, "zlib", "lzo", "snappy", "zstd"
    elf: bool = False  # -E
    flatten: bool = False  # -F: a flattened stream on stdout
    dumpfile: str | None = None
    split_files: tuple[str, ...] = ()  # --split D1 .. DN
    force: bool = False  # -f
    limit: int | None = None  # -L, bytes
    num_threads: int = 0  # compression threads (0: the main thread)
    progress: bool = False  # message level bit 1: progress lines on stderr
    inputs: tuple[str, ...] = ()  # files the output must not be (the input vmcore)
