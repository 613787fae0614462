"""Fakes and helpers the tests share (no test module imports another one).

- a small ELF vmcore built here (``build_vmcore``) and the contracts of ``dumpfilter.contracts``
  over it: ``FakeSource``, ``FakeClassification``, ``FakeStats``, and ``write`` through
  ``write.write_dump``;
- readers nobody here wrote (drgn, python3-libkdumpfile) run in subprocesses: ``read_with``;
- ``Kdump``: a kdump-compressed file parsed by the tests through ``dumpfilter.kdumpformat``;
- ``enc_for``: the page-type encoding of a synthetic kernel family;
- ``cache_dir`` and ``cached_vmcores``: the real vmcores the QEMU harness cached.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import synthvmcore as sv

from dumpfilter import elfnotes
from dumpfilter.compress import decompress
from dumpfilter.contracts import WriteOptions
from dumpfilter.kdumpformat import PAGE_DESC, Header, SubHeader
from dumpfilter.pageclass import PageClass
from dumpfilter.pagetypes import detect
from dumpfilter.vmcoreinfo import VmcoreInfo

PS = 4096


SYS_PY = "/usr/bin/python3"


def _note(name: bytes, ntype: int, desc: bytes) -> bytes:
    def pad(b: bytes) -> bytes:
        return b + bytes(-len(b) % 4)

    return struct.pack("<III", len(name) + 1, len(desc), ntype) + pad(name + b"\0") + pad(desc)


def vmcoreinfo_text(release: str = "6.1.0-dumpfilter-test", extra: str = "") -> bytes:
    return (
        f"OSRELEASE={release}\nPAGESIZE=4096\nSYMBOL(swapper_pg_dir)=ffffffff8260a000\n"
        "SYMBOL(init_uts_ns)=ffffffff82616440\nNUMBER(pgtable_l5_enabled)=0\n"
        "NUMBER(phys_base)=0\nKERNELOFFSET=0\nCRASHTIME=1700000000\n" + extra
    ).encode()


def build_vmcore(
    path: Path,
    ranges: list[tuple[int, int]],
    seed: int = 1,
    ncpu: int = 2,
    *,
    release: str = "6.1.0-dumpfilter-test",
    extra_vmcoreinfo: str = "",
    pokes: dict[int, bytes] | None = None,
) -> bytes:
    """An ELF64 x86_64 core with one PT_LOAD per PFN range; returns the notes segment.

    ``pokes``: physical address -> bytes written over the generated contents.
    """
    rng = np.random.default_rng(seed)
    notes = b"".join(_note(b"CORE", 1, bytes(336)) for _ in range(ncpu))
    notes += _note(b"VMCOREINFO", 0, vmcoreinfo_text(release, extra_vmcoreinfo))
    nph = 1 + len(ranges)
    off = 64 + 56 * nph
    note_off = off
    data_off = (note_off + len(notes) + PS - 1) // PS * PS
    ehdr = struct.pack(
        "<16sHHIQQQIHHHHHH",
        b"\x7fELF\x02\x01\x01" + bytes(9),
        4,
        62,
        1,
        0,
        64,
        0,
        0,
        64,
        56,
        nph,
        0,
        0,
        0,
    )
    phdrs = [struct.pack("<IIQQQQQQ", 4, 0, note_off, 0, 0, len(notes), len(notes), 0)]
    pos = data_off
    for s, e in ranges:
        size = (e - s) * PS
        phdrs.append(
            struct.pack("<IIQQQQQQ", 1, 7, pos, 0xFFFF888000000000 + s * PS, s * PS, size, size, 0)
        )
        pos += size
    with open(path, "wb") as f:
        f.write(ehdr + b"".join(phdrs) + notes)
        f.seek(data_off)
        for s, e in ranges:
            n = e - s
            pages = np.zeros((n, PS), dtype=np.uint8)
            kind = rng.integers(0, 4, n)  # 0 zero, 1 random, 2 text, 3 sparse
            rnd = kind == 1
            pages[rnd] = rng.integers(0, 256, (int(rnd.sum()), PS), dtype=np.uint8)
            txt = np.flatnonzero(kind == 2)
            for i in txt:
                pages[i] = np.frombuffer((f"page {s + i} text " * 400).encode()[:PS], np.uint8)
            sp = np.flatnonzero(kind == 3)
            pages[sp, 7] = 1 + (sp % 200).astype(np.uint8)
            flat = pages.reshape(-1)
            for pa, data in (pokes or {}).items():
                if s * PS <= pa and pa + len(data) <= e * PS:
                    flat[pa - s * PS : pa - s * PS + len(data)] = np.frombuffer(data, np.uint8)
            f.write(pages.tobytes())
    return notes


@dataclass
class _Seg:
    paddr: int
    vaddr: int
    offset: int
    filesz: int
    memsz: int
    flags: int = 7


class FakeSource:
    """Just enough of the Source contract (ARCHITECTURE.md) over the ELF built above."""

    kind = "elf"
    page_size = PS
    incomplete = False

    def __init__(self, path: Path):
        self.path = str(path)
        self._f = open(path, "rb")
        self._mm = mmap.mmap(self._f.fileno(), 0, access=mmap.ACCESS_READ)
        self.ehdr = self._mm[:64]
        phnum = struct.unpack_from("<H", self.ehdr, 56)[0]
        self.loads: list[_Seg] = []
        for i in range(phnum):
            t, fl, off, va, pa, fs, ms, _al = struct.unpack_from("<IIQQQQQQ", self._mm, 64 + 56 * i)
            if t == 4:
                self.notes = self._mm[off : off + fs]
            elif t == 1:
                self.loads.append(_Seg(pa, va, off, fs, ms, fl))
        spans = sorted((s.paddr // PS, (s.paddr + s.filesz) // PS) for s in self.loads)
        self.ram_ranges: list[tuple[int, int]] = []
        for a, b in spans:  # merged: the kernel-text PT_LOAD lies inside a RAM one
            if self.ram_ranges and a <= self.ram_ranges[-1][1]:
                self.ram_ranges[-1] = (self.ram_ranges[-1][0], max(b, self.ram_ranges[-1][1]))
            else:
                self.ram_ranges.append((a, b))
        self.max_pfn = self.ram_ranges[-1][1]
        self.nr_cpus = self.notes.count(b"CORE\0")  # NT_PRSTATUS notes are named CORE
        self.vmcoreinfo = VmcoreInfo.parse(elfnotes.vmcoreinfo_text(bytes(self.notes)) or b"")
        self.elf_class = 64
        self._buf = np.frombuffer(self._mm, dtype=np.uint8)

    def read_pages(self, pfn: int, count: int) -> np.ndarray:
        for s in self.loads:
            a = s.paddr // PS
            if a <= pfn and pfn + count <= a + s.filesz // PS:
                o = s.offset + (pfn - a) * PS
                return self._buf[o : o + count * PS].reshape(count, PS)
        raise AssertionError(f"read_pages({pfn}, {count}) crosses a hole")

    def is_dumpable(self, start: int, end: int):
        return None

    def close(self) -> None:
        # Views handed out may still be alive; the mapping goes when the last one does.
        del self._buf
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


@dataclass
class FakeClassification:
    """The ``Classification`` contract over a fixed class array."""

    classes: np.ndarray
    scan: str = "userspace"
    window_calls: list = field(default_factory=list)
    nodata: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    prepare_seconds: float = 0.0

    def describe(self) -> list[str]:
        return []

    @property
    def max_pfn(self) -> int:
        return len(self.classes)

    def windows(self, size=None):
        size = size or 4096
        self.window_calls.append(size)
        for s in range(0, len(self.classes), size):
            yield s, self.classes[s : s + size]


def random_classes(ranges, max_pfn: int, seed: int = 2, long_runs: bool = True) -> np.ndarray:
    """Random verdicts for RAM, HOLE elsewhere; with some long excluded runs (ELF segments)."""
    rng = np.random.default_rng(seed)
    c = np.full(max_pfn, PageClass.HOLE, dtype=np.uint8)
    for s, e in ranges:
        c[s:e] = rng.choice([0, 0, 0, 1, 2, 3, 4, 5, 6], e - s)
        if long_runs and e - s > 900:
            c[s + 100 : s + 400] = PageClass.FREE  # 300 free pages: a gap in ELF output
            c[e - 300 : e] = PageClass.USER  # excluded tail of the range
    return c


class FakeStats:
    """The ``WriteStats`` contract: what a writer reports."""

    def __init__(self) -> None:
        self.zero = 0
        self.written_bytes = 0
        self.uncounted_bytes = 0
        self.elf_pages: int | None = None

    def add_zero(self, n: int) -> None:
        self.zero += n


RANGES = [(0, 160), (256, 1800)]


def expected_pages(vmcore: Path, classes: np.ndarray, dump_level: int):
    """(pfn -> bytes) of the pages that must be present, and the set of absent pfns."""
    from dumpfilter.dumplevel import DumpLevel

    keep = DumpLevel(dump_level).keep_table()[classes]
    with FakeSource(vmcore) as src:
        present: dict[int, bytes] = {}
        for s, e in src.ram_ranges:
            pages = src.read_pages(s, e - s)
            for i in np.flatnonzero(keep[s:e]).tolist():
                data = pages[i].tobytes()
                if dump_level & 1 and not any(data):
                    continue
                present[s + i] = data
    absent = set(range(len(classes))) - set(present)
    return present, absent


def write(vmcore: Path, out: Path | None, classes: np.ndarray, **kw) -> FakeStats:
    from dumpfilter import write as w

    stats = FakeStats()
    with FakeSource(vmcore) as src:
        w.write_dump(src, FakeClassification(classes), WriteOptions(dumpfile=str(out), **kw), stats)
    return stats


DRGN_READER = r"""
import json, sys, drgn
path, pfns = sys.argv[1], json.loads(sys.argv[2])
prog = drgn.Program()
prog.set_core_dump(path)
out = {}
for pfn in pfns:
    try:
        out[pfn] = prog.read(pfn * 4096, 4096, True).hex()
    except drgn.FaultError:
        out[pfn] = None
print(json.dumps({"pages": out, "release": prog["UTS_RELEASE"].string_().decode()}))
"""


KDUMPFILE_READER = r"""
import json, sys, kdumpfile
path, pfns = sys.argv[1], json.loads(sys.argv[2])
k = kdumpfile.kdumpfile(path)
k.attr["addrxlat.ostype"] = "linux"
out = {}
for pfn in pfns:
    try:
        out[pfn] = k.read(kdumpfile.KDUMP_MACHPHYSADDR, pfn * 4096, 4096).hex()
    except Exception:
        out[pfn] = None
print(json.dumps({"pages": out, "vmcoreinfo": bytes(k.attr["linux.vmcoreinfo.raw"]).decode()}))
"""


def read_with(python: str, script: str, path: Path, pfns: list[int]) -> dict:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    r = subprocess.run(
        [python, "-c", script, str(path), json.dumps(pfns)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def check_pages(result: dict, present: dict[int, bytes], absent: set[int]) -> None:
    pages = {int(k): v for k, v in result["pages"].items()}
    wrong = [p for p, d in present.items() if pages[p] is None or bytes.fromhex(pages[p]) != d]
    assert not wrong, f"{len(wrong)} kept pages differ, first pfn {wrong[:5]}"
    leaked = [p for p in absent if pages[p] is not None and any(bytes.fromhex(pages[p]))]
    assert not leaked, f"{len(leaked)} excluded pages readable with data, first {leaked[:5]}"


def _have_kdumpfile() -> bool:
    return (
        os.path.exists(SYS_PY)
        and subprocess.run([SYS_PY, "-c", "import kdumpfile"], capture_output=True).returncode == 0
    )


@dataclass
class Kdump:
    """A parsed kdump-compressed file (test-side reader, written from the format reference)."""

    raw: bytes

    def __post_init__(self) -> None:
        h = self.raw
        assert h[:8] == b"KDUMP   "
        hdr = Header.unpack(h)
        self.version = hdr.header_version
        self.release = hdr.utsname_release.split(b"\0")[0].decode()
        self.machine = hdr.utsname_machine.split(b"\0")[0].decode()
        self.tv_sec, self.tv_usec = hdr.timestamp_sec, hdr.timestamp_usec
        self.status, self.block_size = hdr.status, hdr.block_size
        self.sub_hdr_size, self.bitmap_blocks = hdr.sub_hdr_size, hdr.bitmap_blocks
        self.max_mapnr32, self.nr_cpus = hdr.max_mapnr, hdr.nr_cpus
        bs = self.block_size
        sub = SubHeader.unpack(h, bs)
        self.phys_base, self.dump_level = sub.phys_base, sub.dump_level
        self.off_vmcoreinfo, self.size_vmcoreinfo = sub.offset_vmcoreinfo, sub.size_vmcoreinfo
        self.off_note, self.size_note = sub.offset_note, sub.size_note
        self.max_mapnr = sub.max_mapnr_64
        blen = self.bitmap_blocks * bs // 2
        b1 = (1 + self.sub_hdr_size) * bs
        self.bitmap1 = h[b1 : b1 + blen]
        self.bitmap2 = h[b1 + blen : b1 + 2 * blen]
        self.dumpable = np.unpackbits(np.frombuffer(self.bitmap2, np.uint8), bitorder="little")[
            : self.max_mapnr
        ].astype(bool)
        n = int(self.dumpable.sum())
        self.desc_off = b1 + 2 * blen
        self.descs = np.frombuffer(h, PAGE_DESC, n, self.desc_off)
        self.data_off = self.desc_off + PAGE_DESC.itemsize * n

    def page(self, pfn: int, codec: str | None = None) -> bytes:
        i = int(self.dumpable[:pfn].sum())
        d = self.descs[i]
        blob = self.raw[int(d["offset"]) : int(d["offset"]) + int(d["size"])]
        return decompress(codec, blob, self.block_size) if d["flags"] else blob


def enc_for(kernel: str, **kw):
    return detect(VmcoreInfo.parse(sv.vmcoreinfo_text(kernel, **kw))), sv.family(kernel)


def cache_dir() -> Path:
    """The cache the QEMU harness and the benchmarks fill ($DUMPFILTER_CACHE)."""
    return Path(os.environ.get("DUMPFILTER_CACHE") or Path.home() / ".cache" / "dumpfilter")


def cached_vmcores(release: str = "", *, with_makedumpfile: bool = False) -> list[Path]:
    """One raw vmcore per kernel release (the newest), from finished kdump cycles of the
    QEMU harness whose console showed the sysrq panic (their cycle.json) and whose vmcore is
    whole; fault-injection cycles and cycles without a raw copy are left out.

    ``release``: only kernel releases starting with it ("6.1." for the 6.1 kernels).
    ``with_makedumpfile``: only cycles that also kept makedumpfile's ``-d 31`` output
    (``mdf31.kdump`` next to the vmcore)."""
    cycles = cache_dir() / "cycles"
    if not cycles.is_dir():
        return []
    per_release: dict[str, Path] = {}
    for d in sorted(cycles.iterdir(), key=lambda d: -d.stat().st_mtime_ns):
        vmcore = d / "vmcore"
        try:
            meta = json.loads((d / "cycle.json").read_text())
        except (OSError, ValueError):
            continue
        name = str(meta.get("release"))
        if not name.startswith(release) or "sysrq triggered crash" not in str(meta.get("panic")):
            continue
        if with_makedumpfile and not (d / "mdf31.kdump").is_file():
            continue
        if os.access(vmcore, os.R_OK) and vmcore.stat().st_size == meta.get(
            "vmcore_size", vmcore.stat().st_size
        ):
            per_release.setdefault(name, vmcore)
    return sorted(per_release.values())
