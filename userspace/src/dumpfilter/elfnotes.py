"""ELF notes of a vmcore, parsed in one place for every reader and writer.

A PT_NOTE segment (and the copy a kdump-compressed file keeps after its sub header) is a
sequence of ``Elf64_Nhdr`` records: ``namesz``, ``descsz``, ``type`` (u32 each), then the name
and the descriptor, each padded to 4 bytes; zero padding may end the segment.  The notes that
matter here are ``CORE``/``NT_PRSTATUS`` (one per CPU) and ``VMCOREINFO`` (type 0, the
kernel's ``KEY=VALUE`` text that ``vmcoreinfo.VmcoreInfo`` parses).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from .errors import DumpError

NT_PRSTATUS = 1
_NHDR = struct.Struct("<III")  # Elf64_Nhdr: namesz, descsz, type


class Note(NamedTuple):
    """One note: its name (NULs stripped), type, and where its descriptor lies."""

    name: bytes
    type: int
    desc_off: int
    desc_size: int


def iter_notes(data: bytes) -> list[Note]:
    """Every note of a PT_NOTE segment, in order; DumpError if one runs past the end."""
    out = []
    pos = 0
    while pos + _NHDR.size <= len(data):
        namesz, descsz, ntype = _NHDR.unpack_from(data, pos)
        if namesz == 0 and descsz == 0 and ntype == 0:
            break  # zero padding at the end of a segment
        name_off = pos + _NHDR.size
        desc_off = name_off + ((namesz + 3) & ~3)
        if desc_off + descsz > len(data):
            raise DumpError("PT_NOTE segment is malformed (a note runs past its end)")
        out.append(Note(data[name_off : name_off + namesz].rstrip(b"\0"), ntype, desc_off, descsz))
        pos = desc_off + ((descsz + 3) & ~3)
    return out


def parse_notes(data: bytes) -> list[tuple[bytes, int, bytes]]:
    """(name, type, descriptor bytes) of every note."""
    return [(n.name, n.type, data[n.desc_off : n.desc_off + n.desc_size]) for n in iter_notes(data)]


def vmcoreinfo_span(data: bytes) -> tuple[int, int]:
    """(offset, size) of the first VMCOREINFO note's descriptor inside ``data``, or (0, 0)."""
    for n in iter_notes(data):
        if n.name == b"VMCOREINFO":
            return n.desc_off, n.desc_size
    return 0, 0


def vmcoreinfo_text(data: bytes) -> bytes | None:
    """The first VMCOREINFO note's descriptor, or None when there is none."""
    for n in iter_notes(data):
        if n.name == b"VMCOREINFO":
            return data[n.desc_off : n.desc_off + n.desc_size]
    return None


def count_prstatus(data: bytes) -> int:
    """The number of ``CORE``/``NT_PRSTATUS`` notes: the crashed machine's CPUs."""
    return sum(1 for n in iter_notes(data) if n.name == b"CORE" and n.type == NT_PRSTATUS)


def make_note(name: bytes, ntype: int, desc: bytes) -> bytes:
    """One note record: ``name`` (a NUL is added) and ``desc``, each padded to 4 bytes."""
    name = name + b"\0"

    def pad(b: bytes) -> bytes:
        return b + bytes(-len(b) % 4)

    return _NHDR.pack(len(name), len(desc), ntype) + pad(name) + pad(desc)
