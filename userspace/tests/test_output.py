"""The command as users run it: kdump/ELF/flattened output and -R through the CLI, exit status
and one-line errors, progress only on a terminal, safe-output building blocks."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

import numpy as np
import pytest
from conftest import MAKEDUMPFILE
from fakes import (
    KDUMPFILE_READER,
    SYS_PY,
    Kdump,
    _have_kdumpfile,
    cached_vmcores,
    check_pages,
    read_with,
)

from dumpfilter.dumplevel import DumpLevel
from dumpfilter.pageclass import PageClass

CMD = [sys.executable, "-m", "dumpfilter.cli"]
# The synthetic vmcores carry no SYMBOL(swapper_pg_dir), which drgn insists on, so read-back of
# CLI output goes through libkdumpfile (drgn is covered on test_readback's own vmcores).
needs_kdumpfile = pytest.mark.skipif(not _have_kdumpfile(), reason="python3-libkdumpfile missing")


def run(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*CMD, *map(str, args)], capture_output=True, timeout=600, **kw)


@pytest.fixture(scope="module")
def synth(synth_factory):
    return synth_factory(
        kernel="6.1", content="mixed", image_trap=False, ram=[(1, 0x9F), (0x100, 0x8000)]
    )


def _pages_of(vmcore: str, pfns) -> dict[int, bytes]:
    from dumpfilter.elfcore import ElfVmcore

    with ElfVmcore(vmcore) as src:
        return {p: src.read_pages(p, 1).tobytes() for p in pfns}


@needs_kdumpfile
def test_cli_kdump_output_reads_back_page_for_page(synth, tmp_path):
    out = tmp_path / "dump"
    r = run("-l", "-d", "31", "--num-threads", "2", synth.path, out)
    assert r.returncode == 0, r.stderr
    k = Kdump(out.read_bytes())
    kept = np.flatnonzero(k.dumpable)
    zero = kept[k.descs["offset"] == k.data_off]
    data = np.setdiff1d(kept, zero)
    absent = np.flatnonzero(~k.dumpable)
    sample = sorted(set(data[::7].tolist()) | set(zero[::7].tolist()))
    want = _pages_of(synth.path, sample)
    res = read_with(SYS_PY, KDUMPFILE_READER, out, sample + absent[::11].tolist())
    check_pages(res, want, set(absent[::11].tolist()))
    # The scan's verdicts reach the file: nothing the answer key excludes is dumpable.
    assert not (k.dumpable & ~synth.kept(31)).any()


def test_cli_flattened_stdout_reassembles_to_the_direct_file(synth, tmp_path):
    direct, stream, rebuilt = tmp_path / "direct", tmp_path / "stream", tmp_path / "rebuilt"
    assert run("-c", "-d", "31", synth.path, direct).returncode == 0
    with open(stream, "wb") as f:
        r = subprocess.run(
            [*CMD, "-F", "-c", "-d", "31", synth.path],
            stdout=f,
            stderr=subprocess.PIPE,
            timeout=600,
        )
    assert r.returncode == 0, r.stderr
    with open(stream, "rb") as f:
        r = subprocess.run([*CMD, "-R", str(rebuilt)], stdin=f, capture_output=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert rebuilt.read_bytes() == direct.read_bytes()
    if MAKEDUMPFILE:
        mdf = tmp_path / "mdf"
        with open(stream, "rb") as f:
            subprocess.run([MAKEDUMPFILE, "-R", str(mdf)], stdin=f, check=True, capture_output=True)
        assert mdf.read_bytes() == direct.read_bytes()


@needs_kdumpfile
def test_cli_elf_output_is_an_elf_core_with_the_kept_pages(synth, tmp_path):
    out = tmp_path / "dump"
    r = run("-E", "-d", "31", "--num-threads", "2", synth.path, out)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:4] == b"\x7fELF"
    kept = np.flatnonzero(synth.kept(31) & ~synth.zero_mask())[::17].tolist()
    res = read_with(SYS_PY, KDUMPFILE_READER, out, kept)
    check_pages(res, _pages_of(synth.path, kept), set())


def test_cli_refuses_existing_output_with_one_line_and_exit_1(synth, tmp_path):
    out = tmp_path / "dump"
    out.write_text("old")
    r = run("-d", "31", synth.path, out)
    assert r.returncode == 1
    assert r.stderr.decode().strip().count("\n") == 0 and "-f" in r.stderr.decode()
    assert out.read_text() == "old"
    assert run("-f", "-d", "31", synth.path, out).returncode == 0


def test_cli_size_limit_exits_1_and_marks_incomplete(synth, tmp_path):
    out = tmp_path / "dump"
    r = run("-d", "0", "-L", "1M", synth.path, out)
    assert r.returncode == 1 and b"incomplete" in r.stderr
    assert Kdump(out.read_bytes().ljust(1 << 22, b"\0")).status & 0x8


def _run_on_pty(args) -> tuple[int, bytes]:
    """Run with stderr on a pseudo-terminal (stdout to /dev/null); return status, stderr."""
    master, slave = pty.openpty()
    p = subprocess.Popen([*CMD, *map(str, args)], stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            b = os.read(master, 65536)
        except OSError:
            break
        if not b:
            break
        chunks.append(b)
    os.close(master)
    return p.wait(timeout=600), b"".join(chunks)


def test_progress_shows_on_a_terminal_and_not_otherwise(synth, tmp_path):
    rc, err = _run_on_pty(["-d", "1", "--message-level", "1", synth.path, tmp_path / "a"])
    assert rc == 0 and b"Copying data" in err and b"100.0 %" in err
    r = run("-d", "1", "--message-level", "1", synth.path, tmp_path / "b")
    assert r.returncode == 0 and b"Copying data" not in r.stderr
    rc, err = _run_on_pty(["-d", "1", "--message-level", "0", synth.path, tmp_path / "c"])
    assert rc == 0 and b"Copying data" not in err


def test_keep_table_follows_the_dump_level_bits():
    t = DumpLevel(0).keep_table()
    assert t[PageClass.KEEP] and t[PageClass.FREE] and t[PageClass.CACHE]
    assert not t[PageClass.HOLE] and not t[PageClass.HWPOISON] and not t[PageClass.OFFLINE]
    t = DumpLevel(4).keep_table()  # private-cache bit excludes all page cache, as makedumpfile does
    assert not t[PageClass.CACHE] and not t[PageClass.CACHE_PRIVATE]
    t = DumpLevel(2).keep_table()
    assert not t[PageClass.CACHE] and t[PageClass.CACHE_PRIVATE]
    t = DumpLevel(31).keep_table()
    assert t[PageClass.KEEP] and not t[[1, 2, 3, 4, 5, 6, 7]].any()


def _real_vmcores(limit: int = 1) -> list:
    return cached_vmcores("6.1.0-")[:limit]  # Debian's own 6.1 kernel


@pytest.mark.realdump
@pytest.mark.skipif(not _real_vmcores(), reason="no real 6.1 vmcore")
@pytest.mark.parametrize("vmcore", _real_vmcores(), ids=lambda p: p.parent.name)
def test_cli_on_a_real_61_dump_is_byte_identical_to_makedumpfile_179_at_d1(
    vmcore, makedumpfile_179, tmp_path
):
    """Whole command vs makedumpfile 1.7.9 on a real Debian 6.1 kdump (-d 1: zero pages, the
    page at 0x9f000 a PT_LOAD holds in part, utsname, notes): identical files, so identical
    2nd bitmaps and page data."""
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    r = run("-d", "1", vmcore, ours)
    assert r.returncode == 0, r.stderr
    subprocess.run(
        [makedumpfile_179, "-d", "1", str(vmcore), str(theirs)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    assert ours.read_bytes() == theirs.read_bytes()


@pytest.mark.parametrize("stream", [False, True])
def test_short_writes_and_efault_are_resumed_exactly_where_they_stopped(
    tmp_path, monkeypatch, stream
):
    """A pwritev/writev that writes only part (a signal, a pipe, 9p) or fails with EFAULT on
    mapped pages is carried on from the first unwritten byte: the file holds every byte once."""
    import errno

    from dumpfilter import output

    bufs = [b"head", np.arange(3 * 64, dtype=np.uint8).reshape(3, 64), b"", b"tail" * 7]
    want = b"head" + bufs[1].tobytes() + b"tail" * 7
    real_pwritev, real_writev = os.pwritev, os.writev
    state = {"calls": 0}

    def short(call):
        def f(fd, group, *pos):
            state["calls"] += 1
            if state["calls"] == 1 and any(type(b) is not bytes for b in group):
                raise OSError(errno.EFAULT, "Bad address")
            flat = b"".join(bytes(memoryview(b).cast("B")) for b in group)[:37]  # at most 37
            return call(fd, [flat], *pos)

        return f

    monkeypatch.setattr(output.os, "pwritev", short(real_pwritev))
    monkeypatch.setattr(output.os, "writev", short(real_writev))
    path = tmp_path / "out"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        output._write_all(fd, None if stream else 5, bufs, "out")
    finally:
        os.close(fd)
    assert path.read_bytes() == (b"" if stream else bytes(5)) + want
    assert state["calls"] > len(want) // 37
