"""The kdump-compressed file format and the flattened stream, each record declared once.

Every module that reads or writes these files (the writer ``diskdump``, the reader
``diskdump_in``, ``--split``/``--reassemble`` in ``split``, ``-F``/``-R`` in ``output`` and
``flat``, and the tests) takes the records, offsets and flag values from here, by the C field
names of makedumpfile's ``diskdump_mod.h`` and ``makedumpfile.h``.  The format as dumpfilter
writes it is described in docs/kdump-compressed.md.

File layout (x86_64, one block = one page): block 0 holds ``disk_dump_header``; the sub header
``kdump_sub_header`` starts at block 1 and is followed by a verbatim copy of the input's ELF
notes; then the 1st bitmap (RAM) and the 2nd bitmap (dumpable), each ``bitmap_blocks / 2``
blocks; then one ``page_desc`` per set bit of the 2nd bitmap, in PFN order; then page data.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

SIGNATURE = b"KDUMP   "  # KDUMP_SIGNATURE
SIGNATURES = (SIGNATURE, b"DISKDUMP")  # the older DISK_DUMP_SIGNATURE is read as well
HEADER_VERSION = 6  # the version makedumpfile 1.7 writes: 64-bit PFN fields in the sub header

# disk_dump_header.status and page_desc.flags (DUMP_DH_*)
DUMP_DH_COMPRESSED_ZLIB = 0x1
DUMP_DH_COMPRESSED_LZO = 0x2
DUMP_DH_COMPRESSED_SNAPPY = 0x4
DUMP_DH_COMPRESSED_INCOMPLETE = 0x8  # the writer was cut short: some descriptors are zero
DUMP_DH_COMPRESSED_ZSTD = 0x20
CODEC_FLAGS = {
    "zlib": DUMP_DH_COMPRESSED_ZLIB,
    "lzo": DUMP_DH_COMPRESSED_LZO,
    "snappy": DUMP_DH_COMPRESSED_SNAPPY,
    "zstd": DUMP_DH_COMPRESSED_ZSTD,
}
FLAG_CODEC = {flag: name for name, flag in CODEC_FLAGS.items()}
CODEC_MASK = sum(CODEC_FLAGS.values())  # the bits of page_desc.flags that name a codec

UTS_FIELDS = ("sysname", "nodename", "release", "version", "machine", "domainname")
UTS_LEN = 65  # __NEW_UTS_LEN + 1


def _record(fields: tuple[tuple[str, str], ...]) -> tuple[struct.Struct, dict[str, int]]:
    """A little-endian struct of ``(name, format)`` fields (``""`` names padding) and the
    byte offset of every named field."""
    fmt = "<" + "".join(f for _, f in fields)
    offsets = {}
    for i, (name, _) in enumerate(fields):
        if name:
            offsets[name] = struct.calcsize("<" + "".join(f for _, f in fields[:i]))
    return struct.Struct(fmt), offsets


# struct disk_dump_header: 464 bytes (the 6-byte pad aligns the struct timeval)
HEADER_FIELDS = (
    ("signature", "8s"),
    ("header_version", "i"),
    *((f"utsname_{f}", f"{UTS_LEN}s") for f in UTS_FIELDS),
    ("", "6x"),
    ("timestamp_sec", "q"),
    ("timestamp_usec", "q"),
    ("status", "I"),
    ("block_size", "i"),
    ("sub_hdr_size", "i"),  # in blocks
    ("bitmap_blocks", "I"),  # both bitmaps
    ("max_mapnr", "I"),  # 32-bit; header version 6 has max_mapnr_64 in the sub header
    ("total_ram_blocks", "I"),
    ("device_blocks", "I"),
    ("written_blocks", "I"),
    ("current_cpu", "I"),
    ("nr_cpus", "i"),
)
HEADER, HEADER_OFFSET = _record(HEADER_FIELDS)
STATUS = struct.Struct("<" + dict(HEADER_FIELDS)["status"])  # disk_dump_header.status alone

# struct kdump_sub_header (version 6): 104 bytes
SUB_HEADER_FIELDS = (
    ("phys_base", "Q"),
    ("dump_level", "i"),
    ("split", "i"),  # 1 in each file of a --split set
    ("start_pfn", "Q"),  # a split file's range (32-bit era fields, still written)
    ("end_pfn", "Q"),
    ("offset_vmcoreinfo", "q"),
    ("size_vmcoreinfo", "Q"),
    ("offset_note", "q"),
    ("size_note", "Q"),
    ("offset_eraseinfo", "q"),
    ("size_eraseinfo", "Q"),
    ("start_pfn_64", "Q"),
    ("end_pfn_64", "Q"),
    ("max_mapnr_64", "Q"),
)
SUB_HEADER, SUB_HEADER_OFFSET = _record(SUB_HEADER_FIELDS)

# struct page_desc: where a page's data is, how long, compressed how
PAGE_DESC = np.dtype([("offset", "<i8"), ("size", "<u4"), ("flags", "<u4"), ("page_flags", "<u8")])
assert HEADER.size == 464 and SUB_HEADER.size == 104 and PAGE_DESC.itemsize == 24


class Header(NamedTuple):
    """``disk_dump_header``, field by field (the utsname fields are raw ``char[65]``)."""

    signature: bytes
    header_version: int
    utsname_sysname: bytes
    utsname_nodename: bytes
    utsname_release: bytes
    utsname_version: bytes
    utsname_machine: bytes
    utsname_domainname: bytes
    timestamp_sec: int
    timestamp_usec: int
    status: int
    block_size: int
    sub_hdr_size: int
    bitmap_blocks: int
    max_mapnr: int
    total_ram_blocks: int
    device_blocks: int
    written_blocks: int
    current_cpu: int
    nr_cpus: int

    @classmethod
    def unpack(cls, buf: bytes | bytearray) -> Header:
        return cls(*HEADER.unpack_from(buf, 0))

    def pack(self) -> bytes:
        return HEADER.pack(*self)

    @property
    def bitmap_off(self) -> int:
        """Offset of the 1st bitmap: after the header block and the sub header blocks."""
        return (1 + self.sub_hdr_size) * self.block_size

    @property
    def bitmap_len(self) -> int:
        """Bytes of one bitmap (the 2nd follows the 1st)."""
        return self.bitmap_blocks * self.block_size // 2

    @property
    def desc_off(self) -> int:
        """Offset of the page descriptor table."""
        return self.bitmap_off + self.bitmap_blocks * self.block_size


class SubHeader(NamedTuple):
    """``kdump_sub_header`` (version 6), field by field."""

    phys_base: int
    dump_level: int
    split: int
    start_pfn: int
    end_pfn: int
    offset_vmcoreinfo: int
    size_vmcoreinfo: int
    offset_note: int
    size_note: int
    offset_eraseinfo: int
    size_eraseinfo: int
    start_pfn_64: int
    end_pfn_64: int
    max_mapnr_64: int

    @classmethod
    def unpack(cls, buf: bytes | bytearray, offset: int = 0) -> SubHeader:
        return cls(*SUB_HEADER.unpack_from(buf, offset))

    def pack(self) -> bytes:
        return SUB_HEADER.pack(*self)


assert tuple(Header._fields) == tuple(n for n, _ in HEADER_FIELDS if n)
assert tuple(SubHeader._fields) == tuple(n for n, _ in SUB_HEADER_FIELDS)


@dataclass
class Geometry:
    """Where everything of a file being written goes, from the page size, the number of
    PFNs and the size of the notes copied after the sub header."""

    page_size: int
    max_mapnr: int
    size_note: int

    @property
    def offset_note(self) -> int:
        """The notes follow the sub header directly."""
        return self.page_size + SUB_HEADER.size

    @property
    def sub_hdr_blocks(self) -> int:
        return -(-(SUB_HEADER.size + self.size_note) // self.page_size)

    @property
    def bitmap_len(self) -> int:  # one bitmap, block-aligned
        ps = self.page_size
        nbytes = (self.max_mapnr + 7) // 8
        return (nbytes + ps - 1) // ps * ps

    @property
    def bitmap1_off(self) -> int:
        return (1 + self.sub_hdr_blocks) * self.page_size

    @property
    def bitmap2_off(self) -> int:
        return self.bitmap1_off + self.bitmap_len

    @property
    def desc_off(self) -> int:
        return self.bitmap2_off + self.bitmap_len


# ---------------------------------------------------------------- flattened stream (-F)
# makedumpfile_header (4096 bytes: signature, type and version as big-endian int64s), then
# records of makedumpfile_data_header (offset, size) each followed by ``size`` bytes meant
# for ``offset`` of the random-access file, ended by the record (-1, -1).
FLAT_SIGNATURE = b"makedumpfile\0\0\0\0"
FLAT_TYPE = 1
FLAT_VERSION = 1
FLAT_HEADER_SIZE = 4096
FLAT_HEADER = struct.Struct(">16sqq")
FLAT_RECORD = struct.Struct(">qq")
FLAT_END = FLAT_RECORD.pack(-1, -1)
