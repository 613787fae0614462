"""Structured damage to dumps, for the hostile-input tests and the fuzz campaign.

Every helper works on a copy of a dump (``sparse_copy``: only the data extents are copied, so
a synthetic vmcore of 100 MiB costs a few MiB) and changes one field where the format puts it:
ELF header and program headers, the VMCOREINFO note (rewritten at the end of the file, its
PT_NOTE pointed there), kdump header and sub header fields, and flattened-stream records.
"""

from __future__ import annotations

import os
import struct

from dumpfilter.kdumpformat import (
    HEADER_FIELDS,
    HEADER_OFFSET,
    SUB_HEADER_FIELDS,
    SUB_HEADER_OFFSET,
)

# ELF64 header and program header fields: (offset, struct format)
EHDR = {
    "e_phoff": (32, "<Q"),
    "e_shoff": (40, "<Q"),
    "e_flags": (48, "<I"),
    "e_phentsize": (54, "<H"),
    "e_phnum": (56, "<H"),
    "e_shentsize": (58, "<H"),
    "e_shnum": (60, "<H"),
}
PHDR = {
    "p_type": (0, "<I"),
    "p_offset": (8, "<Q"),
    "p_vaddr": (16, "<Q"),
    "p_paddr": (24, "<Q"),
    "p_filesz": (32, "<Q"),
    "p_memsz": (40, "<Q"),
}
# kdump-compressed: disk_dump_header (block 0) and kdump_sub_header (block 1, 4 KiB pages)
KDUMP_HEADER = {
    name: (HEADER_OFFSET[name], "<" + fmt)
    for name, fmt in HEADER_FIELDS
    if name in ("status", "block_size", "sub_hdr_size", "bitmap_blocks", "max_mapnr")
}
KDUMP_SUB = {
    name: (4096 + SUB_HEADER_OFFSET[name], "<" + fmt)
    for name, fmt in SUB_HEADER_FIELDS
    if name in ("offset_vmcoreinfo", "size_vmcoreinfo", "offset_note", "size_note", "max_mapnr_64")
}
PT_LOAD, PT_NOTE = 1, 4


def sparse_copy(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy ``src`` to ``dst`` keeping its holes (SEEK_DATA / SEEK_HOLE)."""
    size = os.path.getsize(src)
    fi = os.open(src, os.O_RDONLY)
    fo = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fo, size)
        pos = 0
        while pos < size:
            try:
                pos = os.lseek(fi, pos, os.SEEK_DATA)
            except OSError:
                break  # only a hole is left
            end = os.lseek(fi, pos, os.SEEK_HOLE)
            while pos < end:
                n = os.copy_file_range(fi, fo, min(end - pos, 1 << 26), pos, pos)
                if n <= 0:
                    raise OSError(f"copy_file_range made no progress at {pos}")
                pos += n
    finally:
        os.close(fi)
        os.close(fo)


def read_field(path, offset: int, fmt: str) -> int:
    with open(path, "rb") as f:
        f.seek(offset)
        return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]


def write_field(path, offset: int, fmt: str, value: int) -> None:
    """Store ``value`` at ``offset``, wrapped to the field's width (so -1 is all ones)."""
    size = struct.calcsize(fmt)
    raw = (value % (1 << (8 * size))).to_bytes(size, "little")
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(raw)


def set_ehdr(path, field: str, value: int) -> None:
    write_field(path, *EHDR[field], value)


def phdrs(path) -> list[dict]:
    """The program headers of an ELF64 file: index, file position and every field."""
    phoff = read_field(path, *EHDR["e_phoff"])
    phnum = read_field(path, *EHDR["e_phnum"])
    with open(path, "rb") as f:
        f.seek(phoff)
        raw = f.read(56 * phnum)
    out = []
    for i in range(phnum):
        ph = {"index": i, "at": phoff + 56 * i}
        for name, (off, fmt) in PHDR.items():
            ph[name] = struct.unpack_from(fmt, raw, 56 * i + off)[0]
        out.append(ph)
    return out


def set_phdr(path, ph: dict, field: str, value: int) -> None:
    off, fmt = PHDR[field]
    write_field(path, ph["at"] + off, fmt, value)


def first(path, p_type: int) -> dict:
    return next(ph for ph in phdrs(path) if ph["p_type"] == p_type)


def _notes(data: bytes) -> list[tuple[bytes, int, bytes]]:
    out, pos = [], 0
    while pos + 12 <= len(data):
        namesz, descsz, ntype = struct.unpack_from("<III", data, pos)
        if not (namesz or descsz or ntype):
            break
        name = data[pos + 12 : pos + 12 + namesz]
        desc_off = pos + 12 + (namesz + 3) // 4 * 4
        out.append((name, ntype, data[desc_off : desc_off + descsz]))
        pos = desc_off + (descsz + 3) // 4 * 4
    return out


def _note(name: bytes, ntype: int, desc: bytes) -> bytes:
    pad = lambda b: b + bytes(-len(b) % 4)  # noqa: E731
    return struct.pack("<III", len(name), len(desc), ntype) + pad(name) + pad(desc)


def vmcoreinfo(path) -> dict[str, str]:
    """The VMCOREINFO of an ELF vmcore, as ordered ``KEY -> value`` text."""
    note = first(path, PT_NOTE)
    with open(path, "rb") as f:
        f.seek(note["p_offset"])
        data = f.read(note["p_filesz"])
    text = next(d for n, _t, d in _notes(data) if n.rstrip(b"\0") == b"VMCOREINFO")
    out = {}
    for line in text.decode("ascii", "replace").split("\n"):
        if "=" in line:
            k, _, v = line.partition("=")
            out.setdefault(k, v)
    return out


def set_vmcoreinfo(path, key: str, value: str | None) -> None:
    """Give ``key`` the text ``value`` (None: remove it), in an ELF vmcore's VMCOREINFO.

    The new PT_NOTE contents go at the end of the file (4 KiB aligned), with p_offset and
    p_filesz pointed there: everything else stays where it was."""
    update_vmcoreinfo(path, {key: value})


def update_vmcoreinfo(path, values: dict[str, str | None]) -> None:
    """``set_vmcoreinfo`` of several keys at once."""
    note = first(path, PT_NOTE)
    with open(path, "rb") as f:
        f.seek(note["p_offset"])
        data = f.read(note["p_filesz"])
    out = b""
    for name, ntype, desc in _notes(data):
        if name.rstrip(b"\0") == b"VMCOREINFO":
            lines = desc.rstrip(b"\0").decode("ascii", "replace").split("\n")
            kept = [ln for ln in lines if ln and ln.partition("=")[0] not in values]
            kept += [f"{k}={v}" for k, v in values.items() if v is not None]
            desc = ("\n".join(kept) + "\n").encode("ascii", "replace")
        out += _note(name, ntype, desc)
    size = os.path.getsize(path)
    at = -(-size // 4096) * 4096
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(out)
    set_phdr(path, note, "p_offset", at)
    set_phdr(path, note, "p_filesz", len(out))
    set_phdr(path, note, "p_memsz", len(out))


def write_phys(path, pa: int, data: bytes) -> None:
    """Write ``data`` at physical address ``pa`` of an ELF vmcore (inside one PT_LOAD)."""
    for ph in phdrs(path):
        if ph["p_type"] == PT_LOAD and ph["p_paddr"] <= pa < ph["p_paddr"] + ph["p_filesz"]:
            assert pa + len(data) <= ph["p_paddr"] + ph["p_filesz"]
            with open(path, "r+b") as f:
                f.seek(ph["p_offset"] + pa - ph["p_paddr"])
                f.write(data)
            return
    raise ValueError(f"physical {pa:#x} is not in the file")


def set_kdump(path, field: str, value: int) -> None:
    write_field(path, *(KDUMP_HEADER.get(field) or KDUMP_SUB[field]), value)


def kdump_layout(path) -> dict:
    """Offsets of a kdump-compressed file's bitmaps and descriptor table."""
    bs = read_field(path, *KDUMP_HEADER["block_size"])
    sub = read_field(path, *KDUMP_HEADER["sub_hdr_size"])
    blocks = read_field(path, *KDUMP_HEADER["bitmap_blocks"])
    bm = (1 + sub) * bs
    return {"bitmap1": bm, "bitmap2": bm + blocks * bs // 2, "desc": bm + blocks * bs}


def flat_records(stream: bytes) -> list[tuple[int, int, int]]:
    """``(position of the record header, offset, size)`` of each record of a flattened
    stream, up to and without its end marker."""
    out, pos = [], 4096
    while pos + 16 <= len(stream):
        off, size = struct.unpack_from(">qq", stream, pos)
        if off == -1 and size == -1:
            break
        out.append((pos, off, size))
        pos += 16 + size
    return out


END_MARKER = struct.pack(">qq", -1, -1)
