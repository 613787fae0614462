"""Independent readers the end-to-end tests use as oracles (nothing here imports dumpfilter).

- ``RawVmcore``: the raw /proc/vmcore copy, an ELF64 core: pages by PFN through its PT_LOADs.
- ``kdump_bitmap2``: the 2nd ("dumpable") bitmap of a kdump-compressed file, as a bool array;
  layout from docs/kdump-compressed.md §1 (header block, sub header blocks, then the
  1st and 2nd bitmaps of equal size, bit ``pfn % 8`` of byte ``pfn // 8``).
- ``KPF``: /proc/kpageflags bit numbers (include/uapi/linux/kernel-page-flags.h).
- ``readback_libkdumpfile``, ``readback_drgn``: a dump read back page by page by Debian's
  libkdumpfile and by drgn, against the raw vmcore of the same crash.
"""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path

import numpy as np

PAGE = 4096
HERE = Path(__file__).resolve().parent
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's python3-libkdumpfile lives there


class KPF:
    """Bit numbers of /proc/kpageflags (uapi kernel-page-flags.h; stable ABI)."""

    LRU = 5
    SLAB = 7
    BUDDY = 10
    ANON = 12
    SWAPCACHE = 13
    COMPOUND_HEAD = 15
    COMPOUND_TAIL = 16
    HUGE = 17
    NOPAGE = 20
    THP = 22
    OFFLINE = 23


def kpageflags(path: Path) -> np.ndarray:
    """One uint64 of flags per PFN, index = PFN."""
    return np.fromfile(path, dtype="<u8")


def has(flags: np.ndarray, bit: int) -> np.ndarray:
    return (flags >> np.uint64(bit)) & np.uint64(1) == 1


class RawVmcore:
    """Read-only view of an ELF64 vmcore: PT_LOAD segments mapped with numpy.memmap."""

    def __init__(self, path: Path):
        self.path = Path(path)
        with open(path, "rb") as f:
            eh = f.read(64)
            if eh[:4] != b"\x7fELF" or eh[4] != 2:
                raise ValueError(f"{path}: not an ELF64 core")
            (phoff,) = struct.unpack_from("<Q", eh, 32)
            phentsize, phnum = struct.unpack_from("<HH", eh, 54)
            f.seek(phoff)
            ph = f.read(phentsize * phnum)
        self.mm = np.memmap(path, dtype=np.uint8, mode="r")
        # (start_pfn, end_pfn, file offset of start_pfn's first byte, paddr start, paddr end).
        # A PT_LOAD may start or end inside a page (e.g. 6.1's 0x1000-0x9fc00): that page is
        # RAM too and its bytes outside the segment read as zeros, as the dump writers do.
        self.loads: list[tuple[int, int, int, int, int]] = []
        for i in range(phnum):
            p_type, _fl, off, _va, pa, filesz, _memsz, _al = struct.unpack_from(
                "<IIQQQQQQ", ph, i * phentsize
            )
            if p_type == 1 and filesz:
                end = pa + filesz
                self.loads.append((pa // PAGE, -(-end // PAGE), off - pa % PAGE, pa, end))
        self.max_pfn = max(e for _s, e, *_ in self.loads)

    def ram(self, partial: bool = True) -> np.ndarray:
        """Bool per PFN in [0, max_pfn): inside some PT_LOAD; ``partial=False`` leaves out
        pages a PT_LOAD covers only in part."""
        r = np.zeros(self.max_pfn, dtype=bool)
        for s, e, _off, pa0, pa1 in self.loads:
            if partial:
                r[s:e] = True
            else:
                r[-(-pa0 // PAGE) : pa1 // PAGE] = True
        return r

    def pages(self, pfn: int, count: int) -> np.ndarray:
        """(count, PAGE) contents of contiguous RAM pages (must lie in one PT_LOAD); a view
        unless the range touches a partial page at a segment edge."""
        for s, e, off, pa0, pa1 in self.loads:
            if s <= pfn and pfn + count <= e:
                base = off + (pfn - s) * PAGE
                lo, hi = pfn * PAGE, (pfn + count) * PAGE
                if pa0 <= lo and hi <= pa1:
                    return self.mm[base : base + count * PAGE].reshape(count, PAGE)
                out = np.zeros(count * PAGE, dtype=np.uint8)
                a, b = max(lo, pa0), min(hi, pa1)
                out[a - lo : b - lo] = self.mm[base + a - lo : base + b - lo]
                return out.reshape(count, PAGE)
        raise ValueError(f"pfns {pfn}+{count} not inside one PT_LOAD")

    def runs(self, mask: np.ndarray) -> list[tuple[int, int]]:
        """(pfn, count) runs of True in ``mask``, split at PT_LOAD boundaries."""
        cuts = np.zeros(len(mask), dtype=bool)
        for s, *_ in self.loads:
            if s < len(mask):
                cuts[s] = True
        m = mask.astype(np.int8)
        edges = np.flatnonzero(np.diff(np.concatenate(([0], m, [0]))) != 0)
        out = []
        for a, b in zip(edges[::2], edges[1::2], strict=True):
            inner = np.flatnonzero(cuts[a + 1 : b]) + a + 1
            bounds = [a, *inner.tolist(), b]
            out += [(int(x), int(y - x)) for x, y in zip(bounds, bounds[1:], strict=False)]
        return out


def kdump_header(path: Path) -> dict:
    """The fields of struct disk_dump_header / kdump_sub_header the tests need."""
    with open(path, "rb") as f:
        h = f.read(464)
        f.seek(4096)
        sub = f.read(104)
    if h[:8] != b"KDUMP   ":
        raise ValueError(f"{path}: no KDUMP signature")
    (version,) = struct.unpack_from("<i", h, 8)
    release = h[12 + 2 * 65 : 12 + 3 * 65].split(b"\0")[0].decode()
    status, block_size, sub_hdr_size, bitmap_blocks, max_mapnr = struct.unpack_from(
        "<IiiII", h, 424
    )
    (dump_level,) = struct.unpack_from("<I", sub, 8)
    if version >= 6:
        (max_mapnr,) = struct.unpack_from("<Q", sub, 96)  # max_mapnr_64 (header v6)
    return {
        "version": version,
        "release": release,
        "status": status,
        "block_size": block_size,
        "sub_hdr_size": sub_hdr_size,
        "bitmap_blocks": bitmap_blocks,
        "max_mapnr": max_mapnr,
        "dump_level": dump_level,
    }


def kdump_bitmap1(path: Path) -> np.ndarray:
    """The 1st bitmap (RAM: inside some PT_LOAD of the input) as bool per PFN."""
    return _bitmap(path, 0)


def kdump_bitmap2(path: Path) -> np.ndarray:
    """The 2nd bitmap (pages present in the file) as bool per PFN in [0, max_mapnr)."""
    return _bitmap(path, 1)


def _bitmap(path: Path, which: int) -> np.ndarray:
    h = kdump_header(path)
    bs = h["block_size"]
    half = h["bitmap_blocks"] * bs // 2
    start = (1 + h["sub_hdr_size"]) * bs + which * half
    raw = np.fromfile(path, dtype=np.uint8, count=half, offset=start)
    return np.unpackbits(raw, bitorder="little")[: h["max_mapnr"]].astype(bool)


def readback_libkdumpfile(
    dump: Path, raw: RawVmcore, kept: np.ndarray, excluded: np.ndarray, workdir: Path
) -> None:
    """Debian's libkdumpfile (readback_kdumpfile.py, run by Debian's python3) opens ``dump``
    as a kdump-compressed file, reads every ``kept`` page as the raw vmcore has it and finds
    no probed ``excluded`` page; AssertionError saying which pages if not."""
    runs = Path(workdir) / "runs.json"
    runs.write_text(json.dumps({"kept": raw.runs(kept), "excluded": raw.runs(excluded)}))
    p = subprocess.run(
        [SYSTEM_PYTHON, str(HERE / "readback_kdumpfile.py"), str(dump), str(raw.path), str(runs)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if p.returncode != 0:
        raise AssertionError(f"libkdumpfile read-back of {dump} failed:\n{p.stderr[-3000:]}")
    res = json.loads(p.stdout)
    assert res["format"] == "diskdump"
    assert res["kept_pages"] == int(kept.sum()) > 0
    assert res["bad_kept"] == [], f"kept pages that read back wrong: {res['bad_kept'][:20]}"
    assert res["excluded_checked"] > 0
    assert res["excluded_present"] == [], (
        f"excluded pages readable from the dump: {res['excluded_present'][:20]}"
    )


def readback_drgn(dump: Path, raw: RawVmcore, kept: np.ndarray, excluded: np.ndarray) -> None:
    """drgn reads every ``kept`` page of ``dump`` as the raw vmcore has it and faults on the
    first page of (up to 500) ``excluded`` runs; AssertionError naming the first PFN if not."""
    import drgn

    prog = drgn.Program()
    prog.set_core_dump(str(dump))
    for pfn, count in raw.runs(kept):
        got = np.frombuffer(prog.read(pfn * PAGE, count * PAGE, True), dtype=np.uint8)
        want = raw.pages(pfn, count).reshape(-1)
        if not np.array_equal(got, want):
            bad = np.flatnonzero((got != want).reshape(count, PAGE).any(axis=1))
            raise AssertionError(f"drgn reads pfn {pfn + int(bad[0])} differently from the vmcore")
    probes = [pfn for pfn, _count in raw.runs(excluded)][:500]
    readable = []
    for pfn in probes:
        try:
            prog.read(pfn * PAGE, PAGE, True)
            readable.append(pfn)
        except drgn.FaultError:
            pass
    assert probes and readable == [], f"excluded pfns readable through drgn: {readable[:20]}"
