"""A bounded fuzz campaign: structured damage to ELF vmcores, to kdump-compressed files
dumpfilter made from them and to flattened streams.

Every run must end in success (exit 0) or in exactly one error line and exit 1 (no
traceback, no "internal error" from the last-resort handler, which would mean a value went
unchecked), within a time limit, and never leave a final-named output that is cut short
without its incomplete mark.  The seed is fixed; ``DUMPFILTER_FUZZ_CASES`` (damaged inputs
per kind, default 20) and ``DUMPFILTER_FUZZ_SEED`` make longer or other runs.

Each run forks this process and calls ``cli.main`` in the child with real file descriptors
0, 1 and 2, so a run costs no interpreter start-up; a run past the time limit is killed and
reported as a hang.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import signal
import struct
import sys
import time
import traceback

import dumpdamage as dd
import numpy as np
import pytest

CASES = int(os.environ.get("DUMPFILTER_FUZZ_CASES", "20"))
SEED = int(os.environ.get("DUMPFILTER_FUZZ_SEED", "16"))
TIMEOUT = float(os.environ.get("DUMPFILTER_FUZZ_TIMEOUT", "120"))
MODES = (
    ("--dry-run", "-d", "31"),
    ("-c", "-d", "31"),
    ("-E", "-d", "31"),
    ("--dump-dmesg",),
)
BAD_TEXT = ["", "zz", "9" * 29, "-1", "-24", "0", "1", "45", "64", "4096", "65536",
            str(1 << 40), str(1 << 63), "0xffffffffffffffff", "ffffffffffff0000"]  # fmt: skip


@pytest.fixture(scope="module")
def small(synth_factory, tmp_path_factory):
    """A 96 MiB 6.1 vmcore with a kernel log: a lockless printk ring in free RAM, found
    through the VMCOREINFO keys 6.1 exports for it."""
    from printk_ring import VMCOREINFO_61, Ring

    s = synth_factory(kernel="6.1", ram=[(1, 0x9F), (0x100, 0x6000)])
    path = str(tmp_path_factory.mktemp("fuzzlog") / "vmcore")
    dd.sparse_copy(s.path, path)
    ring = Ring(count_bits=5, size_bits=12)
    for i in range(40):
        ring.add(b"fuzz: line %d of the kernel log" % i, 1_000_000 * i)
    pa = 0x5F00 << 12  # four pages the synthetic dump leaves unused
    assert not s.pages(0x5F00, 4).any() and not dd_touched(s, 0x5F00, 4)
    va = s.page_offset + pa
    rb = bytearray(88)
    struct.pack_into("<IxxxxQQQQ", rb, 0, 5, va + 0x1000, va + 0x2000, ring.head_id, ring.tail_id)
    struct.pack_into("<IxxxxQQQ", rb, 48, 12, va + 0x3000, ring.head_lpos, 0)
    dd.write_phys(path, pa, struct.pack("<Q", va + 0x100) + bytes(0x100 - 8) + bytes(rb))
    for off, blob in ((0x1000, ring.descs), (0x2000, ring.infos), (0x3000, ring.data)):
        dd.write_phys(path, pa + off, bytes(blob))
    keys = {k: v for k, v in VMCOREINFO_61.items() if not k.startswith("SYMBOL(")}
    dd.update_vmcoreinfo(path, {**keys, "SYMBOL(prb)": f"{va:x}"})
    s = dataclasses.replace(s, path=path)
    d = tmp_path_factory.mktemp("fuzzlog")
    r = run(["--dump-dmesg", path, str(d / "log")], str(d))
    assert r[0] == 0, r[1]
    return s


def dd_touched(s, pfn: int, count: int) -> bool:
    from synthvmcore import _touched

    return _touched(s, pfn, count)


def _child(argv: list[str], stdin: str | None, err: str, stdout: str | None = None) -> None:
    try:
        fd = os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 2)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(os.open(stdout, os.O_WRONLY | os.O_CREAT | os.O_TRUNC) if stdout else null, 1)
        os.dup2(os.open(stdin, os.O_RDONLY) if stdin else null, 0)
        sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)))
        sys.stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)))
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), write_through=True)
        from dumpfilter import cli

        rc = cli.main(argv)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    except SystemExit as e:
        os._exit(e.code if isinstance(e.code, int) else 1)
    except BaseException:
        try:
            os.write(2, traceback.format_exc().encode())
        finally:
            os._exit(99)


def run(argv: list[str], workdir, stdin: str | None = None) -> tuple[int | None, str]:
    """(exit status or None after a hang, stderr) of ``dumpfilter argv`` in a fork."""
    err = os.path.join(workdir, "stderr")
    pid = os.fork()
    if pid == 0:
        _child([str(a) for a in argv], stdin, err)
    deadline = time.monotonic() + TIMEOUT
    status = None
    while time.monotonic() < deadline:
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = os.waitstatus_to_exitcode(st)
            break
        time.sleep(0.005)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    with open(err, errors="replace") as f:
        return status, f.read()


def _whole_or_marked(path: str) -> str | None:
    """Why the output under its final name is not a usable dump, or None.

    A dump must open (headers inside the file) and its descriptors or segments must lie
    inside the file, unless it carries its incomplete mark."""
    from dumpfilter import flat, source
    from dumpfilter.errors import DumpError

    try:
        with source.open_source(path) as src:
            marked = getattr(src, "incomplete", False)
    except DumpError as e:
        return f"output does not open: {e}"
    size = os.path.getsize(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        lacks = flat._missing(fd, flat._Written([(0, size)]))
    finally:
        os.close(fd)
    if lacks and not marked:
        return f"output lacks its {lacks} and is not marked incomplete"
    return None


def check(argv, out: str | None, workdir, stdin: str | None = None) -> str | None:
    """Run once; what went wrong, or None."""
    rc, err = run(argv, workdir, stdin)
    lines = err.splitlines()
    if rc is None:
        return f"hang (> {TIMEOUT:.0f} s)"
    if "Traceback" in err or "internal error" in err or "Fatal Python" in err:
        return f"exit {rc}: {err[-600:]}"
    if rc not in (0, 1):
        return f"exit {rc}: {err[-300:]}"
    if rc == 1 and len(lines) != 1:
        return f"exit 1 with {len(lines)} stderr lines: {err[-300:]}"
    if out is None or not os.path.exists(out):
        return "exit 0 without output" if rc == 0 and out and "--dry-run" not in argv else None
    if "--dump-dmesg" in argv:
        return "a failed --dump-dmesg left its output" if rc == 1 else None
    if rc == 1 and "marked incomplete" not in err:
        return "a failed run left an output it does not call incomplete"
    with open(out, "rb") as f:
        magic = f.read(8)
    if argv[0] == "-R" and rc == 0 and magic[:4] != b"\x7fELF" and magic != b"KDUMP   ":
        return None  # records moved by the damage: -R rebuilds any file, as makedumpfile's
    return _whole_or_marked(out)


def _modes(path: str, workdir, what: str) -> list[str]:
    failures = []
    for mode in MODES:
        out = os.path.join(workdir, "out")
        if os.path.exists(out):
            os.unlink(out)
        argv = [*mode, path] + ([] if mode[0] == "--dry-run" else [out])
        why = check(argv, out, workdir)
        if why:
            failures.append(f"{what} | {' '.join(mode)}: {why}")
    return failures


# --- damage ---------------------------------------------------------------------------------


def _value(rng, orig: int, size: int, fmt: str) -> int:
    width = 8 * struct.calcsize(fmt)
    picks = [0, 1, -1, 1 << (width - 1), (1 << width) - 4096, 1 << min(40, width - 2),
             0xFFFF, size, size + 1, orig + 1, orig - 1, orig * 2, orig + 4096,
             int(rng.integers(0, 1 << min(width, 63)))]  # fmt: skip
    return picks[int(rng.integers(len(picks)))]


def _phys_to_file(path: str, pa: int) -> int | None:
    for ph in dd.phdrs(path):
        if ph["p_type"] == dd.PT_LOAD and ph["p_paddr"] <= pa < ph["p_paddr"] + ph["p_filesz"]:
            return ph["p_offset"] + pa - ph["p_paddr"]
    return None


# Kinds of damage, in turn (case number modulo the list): values read from the dump first.
ELF_KINDS = (2, 1, 0, 2, 3, 2, 4, 1, 2, 5)
KDUMP_KINDS = (0, 5, 3, 1, 2, 5, 4, 0, 3, 5)


def damage_elf(rng, path: str, synth, case: int, read_keys: list[str]) -> str:
    size = os.path.getsize(path)
    kind = ELF_KINDS[case % len(ELF_KINDS)]
    if kind == 0:
        field = list(dd.EHDR)[int(rng.integers(len(dd.EHDR)))]
        off, fmt = dd.EHDR[field]
        v = _value(rng, dd.read_field(path, off, fmt), size, fmt)
        dd.write_field(path, off, fmt, v)
        return f"ELF {field}={v:#x}"
    if kind == 1:
        hdrs = dd.phdrs(path)
        ph = hdrs[int(rng.integers(len(hdrs)))] if rng.random() < 0.5 else hdrs[0]  # PT_NOTE
        field = list(dd.PHDR)[int(rng.integers(len(dd.PHDR)))]
        fmt = dd.PHDR[field][1]
        v = _value(rng, ph[field], size, fmt)
        dd.set_phdr(path, ph, field, v)
        return f"phdr {ph['index']} {field}={v:#x}"
    if kind == 2:
        info = dd.vmcoreinfo(path)
        keys = read_keys if rng.random() < 0.8 else list(info)
        key = keys[int(rng.integers(len(keys)))]
        value = None if rng.random() < 0.1 else BAD_TEXT[int(rng.integers(len(BAD_TEXT)))]
        if value == "1" and info.get(key, "").lstrip("-").isdigit():  # near the true value
            value = str(int(info[key]) + int(rng.choice([-8, -1, 1, 8, 64])))
        dd.set_vmcoreinfo(path, key, value)
        return f"VMCOREINFO {key}={value!r}"
    if kind == 3:  # page tables, mem_section, struct pages, utsname: what the dump describes
        pa, data = synth.writes[int(rng.integers(len(synth.writes)))]
        n = int(rng.integers(1, 9))
        at = rng.integers(0, max(1, len(data) - 8), n) & ~7
        done = []
        for a in at.tolist():
            off = _phys_to_file(path, pa + a)
            if off is not None:
                v = _value(rng, 0, size, "<Q")
                dd.write_field(path, off, "<Q", v)
                done.append(f"{pa + a:#x}={v:#x}")
        return "metadata " + ",".join(done)
    if kind == 4:
        cut = int(rng.integers(0, size))
        os.truncate(path, cut)
        return f"truncated at {cut:#x}"
    # random bytes in the headers and notes
    note = dd.first(path, dd.PT_NOTE)
    end = note["p_offset"] + note["p_filesz"]
    n = int(rng.integers(1, 16))
    with open(path, "r+b") as f:
        for pos in rng.integers(0, end, n).tolist():
            f.seek(pos)
            f.write(bytes([int(rng.integers(256))]))
    return f"{n} random header bytes"


def damage_kdump(rng, path: str, case: int) -> str:
    size = os.path.getsize(path)
    kind = KDUMP_KINDS[case % len(KDUMP_KINDS)]
    fields = {**dd.KDUMP_HEADER, **dd.KDUMP_SUB}
    if kind in (0, 1):
        field = list(fields)[int(rng.integers(len(fields)))]
        off, fmt = fields[field]
        v = _value(rng, dd.read_field(path, off, fmt), size, fmt)
        dd.write_field(path, off, fmt, v)
        return f"kdump {field}={v:#x}"
    lay = dd.kdump_layout(path)
    if kind == 2:  # bitmap bytes
        n = int(rng.integers(1, 32))
        with open(path, "r+b") as f:
            for pos in rng.integers(lay["bitmap1"], lay["desc"], n).tolist():
                f.seek(pos)
                f.write(bytes([int(rng.integers(256))]))
        return f"{n} bitmap bytes"
    if kind == 3:  # descriptor offset / size / flags
        n_desc = max(1, (size - lay["desc"]) // 24 // 8)
        i = int(rng.integers(n_desc))
        field, (off, fmt) = [("offset", (0, "<q")), ("size", (8, "<I")), ("flags", (12, "<I"))][
            int(rng.integers(3))
        ]
        at = lay["desc"] + 24 * i + off
        v = _value(rng, dd.read_field(path, at, fmt), size, fmt)
        dd.write_field(path, at, fmt, v)
        return f"descriptor {i} {field}={v:#x}"
    if kind == 4:
        cut = int(rng.integers(0, size))
        os.truncate(path, cut)
        return f"truncated at {cut:#x}"
    # a VMCOREINFO value in the copied notes, same length
    data = open(path, "rb").read(lay["bitmap1"])
    lines = list(
        re.finditer(rb"\n((?:SIZE|OFFSET|LENGTH|NUMBER)\([^)]*\)|PAGESIZE)=([^\n]+)", data)
    )
    m = lines[int(rng.integers(len(lines)))]
    width = len(m.group(2))
    picks = [b"-" + b"9" * (width - 1), b"9" * width, b"0" * width, b"45".rjust(width, b"0")]
    picks.append(bytes(rng.choice(list(b"-0123456789abcdefx"), width).tolist()))
    new = picks[int(rng.integers(len(picks)))][:width]
    with open(path, "r+b") as f:
        f.seek(m.start(2))
        f.write(new)
    return f"kdump VMCOREINFO {m.group(1).decode()}={new.decode()}"


def damage_flat(rng, stream: bytes) -> tuple[bytes, str]:
    recs = dd.flat_records(stream)
    kind = int(rng.integers(4))
    if kind == 0:
        pos = recs[int(rng.integers(len(recs)))][0]
        return stream[:pos] + dd.END_MARKER, f"end marker at {pos:#x}"
    if kind == 1:
        cut = int(rng.integers(0, len(stream)))
        return stream[:cut], f"cut at {cut:#x}"
    if kind == 2:
        pos, off, size = recs[int(rng.integers(len(recs)))]
        which = int(rng.integers(2))
        v = _value(rng, (off, size)[which], len(stream), ">q")
        v = (v + (1 << 63)) % (1 << 64) - (1 << 63)
        out = bytearray(stream)
        struct.pack_into(">q", out, pos + 8 * which, v)
        return bytes(out), f"record at {pos:#x} {('offset', 'size')[which]}={v}"
    out = bytearray(stream)
    n = int(rng.integers(1, 64))
    for p in rng.integers(0, len(out), n).tolist():
        out[p] = int(rng.integers(256))
    return bytes(out), f"{n} random bytes"


# --- the campaign -----------------------------------------------------------------------------


def _report(failures: list[str]) -> str:
    return f"{len(failures)} failing run(s):\n" + "\n".join(failures[:40])


@pytest.fixture(scope="module")
def read_keys(small) -> list[str]:
    """The VMCOREINFO keys a run reads (scan and kernel log) from the undamaged vmcore:
    the values worth damaging most."""
    from unittest import mock

    from dumpfilter import dmesg, scan, source
    from dumpfilter.vmcoreinfo import VmcoreInfo

    seen: dict[str, None] = {}
    get = VmcoreInfo._get

    def spy(self, key):
        seen[key] = None
        return get(self, key)

    with mock.patch.object(VmcoreInfo, "_get", spy), source.open_source(small.path) as src:
        scan.userspace_scan(src, 31)
        dmesg.read_log(dmesg._virt_reader(src), dmesg._vmcoreinfo_mapping(src))
    assert len(seen) > 30
    return list(seen)


def test_damaged_elf_vmcores_fail_cleanly_or_succeed(small, read_keys, tmp_path):
    rng = np.random.default_rng(SEED)
    failures = []
    for case in range(CASES):
        path = str(tmp_path / "vmcore")
        dd.sparse_copy(small.path, path)
        what = f"elf case {case}: " + damage_elf(rng, path, small, case, read_keys)
        failures += _modes(path, tmp_path, what)
    assert not failures, _report(failures)


@pytest.fixture(scope="module")
def kdump_input(small, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("fuzz") / "d31")
    assert run(["-c", "-d", "31", small.path, out], os.path.dirname(out))[0] == 0
    return out


def test_damaged_kdump_inputs_fail_cleanly_or_succeed(kdump_input, tmp_path):
    rng = np.random.default_rng(SEED + 1)
    failures = []
    base = open(kdump_input, "rb").read()
    for case in range(CASES):
        path = str(tmp_path / "in")
        with open(path, "wb") as f:
            f.write(base)
        what = f"kdump case {case}: " + damage_kdump(rng, path, case)
        failures += _modes(path, tmp_path, what)
    assert not failures, _report(failures)


@pytest.fixture(scope="module")
def streams(small, tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzzflat")
    out = []
    for fmt in ("-c", "-E"):
        path = str(d / f"stream{fmt}")
        pid = os.fork()
        if pid == 0:  # -F writes to fd 1: the stream file
            _child(["-F", fmt, "-d", "31", small.path], None, str(d / "err"), stdout=path)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
        out.append(open(path, "rb").read())
    return out


def test_damaged_flattened_streams_rebuild_whole_or_marked(streams, tmp_path):
    rng = np.random.default_rng(SEED + 2)
    failures = []
    for case in range(CASES):
        stream, what = damage_flat(rng, streams[case % len(streams)])
        src = str(tmp_path / "stream")
        with open(src, "wb") as f:
            f.write(stream)
        out = str(tmp_path / "out")
        if os.path.exists(out):
            os.unlink(out)
        why = check(["-R", out], out, tmp_path, stdin=src)
        if why:
            failures.append(f"flat case {case}: {what} | -R: {why}")
    assert not failures, _report(failures)
