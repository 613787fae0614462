"""Output paths by kind: regular files, symlinks, devices, FIFOs, stdout, and the input itself.

Every case runs inside the test's scratch directory; device nodes are made there with mknod
(as root), never touched in the real /dev.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import run_dumpfilter

from dumpfilter.errors import DumpError
from dumpfilter.kdumpformat import DUMP_DH_COMPRESSED_INCOMPLETE, Header
from dumpfilter.outfile import SafeFile

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")


def _write(path, data=b"data", **kw) -> None:
    with SafeFile(str(path), **kw) as f:
        os.write(f.fd, data)
        f.commit()


def _null(tmp_path: Path) -> Path:
    """A scratch character device with /dev/null's numbers."""
    node = tmp_path / "null"
    os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return node


def test_a_new_file_appears_only_when_finished(tmp_path):
    path = tmp_path / "out"
    with SafeFile(str(path)) as f:
        os.write(f.fd, b"data")
        assert os.listdir(tmp_path) == []  # unnamed while being written
        f.commit()
    assert path.read_bytes() == b"data" and os.listdir(tmp_path) == ["out"]


def test_an_error_while_writing_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), SafeFile(str(tmp_path / "x")) as f:
        os.write(f.fd, b"half")
        raise RuntimeError
    assert os.listdir(tmp_path) == []


def test_an_existing_file_needs_force_and_is_then_replaced(tmp_path):
    path = tmp_path / "out"
    path.write_bytes(b"old")
    with pytest.raises(DumpError, match="already exists"):
        SafeFile(str(path))
    assert path.read_bytes() == b"old"
    _write(path, b"new", force=True)
    assert path.read_bytes() == b"new" and os.listdir(tmp_path) == ["out"]


def test_a_directory_is_refused_even_with_force(tmp_path):
    with pytest.raises(DumpError, match="not a regular file"):
        SafeFile(str(tmp_path), force=True)


def test_a_symlinked_output_is_written_through_the_link(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "dump"
    target.write_bytes(b"old")
    link = tmp_path / "link"
    link.symlink_to(target)
    _write(link, b"new", force=True)
    assert link.is_symlink() and target.read_bytes() == b"new"
    assert os.listdir(tmp_path / "real") == ["dump"]


def test_a_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "target")
    _write(link)
    assert link.is_symlink() and (tmp_path / "target").read_bytes() == b"data"


def test_the_input_is_never_the_output_even_with_force(tmp_path):
    src = tmp_path / "vmcore"
    src.write_bytes(b"input")
    (tmp_path / "hard").hardlink_to(src)
    (tmp_path / "soft").symlink_to(src)
    for name in ("vmcore", "hard", "soft"):
        for force in (False, True):
            with pytest.raises(DumpError, match="is the input"):
                SafeFile(str(tmp_path / name), force=force, inputs=(str(src),))
    assert src.read_bytes() == b"input"


def test_a_run_that_finds_its_name_taken_does_not_replace_it(tmp_path):
    path = tmp_path / "out"
    with SafeFile(str(path)) as f:
        os.write(f.fd, b"mine")
        path.write_bytes(b"theirs")  # another run finished first
        with pytest.raises(DumpError, match="appeared while writing"):
            f.commit()
    assert path.read_bytes() == b"theirs" and os.listdir(tmp_path) == ["out"]


def test_a_missing_directory_is_reported_by_the_given_name(tmp_path):
    with pytest.raises(DumpError) as e:
        SafeFile(str(tmp_path / "nodir" / "out"))
    assert str(e.value) == f"cannot create {tmp_path}/nodir/out: No such file or directory"


def test_a_name_with_a_newline_gives_a_one_line_message(synth61, tmp_path):
    path = tmp_path / "a\nb"
    path.write_bytes(b"")
    r = run_dumpfilter("-d", "31", synth61.path, path)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "a\\nb" in r.stderr, r.stderr


def test_stale_temporaries_of_dead_runs_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    stale = tmp_path / f".out.dumpfilter-{dead}"
    alive = tmp_path / f".out.dumpfilter-{os.getppid()}"
    stale.write_bytes(b"x" * 100)
    alive.write_bytes(b"y")
    _write(tmp_path / "out")
    assert not stale.exists() and alive.exists()


@root_only
def test_a_character_device_is_written_in_place_not_replaced(tmp_path):
    node = _null(tmp_path)
    with pytest.raises(DumpError, match="already exists"):
        SafeFile(str(node))
    _write(node, force=True)
    assert stat.S_ISCHR(node.lstat().st_mode) and os.listdir(tmp_path) == ["null"]


@root_only
def test_a_symlink_to_a_device_writes_the_device(tmp_path):
    node = _null(tmp_path)
    link = tmp_path / "stdout"
    link.symlink_to(node)
    _write(link, force=True, seek=False)
    assert link.is_symlink() and stat.S_ISCHR(node.lstat().st_mode)


def _fifo_reader(fifo: Path, got: list) -> threading.Thread:
    t = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    t.start()
    return t


def test_a_fifo_takes_a_stream_and_refuses_a_seeking_writer(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = _fifo_reader(fifo, got)
    with pytest.raises(DumpError, match="cannot seek"):
        SafeFile(str(fifo), force=True)
    reader.join(10)
    reader = _fifo_reader(fifo, got)
    _write(fifo, b"stream", force=True, seek=False)
    reader.join(10)
    assert got == [b"", b"stream"] and stat.S_ISFIFO(fifo.lstat().st_mode)


@root_only
def test_a_block_device_is_written_in_place(tmp_path):
    backing = tmp_path / "disk.img"
    backing.write_bytes(b"\xff" * (1 << 20))
    r = subprocess.run(["losetup", "-f", "--show", str(backing)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"no loop device here: {r.stderr.strip()}")
    loop = r.stdout.strip()
    try:
        node = tmp_path / "blk"
        os.mknod(node, stat.S_IFBLK | 0o600, os.stat(loop).st_rdev)
        _write(node, b"dump", force=True)
        assert stat.S_ISBLK(node.lstat().st_mode)
    finally:
        subprocess.run(["losetup", "-d", loop], check=False)
    assert backing.read_bytes()[:5] == b"dump\xff"


def test_stdout_takes_a_stream_and_a_pipe_refuses_a_seeking_writer():
    code = (
        "import os, sys\n"
        "from dumpfilter.outfile import SafeFile\n"
        "from dumpfilter.errors import DumpError\n"
        "with SafeFile('-', seek=False) as f:\n"
        "    os.write(f.fd, b'text'); f.commit()\n"
        "try:\n"
        "    SafeFile('-')\n"
        "except DumpError as e:\n"
        "    print(e, file=sys.stderr)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout == "text" and "cannot seek" in r.stderr


def test_sigkill_while_writing_leaves_no_file(tmp_path):
    code = (
        "import os, signal, sys\n"
        "from dumpfilter.outfile import SafeFile\n"
        "f = SafeFile(sys.argv[1])\n"
        "os.write(f.fd, b'x' * 65536)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "out")])
    assert r.returncode == -signal.SIGKILL and os.listdir(tmp_path) == []


# --- the command line ---------------------------------------------------------------------


def test_filtering_a_vmcore_onto_itself_is_refused_and_leaves_it_intact(synth61, tmp_path):
    vm = tmp_path / "vmcore"
    subprocess.run(["cp", "--sparse=always", str(synth61.path), str(vm)], check=True)
    before = vm.stat()
    for args in (["-f", "-c", "-d", "31"], ["-f", "-E", "-d", "31"], ["-c", "-d", "31"]):
        r = run_dumpfilter(*args, vm, vm)
        assert r.returncode == 1 and r.stderr.count("\n") == 1 and "is the input" in r.stderr
    r = run_dumpfilter("--split", "-f", "-d", "31", vm, tmp_path / "p1", vm)
    assert r.returncode == 1 and "is the input" in r.stderr
    after = vm.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino, before.st_size, before.st_mtime_ns,
    )  # fmt: skip


@root_only
def test_stats_json_to_a_device_link_keeps_the_link_and_the_device(synth61, tmp_path):
    node = _null(tmp_path)
    link = tmp_path / "stdout"
    link.symlink_to(node)
    r = run_dumpfilter("--dry-run", "-d", "31", "--stats-json", link, synth61.path)
    assert r.returncode == 0, r.stderr
    assert link.is_symlink() and stat.S_ISCHR(node.lstat().st_mode)
    r = run_dumpfilter("-f", "-d", "31", synth61.path, node)
    assert r.returncode == 0, r.stderr
    assert stat.S_ISCHR(node.lstat().st_mode) and sorted(os.listdir(tmp_path)) == [
        "null", "stdout",
    ]  # fmt: skip


def test_stats_json_dash_is_stdout(synth61, tmp_path):
    r = run_dumpfilter("--dry-run", "-d", "31", "--stats-json", "-", synth61.path)
    assert r.returncode == 0, r.stderr
    assert '"dump_level": 31' in r.stdout and not (tmp_path / "-").exists()


# --- environment faults through the command line: one line, exit 1, nothing misleading ------


def _one_line_failure(r) -> str:
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.stderr
    return r.stderr


def test_a_flattened_stream_into_a_closed_pipe_is_one_line(synth61):
    cmd = [sys.executable, "-m", "dumpfilter.cli", "-F", "-c", "-d", "0", str(synth61.path)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.read(100)
    p.stdout.close()  # the reader goes away mid-stream
    p.wait(timeout=300)
    err = p.stderr.read().decode()
    assert p.returncode == 1 and err.count("\n") == 1 and "pipe" in err, err


@pytest.fixture
def mount(tmp_path):
    """``mount(opts)``: a scratch tmpfs (root only), unmounted afterwards."""
    mounted = []

    def make(opts: str) -> Path:
        mnt = tmp_path / f"mnt{len(mounted)}"
        mnt.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(mnt)],
                           capture_output=True, text=True)  # fmt: skip
        if r.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        mounted.append(mnt)
        return mnt

    yield make
    for mnt in mounted:
        subprocess.run(["umount", str(mnt)], check=True)


def test_an_unwritable_directory_is_one_line_naming_the_dump(synth61, mount):
    mnt = mount("ro,size=1m")
    err = _one_line_failure(run_dumpfilter("-c", "-d", "31", synth61.path, mnt / "dump"))
    assert f"cannot create {mnt}/dump: Read-only file system" in err


def test_a_full_filesystem_is_one_line_and_leaves_no_whole_looking_dump(synth61, mount):
    mnt = mount("size=256k")
    err = _one_line_failure(run_dumpfilter("-d", "0", synth61.path, mnt / "dump"))
    assert "No space left on device" in err
    left = os.listdir(mnt)
    assert left in ([], ["dump"])
    if left:  # what made it says so in its header (kdump status bit 0x8)
        assert Header.unpack((mnt / "dump").read_bytes()).status & DUMP_DH_COMPRESSED_INCOMPLETE


def test_two_runs_writing_one_dump_never_both_succeed(synth61, tmp_path):
    out = tmp_path / "dump"
    cmd = [sys.executable, "-m", "dumpfilter.cli", "-c", "-d", "31", str(synth61.path), str(out)]
    procs = [subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert sorted(rc for rc, _ in results) == [0, 1], results
    (err,) = [e for rc, e in results if rc == 1]
    assert "already exists" in err or "appeared while writing" in err
    assert os.listdir(tmp_path) == ["dump"]
    assert not Header.unpack(out.read_bytes()).status & DUMP_DH_COMPRESSED_INCOMPLETE  # whole
    r = run_dumpfilter("--dry-run", "-d", "0", out)  # and readable as an input
    assert r.returncode == 0, r.stderr
