"""ELF64 vmcore input: PT_LOADs, the PT_NOTE segment, mmap'ed bounded windows.

/proc/vmcore can never be read whole (it is as large as the crashed machine's RAM) and saved
vmcores may be larger than the capture machine's memory, so data is reached through
``mmap(PROT_READ)`` windows of at most ``WINDOW`` bytes (makedumpfile maps 4 MiB at a time
unless told ``--non-mmap``), a few of them cached.  Page reads that fall inside
one window are returned as numpy views of the mapping (no copy).

The ELF structure is parsed with ``struct`` (ARCHITECTURE.md says why not pyelftools): only
the Ehdr and the Phdrs are needed here (the notes: ``elfnotes``), and every malformed field must
become one clear DumpError line.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from .elfnotes import count_prstatus, vmcoreinfo_text
from .errors import DumpError
from .vmcoreinfo import VmcoreInfo

PT_LOAD, PT_NOTE = 1, 4
PHDR_SIZE, SHDR_SIZE = 56, 64
PN_XNUM = 0xFFFF  # e_phnum when the real count is in section header 0's sh_info
MAX_PHNUM = 1 << 22  # one per memory range: millions would be a corrupt sh_info
MAX_NOTES = 64 << 20  # NT_PRSTATUS of 8192 CPUs and VMCOREINFO take a few MiB
MAX_PHYS = 1 << 52  # x86_64 MAX_PHYSMEM_BITS with 5-level paging
ELF_INCOMPLETE = 0x1  # e_flags bit of a dump cut short (makedumpfile DUMP_ELF_INCOMPLETE)
EM_X86_64 = 62
ET_CORE = 4
START_KERNEL_MAP = 0xFFFFFFFF80000000  # x86_64 __START_KERNEL_map: the kernel-text PT_LOAD
WINDOW = 8 << 20  # bytes per mapping: 128 Ki struct pages, or 2048 pages of data
MAX_WINDOWS = 4  # mapped at once while the layout is read (page tables, mem_section, notes)
DATA_WINDOWS = 2  # once pages are copied (limit_windows): 16 MiB mapped, whatever the size
SPAN = 16 << 20  # the scan's mapping: the 64-byte struct pages of a 1 GiB window (span_array)
# Plain private mappings: populating them up front (MAP_POPULATE, MADV_POPULATE_READ) made the
# page-table walk and the scan slower, not faster (bench/NOTES.md)
_MAP_FLAGS = mmap.MAP_PRIVATE
_MACHINES = {3: "i386", 40: "arm", 183: "aarch64", 21: "ppc64", 22: "s390", 243: "riscv"}


@dataclass(frozen=True)
class Load:
    """One PT_LOAD: physical range [paddr, paddr + memsz) at file offset ``offset``."""

    paddr: int
    vaddr: int
    offset: int
    filesz: int
    memsz: int
    flags: int


def merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for a, b in sorted(ranges):
        if a >= b:
            continue
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


class ElfVmcore:
    """An ELF64 x86_64 vmcore (the Source protocol of ARCHITECTURE.md)."""

    kind = "elf"
    elf_class = 64

    def __init__(self, path: str):
        self.path = path
        try:
            self._fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            raise DumpError(f"cannot open {path}: {e.strerror}") from None
        self._windows: OrderedDict[int, mmap.mmap | bytes] = OrderedDict()
        self._max_windows = MAX_WINDOWS
        self._span: tuple[int, int, mmap.mmap | bytes] | None = None  # (offset, length, map)
        try:
            self._parse()
        except BaseException:
            os.close(self._fd)
            self._fd = -1
            raise

    # ---------------------------------------------------------------- parsing
    def _pread(self, size: int, offset: int) -> bytes:
        try:
            data = os.pread(self._fd, size, offset)
        except OSError as e:
            raise DumpError(
                f"{self.path}: read error at offset {offset:#x}: {e.strerror}"
            ) from None
        if len(data) != size:
            raise DumpError(f"{self.path} is truncated (short read at offset {offset:#x})")
        return data

    def _parse(self) -> None:
        eh = os.pread(self._fd, 64, 0)
        if len(eh) < 16 or eh[:4] != b"\x7fELF":
            raise DumpError(f"{self.path} is not an ELF vmcore (bad magic)")
        if eh[4] != 2:
            raise DumpError(f"{self.path}: only ELF64 vmcores are supported (x86_64)")
        if eh[5] != 1:
            raise DumpError(f"{self.path}: big-endian ELF; only x86_64 vmcores are supported")
        if len(eh) < 64:
            raise DumpError(f"{self.path} is truncated (ELF header)")
        (e_type, e_machine, _v, _entry, e_phoff, e_shoff, e_flags, _ehs, e_phentsize, e_phnum) = (
            struct.unpack_from("<HHIQQQIHHH", eh, 16)
        )
        e_shentsize, e_shnum = struct.unpack_from("<HH", eh, 58)
        if e_machine != EM_X86_64:
            name = _MACHINES.get(e_machine, f"machine {e_machine}")
            raise DumpError(f"{self.path} is an {name} vmcore; only x86_64 is supported")
        if e_type != ET_CORE:
            raise DumpError(f"{self.path} is not an ELF core file (e_type {e_type})")
        self.ehdr = eh
        # the writers' "incomplete" mark (-L, a full disk): what is missing stays missing
        self.incomplete = bool(e_flags & ELF_INCOMPLETE)
        self.file_size = os.fstat(self._fd).st_size
        if self.file_size <= 0:
            raise DumpError(f"{self.path}: size unknown or zero; cannot map it")
        if e_phentsize != PHDR_SIZE or e_phnum == 0:
            raise DumpError(f"{self.path}: bad program header table ({e_phnum} x {e_phentsize})")
        if e_phnum == PN_XNUM:
            e_phnum = self._xnum(e_shoff, e_shentsize, e_shnum)
        self._check_range("the program header table (e_phoff)", e_phoff, PHDR_SIZE * e_phnum)
        ph = self._pread(PHDR_SIZE * e_phnum, e_phoff)
        loads: list[Load] = []
        notes = []
        for i in range(e_phnum):
            p_type, p_flags, off, vaddr, paddr, filesz, memsz, _al = struct.unpack_from(
                "<IIQQQQQQ", ph, PHDR_SIZE * i
            )
            if p_type == PT_NOTE:
                if filesz > MAX_NOTES:
                    raise DumpError(
                        f"{self.path}: PT_NOTE {i} p_filesz={filesz:#x} is implausible "
                        f"(notes are at most {MAX_NOTES >> 20} MiB)"
                    )
                self._check_range(f"PT_NOTE {i} (p_offset)", off, filesz)
                notes.append((off, filesz))
            elif p_type == PT_LOAD:
                if memsz == 0 or not self._wanted_load(paddr):
                    continue
                if filesz > memsz:
                    raise DumpError(f"{self.path}: PT_LOAD {i} has filesz > memsz")
                if paddr + memsz > MAX_PHYS:
                    raise DumpError(
                        f"{self.path}: PT_LOAD {i} p_paddr={paddr:#x} p_memsz={memsz:#x} ends "
                        "beyond x86_64's 52-bit physical address space"
                    )
                if vaddr + memsz > 1 << 64:
                    raise DumpError(
                        f"{self.path}: PT_LOAD {i} p_vaddr={vaddr:#x} p_memsz={memsz:#x} runs "
                        "past the end of the address space"
                    )
                # /proc/vmcore reports its real size; a saved copy shorter than its PT_LOADs
                # is cut.
                if filesz and off + filesz > self.file_size:
                    raise DumpError(
                        f"{self.path} is truncated: PT_LOAD {i} ends at byte "
                        f"{off + filesz:#x} but the file has {self.file_size:#x}"
                    )
                loads.append(Load(paddr, vaddr, off, filesz, memsz, p_flags))
        if not loads:
            raise DumpError(f"{self.path} has no PT_LOAD segments")
        if not notes:
            raise DumpError(f"{self.path} has no PT_NOTE segment (no VMCOREINFO)")
        self.notes = b"".join(self._pread(sz, off) for off, sz in notes)
        self.nr_cpus = count_prstatus(self.notes)
        info = vmcoreinfo_text(self.notes)
        if info is None:
            raise DumpError(f"{self.path} has no VMCOREINFO note")
        self.vmcoreinfo = VmcoreInfo.parse(info)
        self.page_size = self.vmcoreinfo.page_size
        self._check_physmem(loads)
        self.loads = loads
        ps = self.page_size
        self.ram_ranges = merge_ranges(
            [(ld.paddr // ps, (ld.paddr + ld.memsz + ps - 1) // ps) for ld in loads]
        )
        self.max_pfn = self.ram_ranges[-1][1]
        # Lookup: RAM segments first (vaddr in the direct map), kernel-text ones after;
        # both map the same physical bytes (docs/page-types.md §6.3).
        self._segs = sorted(loads, key=lambda ld: (ld.vaddr >= START_KERNEL_MAP, ld.paddr))
        self._last = self._segs[0]
        self._starts = np.array([ld.paddr for ld in self._segs], np.uint64)
        self._ends = np.array([ld.paddr + ld.memsz for ld in self._segs], np.uint64)

    def _wanted_load(self, paddr: int) -> bool:
        """Whether a PT_LOAD is memory to read (every one of a vmcore; memusage.Kcore
        leaves out /proc/kcore's segments that have no physical address)."""
        return True

    def _xnum(self, e_shoff: int, e_shentsize: int, e_shnum: int) -> int:
        """The program header count of an ELF with ``e_phnum == PN_XNUM``: more than 65534
        headers (a machine with many memory ranges), the real count in section header 0's
        ``sh_info`` (elf(5); the kernel's vmcore and makedumpfile's ELF output do this)."""
        if e_shoff == 0 or e_shnum == 0 or e_shentsize < SHDR_SIZE:
            raise DumpError(
                f"{self.path}: e_phnum is PN_XNUM (0xffff) but there is no section header "
                "to hold the real program header count"
            )
        self._check_range("section header 0 (e_shoff)", e_shoff, SHDR_SIZE)
        (count,) = struct.unpack_from("<I", self._pread(SHDR_SIZE, e_shoff), 44)
        if not PN_XNUM <= count <= MAX_PHNUM:
            raise DumpError(
                f"{self.path}: section header 0 sh_info={count} is not a PN_XNUM program "
                f"header count ({PN_XNUM}..{MAX_PHNUM})"
            )
        return count

    def _check_physmem(self, loads: list[Load]) -> None:
        """RAM lies below 2^MAX_PHYSMEM_BITS (46 with 4-level paging): a PT_LOAD above it
        is corrupt, and would make every per-PFN pass walk up to 2^40 PFNs of nothing."""
        bits = self.vmcoreinfo.opt("NUMBER", "MAX_PHYSMEM_BITS")
        if bits is None or not 0 < bits < 52:
            return  # absent, or 52 already checked; a corrupt value is memmap's to report
        for ld in loads:
            if ld.paddr + ld.memsz > 1 << bits:
                raise DumpError(
                    f"{self.path}: the PT_LOAD at physical {ld.paddr:#x} ends at "
                    f"{ld.paddr + ld.memsz:#x}, beyond NUMBER(MAX_PHYSMEM_BITS)={bits}"
                )

    def _check_range(self, what: str, offset: int, size: int) -> None:
        """``size`` bytes at ``offset`` must lie inside the file (values from the dump)."""
        if offset + size > self.file_size:
            raise DumpError(
                f"{self.path}: {what} at {offset:#x} (+{size:#x}) lies beyond the end of the "
                f"file ({self.file_size:#x} bytes)"
            )

    # ---------------------------------------------------------------- physical reads

    def _seg_for(self, paddr: int, size: int) -> Load:
        last = self._last
        if last.paddr <= paddr and paddr + size <= last.paddr + last.memsz:
            return last
        for ld in self._segs:  # a handful of segments: RAM ones first
            if ld.paddr <= paddr and paddr + size <= ld.paddr + ld.memsz:
                self._last = ld
                return ld
        raise DumpError(f"physical address {paddr:#x} (+{size:#x}) is not in the dump")

    def _window(self, base: int) -> mmap.mmap | bytes:
        w = self._windows.get(base)
        if w is not None:
            self._windows.move_to_end(base)
            return w
        length = min(WINDOW, self.file_size - base)
        try:
            w = mmap.mmap(self._fd, length, _MAP_FLAGS, mmap.PROT_READ, offset=base)
        except (OSError, ValueError):
            w = self._pread(length, base)  # no mmap (e.g. an old /proc/vmcore): plain read
        self._windows[base] = w
        self._evict()
        return w

    def _evict(self) -> None:
        while len(self._windows) > self._max_windows:
            self._windows.popitem(last=False)  # views keep their mapping alive

    def limit_windows(self, n: int = DATA_WINDOWS) -> None:
        """Keep at most ``n`` windows mapped from now on (the least recently used go now),
        and drop the scan's span.

        Copying pages is sequential and needs one window and the next, so writers switch to
        ``DATA_WINDOWS`` once the scan is done: 16 MiB less resident."""
        self._max_windows = max(1, n)
        self._evict()
        self._span = None  # the scan's mapping: the struct pages are not read again

    def release_windows(self) -> None:
        """Unmap every window now: the layout has been read, and the scan reads through
        its own mapping (``span_array``).  Otherwise the setup's windows (page tables,
        mem_section, notes) would be evicted, and their munmap paid, in the middle of a
        later read, where an unmap of a fully touched window is not free."""
        self._windows.clear()  # views still in use keep their mapping alive

    def _file_array(self, off: int, size: int) -> np.ndarray:
        """Bytes [off, off+size) of the file as a uint8 array, a view when in one window."""
        base = off - off % WINDOW
        if off + size <= base + WINDOW:
            w = self._window(base)
            return np.frombuffer(w, np.uint8, size, off - base)
        out = np.empty(size, np.uint8)
        pos = 0
        while pos < size:
            b = (off + pos) - (off + pos) % WINDOW
            n = min(size - pos, b + WINDOW - (off + pos))
            out[pos : pos + n] = np.frombuffer(self._window(b), np.uint8, n, off + pos - b)
            pos += n
        return out

    def phys_array(self, paddr: int, size: int) -> np.ndarray:
        """Physical [paddr, paddr+size) as uint8, a view of the mapping when possible.

        A range that is not wholly inside one PT_LOAD is assembled piecewise; any byte in a
        hole is an error, never zeros.
        """
        try:
            ld = self._seg_for(paddr, size)
        except DumpError:
            return self._phys_pieces(paddr, size)
        rel = paddr - ld.paddr
        if rel + size <= ld.filesz:
            return self._file_array(ld.offset + rel, size)
        out = np.zeros(size, np.uint8)  # memsz beyond filesz reads as zeros (ELF semantics)
        n = max(0, ld.filesz - rel)
        if n:
            out[:n] = self._file_array(ld.offset + rel, n)
        return out

    def _phys_pieces(self, paddr: int, size: int) -> np.ndarray:
        out = np.empty(size, np.uint8)
        pos = 0
        while pos < size:
            a = paddr + pos
            inside = np.flatnonzero((self._starts <= np.uint64(a)) & (self._ends > np.uint64(a)))
            if len(inside) == 0:
                raise DumpError(f"physical address {a:#x} is not in the dump (a memory hole)")
            ld = self._segs[int(inside[0])]
            n = min(size - pos, ld.paddr + ld.memsz - a)
            out[pos : pos + n] = self.phys_array(a, n)
            pos += n
        return out

    def span_array(self, paddr: int, size: int) -> np.ndarray:
        """A view of physical [paddr, paddr + n): n = size, or less where the PT_LOAD's file
        data ends (0 in a hole or beyond the file data: use ``phys_array`` there).

        The scan reads struct pages through a mapping of their own, SPAN bytes (or the
        whole request) from where a read needs it, instead of the 8 MiB windows: a window
        edge cut a run of struct pages in two, and every extra classify call has a fixed
        cost that adds up over a dump.  One span at a time (a 1 GiB window's
        struct pages); the previous one is unmapped once no view uses it."""
        try:
            ld = self._seg_for(paddr, 1)
        except DumpError:
            return np.zeros(0, np.uint8)
        off = ld.offset + paddr - ld.paddr
        end = ld.offset + ld.filesz  # not into the next segment's data
        if off >= end:
            return np.zeros(0, np.uint8)
        want = min(size, end - off)
        sp = self._span
        if sp is None or not sp[0] <= off <= off + want <= sp[0] + sp[1]:
            base = off - off % mmap.ALLOCATIONGRANULARITY
            # the whole request, if bigger (struct pages of more than 64 bytes)
            length = min(max(SPAN, want) + off - base, self.file_size - base)
            w: mmap.mmap | bytes
            try:
                w = mmap.mmap(self._fd, length, _MAP_FLAGS, mmap.PROT_READ, offset=base)
            except (OSError, ValueError):
                w = self._pread(length, base)  # no mmap: read (as _window does)
            self._span = sp = (base, length, w)
        base, length, w = sp
        return np.frombuffer(w, np.uint8, want, off - base)

    def read_phys(self, paddr: int, size: int) -> bytes:
        return self.phys_array(paddr, size).tobytes()

    def read_pages(self, pfn: int, count: int) -> np.ndarray:
        ps = self.page_size
        return self.phys_array(pfn * ps, count * ps).reshape(count, ps)

    def is_dumpable(self, start_pfn: int, end_pfn: int) -> None:
        return None

    # ---------------------------------------------------------------- lifetime
    def close(self) -> None:
        self._windows.clear()
        self._span = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> ElfVmcore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
