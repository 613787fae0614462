"""kdump-compressed input, for re-filtering (``dumpfilter -d 31 dump.d1 dump.d31``).

Layout (docs/kdump-compressed.md §1-§6): header block, sub header (+ the copied PT_NOTE at
``offset_note``), the 1st bitmap (RAM) and 2nd bitmap (dumpable), then one 24-byte
``page_desc`` per set bit of the 2nd bitmap in PFN order, then page data, each page
compressed on its own (flags say zlib/lzo/snappy/zstd, 0 = raw).  A PFN's descriptor index
is the number of set bits below it in the 2nd bitmap; prefix counts per 512 PFNs make that
a lookup.  Pages the input left out read as zeros (the Source contract); their absence is
reported through ``is_dumpable`` so the writer never claims to have them.
"""

from __future__ import annotations

import mmap
import os
from collections import OrderedDict

import numpy as np

from .elfcore import MAX_NOTES, MAX_PHYS
from .elfnotes import count_prstatus, make_note, vmcoreinfo_text
from .errors import DumpError
from .kdumpformat import (
    CODEC_MASK,
    DUMP_DH_COMPRESSED_INCOMPLETE,
    FLAG_CODEC,
    HEADER,
    PAGE_DESC,
    SIGNATURES,
    SUB_HEADER,
    Header,
    SubHeader,
)
from .vmcoreinfo import X86_64_PAGE_SIZE, VmcoreInfo

_BLOCK_BITS = 512  # prefix-count granularity
_POP = np.array([bin(i).count("1") for i in range(256)], np.uint8)
_CACHE_PAGES = 256
_MAX_SUB_BLOCKS = 1 << 20
_LOST_STEP = 1 << 20  # PFNs per step when looking for the lost pages of an incomplete dump


def _snappy_length(raw: bytes) -> int | None:
    """The uncompressed length a raw snappy block announces (a varint), None if malformed."""
    value = 0
    for i, b in enumerate(raw[:5]):
        value |= (b & 0x7F) << (7 * i)
        if not b & 0x80:
            return value
    return None


class KdumpInput:
    """A kdump-compressed dump file (the Source protocol of ARCHITECTURE.md)."""

    kind = "kdump"
    loads: tuple = ()  # no PT_LOADs: pages are found through the bitmaps
    ehdr = None

    def __init__(self, path: str):
        self.path = path
        try:
            self._f = open(path, "rb")
        except OSError as e:
            raise DumpError(f"cannot open {path}: {e.strerror}") from None
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        try:
            self._parse()
        except BaseException:
            self._f.close()
            raise

    def _pread(self, size: int, off: int) -> bytes:
        try:
            data = os.pread(self._f.fileno(), size, off)
        except OSError as e:
            raise DumpError(f"{self.path}: read error at offset {off:#x}: {e.strerror}") from None
        if len(data) != size:
            raise DumpError(f"{self.path} is truncated (short read at offset {off:#x})")
        return data

    def _parse(self) -> None:
        h = self._pread(HEADER.size, 0)
        if h[:8] not in SIGNATURES:
            raise DumpError(f"{self.path} is not a kdump-compressed file")
        hdr = Header.unpack(h)
        version = hdr.header_version
        self.utsname = b"".join(hdr[2:8])
        if not hdr.utsname_machine.startswith(b"x86_64"):
            machine = hdr.utsname_machine.split(b"\0")[0].decode("ascii", "replace")
            raise DumpError(
                f"{self.path} is an {machine or 'unknown'} dump; only x86_64 is supported"
            )
        status, bs, sub_blocks = hdr.status, hdr.block_size, hdr.sub_hdr_size
        bitmap_blocks, max_mapnr = hdr.bitmap_blocks, hdr.max_mapnr
        self.header_nr_cpus = hdr.nr_cpus
        self.file_size = size = os.fstat(self._f.fileno()).st_size
        # blocks are pages (makedumpfile writes block_size = page size), 4 KiB on x86_64
        if bs != X86_64_PAGE_SIZE:
            raise DumpError(
                f"{self.path}: kdump header block_size={bs} is not the x86_64 page size "
                f"({X86_64_PAGE_SIZE})"
            )
        if not 0 < sub_blocks < _MAX_SUB_BLOCKS or (1 + sub_blocks) * bs > size:
            raise DumpError(f"{self.path}: kdump header sub_hdr_size={sub_blocks} is corrupt")
        if bitmap_blocks <= 0:
            raise DumpError(f"{self.path}: kdump header bitmap_blocks={bitmap_blocks} is corrupt")
        self.block_size = bs
        self.status = status
        self.incomplete = bool(status & DUMP_DH_COMPRESSED_INCOMPLETE)
        sub = SubHeader.unpack(self._pread(SUB_HEADER.size, bs))
        self.phys_base = sub.phys_base
        self.input_dump_level = sub.dump_level
        if version >= 2 and sub.split == 1:
            raise DumpError(f"{self.path} is one part of a --split set; --reassemble it first")
        off_vi, size_vi = sub.offset_vmcoreinfo, sub.size_vmcoreinfo
        off_note, size_note = sub.offset_note, sub.size_note
        if version >= 6:
            max_mapnr = sub.max_mapnr_64 or max_mapnr
        if max_mapnr > MAX_PHYS // bs:
            raise DumpError(
                f"{self.path}: max_mapnr={max_mapnr:#x} is beyond x86_64's 52-bit physical "
                "address space"
            )
        info: bytes | None = None
        if version >= 4 and size_note:
            self._check_range("offset_note/size_note", off_note, size_note)
            self.notes = self._pread(size_note, off_note)
            info = vmcoreinfo_text(self.notes)
            self.nr_cpus = count_prstatus(self.notes)
        elif version >= 3 and size_vi:
            self._check_range("offset_vmcoreinfo/size_vmcoreinfo", off_vi, size_vi)
            info = self._pread(size_vi, off_vi)
            # no copy of the notes (version 3): the VMCOREINFO alone, as a note, so that a
            # dump written from this one carries it too
            self.notes = make_note(b"VMCOREINFO", 0, info)
            self.nr_cpus = self.header_nr_cpus
        if info is None:
            raise DumpError(f"{self.path} has no VMCOREINFO")
        self.vmcoreinfo = VmcoreInfo.parse(info)
        self.page_size = self.vmcoreinfo.page_size
        if self.page_size != bs:
            raise DumpError(f"{self.path}: block size {bs} differs from PAGESIZE")
        half = bitmap_blocks * bs // 2
        if half * 8 < max_mapnr:
            raise DumpError(f"{self.path}: bitmaps too small for max_mapnr {max_mapnr}")
        self.max_pfn = int(max_mapnr)
        bm_off = (1 + sub_blocks) * bs
        self.desc_off = bm_off + bitmap_blocks * bs
        if size < self.desc_off:
            raise DumpError(f"{self.path} is truncated (bitmaps)")
        self._mm = mmap.mmap(self._f.fileno(), self.desc_off, mmap.MAP_PRIVATE, mmap.PROT_READ)
        nbytes = (self.max_pfn + 7) // 8
        self._bm1 = np.frombuffer(self._mm, np.uint8, nbytes, bm_off)
        self._bm2 = np.frombuffer(self._mm, np.uint8, nbytes, bm_off + half)
        per = _BLOCK_BITS // 8
        pad = (-nbytes) % per
        counts = _POP[self._bm2]
        blocks = np.concatenate([counts, np.zeros(pad, np.uint8)]).reshape(-1, per)
        self._prefix = np.concatenate([[0], np.cumsum(blocks.sum(axis=1, dtype=np.int64))])
        self.nr_dumpable = int(self._prefix[-1])
        if size < self.desc_off + PAGE_DESC.itemsize * self.nr_dumpable:
            raise DumpError(f"{self.path} is truncated (page descriptors)")
        self.ram_ranges = self._runs(self._bm1)
        if not self.ram_ranges:
            raise DumpError(f"{self.path}: the RAM bitmap is empty")
        self._dumpable = self._bm2  # minus the pages an incomplete dump lost
        if self.incomplete:
            self._dumpable = self._without_lost_pages()

    def _check_range(self, what: str, off: int, size: int) -> None:
        """A region the sub header points at must lie in the file (and be note-sized)."""
        if off < 0 or size > MAX_NOTES or off + size > self.file_size:
            raise DumpError(
                f"{self.path}: kdump sub header {what} ({off:#x}, {size:#x}) lies outside "
                f"the file ({self.file_size:#x} bytes)"
            )

    def _without_lost_pages(self) -> np.ndarray:
        """The 2nd bitmap less the pages whose descriptor was never written.

        A dump cut short (-L, a full disk) keeps its bitmaps but leaves the descriptors of
        the pages that did not fit all zero (offset 0); those pages are not in the dump, and
        a re-filtered dump must not claim them either.  The 2nd bitmap itself still numbers
        the descriptors, so it stays as it is."""
        out = np.array(self._bm2)
        step = _LOST_STEP // 8
        for b0 in range(0, len(out), step):
            bits = np.unpackbits(self._bm2[b0 : b0 + step], bitorder="little")
            pfns = np.flatnonzero(bits)
            if len(pfns) == 0:
                continue
            first = int(self._prefix[b0 * 8 // _BLOCK_BITS])
            dsz = PAGE_DESC.itemsize
            raw = self._pread(dsz * len(pfns), self.desc_off + dsz * first)
            lost = pfns[np.frombuffer(raw, PAGE_DESC)["offset"] == 0]
            bits[lost] = 0
            out[b0 : b0 + step] = np.packbits(bits, bitorder="little")
        return out

    def _runs(self, bm: np.ndarray) -> list[tuple[int, int]]:
        """[start, end) runs of set bits, found window by window (bounded memory)."""
        out: list[list[int]] = []
        step = 1 << 20
        for b0 in range(0, len(bm), step):
            bits = np.unpackbits(bm[b0 : b0 + step], bitorder="little").astype(np.int8)
            base = b0 * 8
            lim = min(len(bits), self.max_pfn - base)
            bits = bits[:lim]
            edges = np.flatnonzero(np.diff(np.concatenate([[0], bits, [0]])))
            for a, b in edges.reshape(-1, 2):
                a, b = int(a) + base, int(b) + base
                if out and out[-1][1] == a:
                    out[-1][1] = b
                else:
                    out.append([a, b])
        return [(a, b) for a, b in out]

    # ---------------------------------------------------------------- bitmaps
    def _bits(self, bm: np.ndarray, start: int, end: int) -> np.ndarray:
        end = min(end, self.max_pfn)
        if end <= start:
            return np.zeros(0, bool)
        b0, b1 = start // 8, (end + 7) // 8
        bits = np.unpackbits(bm[b0:b1], bitorder="little").astype(bool)
        return bits[start - b0 * 8 : end - b0 * 8]

    def is_dumpable(self, start_pfn: int, end_pfn: int) -> np.ndarray:
        out = np.zeros(end_pfn - start_pfn, bool)
        got = self._bits(self._dumpable, start_pfn, end_pfn)
        out[: len(got)] = got
        return out

    def is_ram(self, start_pfn: int, end_pfn: int) -> np.ndarray:
        out = np.zeros(end_pfn - start_pfn, bool)
        got = self._bits(self._bm1, start_pfn, end_pfn)
        out[: len(got)] = got
        return out

    def _desc_index(self, pfn: int) -> int:
        blk = pfn // _BLOCK_BITS
        first = blk * _BLOCK_BITS
        return int(self._prefix[blk]) + int(self._bits(self._bm2, first, pfn).sum())

    # ---------------------------------------------------------------- page data
    def _page(self, pfn: int) -> bytes:
        hit = self._cache.get(pfn)
        if hit is not None:
            self._cache.move_to_end(pfn)
            return hit
        idx = self._desc_index(pfn)
        dsz = PAGE_DESC.itemsize
        d = np.frombuffer(self._pread(dsz, self.desc_off + dsz * idx), PAGE_DESC)[0]
        off, size, flags = int(d["offset"]), int(d["size"]), int(d["flags"])
        ps = self.page_size
        if size > ps or off <= 0 or off + size > self.file_size:
            raise DumpError(f"{self.path}: corrupt page descriptor for pfn {pfn:#x}")
        raw = self._pread(size, off)
        codec = FLAG_CODEC.get(flags & CODEC_MASK)
        if codec == "snappy" and _snappy_length(raw) != ps:
            # the stream's own length header, checked before anything is allocated for it
            raise DumpError(f"{self.path}: pfn {pfn:#x} does not decompress to a page (snappy)")
        if codec is None:
            if size != ps:
                raise DumpError(f"{self.path}: pfn {pfn:#x} has size {size} but no compression")
            data = raw
        else:
            from .compress import decompress

            try:
                data = decompress(codec, raw, ps)
            except DumpError:
                raise
            except Exception as e:
                raise DumpError(
                    f"{self.path}: pfn {pfn:#x} does not decompress ({codec}: {e})"
                ) from None
            if len(data) != ps:
                raise DumpError(f"{self.path}: pfn {pfn:#x} decompresses to {len(data)} bytes")
        self._cache[pfn] = data
        if len(self._cache) > _CACHE_PAGES:
            self._cache.popitem(last=False)
        return data

    def read_pages(self, pfn: int, count: int) -> np.ndarray:
        ps = self.page_size
        ram = self.is_ram(pfn, pfn + count)
        if not ram.all():
            bad = pfn + int(np.flatnonzero(~ram)[0])
            raise DumpError(f"pfn {bad:#x} is not in the dump (a memory hole)")
        out = np.zeros((count, ps), np.uint8)
        for i in np.flatnonzero(self.is_dumpable(pfn, pfn + count)):
            out[i] = np.frombuffer(self._page(pfn + int(i)), np.uint8)
        return out

    def phys_array(self, paddr: int, size: int) -> np.ndarray:
        ps = self.page_size
        first, last = paddr // ps, (paddr + size - 1) // ps
        pages = self.read_pages(first, last - first + 1).reshape(-1)
        off = paddr - first * ps
        return pages[off : off + size]

    def read_phys(self, paddr: int, size: int) -> bytes:
        return self.phys_array(paddr, size).tobytes()

    def span_array(self, paddr: int, size: int) -> np.ndarray:
        """Pages are decompressed one by one: every read is a copy, of the whole range."""
        return self.phys_array(paddr, size)

    def release_windows(self) -> None:
        """Nothing is mapped for the layout (pages are read and cached one by one)."""

    def limit_windows(self) -> None:
        """The page cache is bounded already (``_CACHE_PAGES``)."""

    # ---------------------------------------------------------------- lifetime
    def close(self) -> None:
        self._cache.clear()
        self._bm1 = self._bm2 = None  # type: ignore[assignment]
        try:
            self._mm.close()
        except (AttributeError, BufferError):
            pass
        self._f.close()

    def __enter__(self) -> KdumpInput:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
