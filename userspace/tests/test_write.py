"""Nothing lost, nothing misleading: -f, -L, a full disk, Ctrl-C and SIGKILL mid-write.

A file under the final name is either whole or marked incomplete in its header (kdump
``status & 0x8``, ELF ``e_flags & 1``); an interrupted run leaves nothing under that name.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from fakes import (
    RANGES,
    Kdump,
    build_vmcore,
    random_classes,
    write,
)

from dumpfilter import flat
from dumpfilter.errors import DumpError
from dumpfilter.kdumpformat import Header

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def vm(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("vm") / "vmcore"
    build_vmcore(p, RANGES, seed=7)
    return p


@pytest.fixture(scope="module")
def classes() -> np.ndarray:
    return random_classes(RANGES, RANGES[-1][1], seed=8)


def _status(path: Path) -> int:
    return Header.unpack(path.read_bytes()).status


def test_existing_output_is_refused_without_force_and_left_untouched(vm, classes, tmp_path):
    out = tmp_path / "dump"
    out.write_bytes(b"precious")
    with pytest.raises(DumpError, match="already exists"):
        write(vm, out, classes)
    assert out.read_bytes() == b"precious"
    assert os.listdir(tmp_path) == ["dump"]  # no temporary left behind
    write(vm, out, classes, force=True)
    assert out.read_bytes()[:8] == b"KDUMP   " and _status(out) == 0


def test_a_whole_dump_has_no_incomplete_flag(vm, classes, tmp_path):
    out = tmp_path / "dump"
    write(vm, out, classes, compression="zlib")
    assert _status(out) == 0x1


@pytest.mark.parametrize("codec", [None, "lzo"])
def test_size_limit_fails_and_marks_the_dump_incomplete(vm, classes, tmp_path, codec):
    out = tmp_path / "dump"
    full = tmp_path / "full"
    write(vm, full, classes, dump_level=0, compression=codec)
    limit = full.stat().st_size // 2
    with pytest.raises(DumpError, match="limit"):
        write(vm, out, classes, dump_level=0, compression=codec, limit=limit)
    assert out.stat().st_size <= limit
    assert _status(out) & 0x8
    # Pages whose data made it are intact; the rest have no descriptor (offset 0 = lost).

    k = Kdump(out.read_bytes().ljust(full.stat().st_size, b"\0"))
    written = k.descs["offset"] != 0
    assert written.any() and (~written).any()
    assert (k.descs["offset"][written] + k.descs["size"][written] <= limit).all()


def test_size_limit_on_elf_output_sets_e_flags(vm, classes, tmp_path):
    out = tmp_path / "dump"
    with pytest.raises(DumpError, match="incomplete"):
        write(vm, out, classes, dump_level=0, elf=True, limit=2 << 20)
    assert struct.unpack_from("<I", out.read_bytes(), 48)[0] & 1


def test_size_limit_on_a_flattened_stream_leaves_no_end_marker(vm, classes, tmp_path):
    stream = tmp_path / "stream"
    with open(stream, "wb") as f:
        saved = os.dup(1)
        os.dup2(f.fileno(), 1)
        try:
            with pytest.raises(DumpError, match="incomplete"):
                write(vm, None, classes, dump_level=0, flatten=True, limit=1 << 20)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
    assert 0 < stream.stat().st_size <= 1 << 20
    with open(stream, "rb") as f, pytest.raises(DumpError, match="end marker|ends inside"):
        flat.reassemble(f, str(tmp_path / "rebuilt"))
    assert not (tmp_path / "rebuilt").exists()
    assert sorted(os.listdir(tmp_path)) == ["stream"]


@pytest.fixture
def small_fs(tmp_path):
    """A 1 MiB tmpfs: a real ENOSPC (root only)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True
    )
    if r.returncode:
        pytest.skip("cannot mount a tmpfs here (not root?)")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


@pytest.mark.parametrize("elf", [False, True])
def test_full_disk_fails_and_never_leaves_a_dump_claiming_to_be_whole(vm, classes, small_fs, elf):
    out = small_fs / "dump"
    with pytest.raises(DumpError, match="No space left"):
        write(vm, out, classes, dump_level=0, elf=elf)
    files = os.listdir(small_fs)
    assert files in ([], ["dump"])
    if files:
        head = out.read_bytes()
        if elf:
            assert struct.unpack_from("<I", head, 48)[0] & 1
        else:
            assert _status(out) & 0x8


_SLOW_WRITER = textwrap.dedent(
    """
    import signal, sys, time
    from pathlib import Path
    import numpy as np
    import fakes as t

    # A process started in the background by a non-interactive shell (a CI job, nohup ... &)
    # inherits SIGINT ignored, and Python then leaves it ignored; this run is one that
    # Ctrl-C reaches.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from dumpfilter import write
    from dumpfilter.contracts import WriteOptions

    class Slow(t.FakeSource):
        # No path: the writer cannot read the file itself and reads every page through
        # read_pages, which stalls.
        calls = 0

        def __init__(self, path):
            super().__init__(path)
            self.path = ""
        def read_pages(self, pfn, count):
            Slow.calls += 1
            if Slow.calls == 3:
                Path(sys.argv[3]).touch()  # mid-write: tell the parent
                # and stay here until its signal comes, however late a loaded machine lets it
                # send it (a writer that went on could finish first and exit 0)
                time.sleep(300)
            return super().read_pages(pfn, count)

    classes = t.random_classes(t.RANGES, t.RANGES[-1][1], seed=8)
    src = Slow(Path(sys.argv[1]))
    opts = WriteOptions(dumpfile=sys.argv[2], dump_level=0)
    try:
        write.write_dump(src, t.FakeClassification(classes), opts, t.FakeStats())
    except KeyboardInterrupt:
        sys.exit(130)
    """
)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_killed_run_leaves_nothing_under_the_final_name(vm, tmp_path, sig):
    out, ready = tmp_path / "dump", tmp_path / "ready"
    env = dict(os.environ, PYTHONPATH=str(HERE))
    p = subprocess.Popen(
        [sys.executable, "-c", _SLOW_WRITER, str(vm), str(out), str(ready)],
        env=env,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert p.poll() is None, p.stderr.read().decode()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # The dump being written has no name (O_TMPFILE): nothing to leave behind, even on
        # SIGKILL.
        assert sorted(os.listdir(tmp_path)) == ["ready"]
        p.send_signal(sig)
        p.wait(timeout=60)
    finally:
        if p.poll() is None:  # the writer waits for the signal: never leave it behind
            p.kill()
            p.wait()
    assert p.returncode != 0
    assert sorted(os.listdir(tmp_path)) == ["ready"]


def test_limit_below_the_header_leaves_no_file(vm, classes, tmp_path):
    out = tmp_path / "dump"
    with pytest.raises(DumpError, match="nothing usable"):
        write(vm, out, classes, limit=1000)
    assert os.listdir(tmp_path) == []
