"""bench/staged.py: a sparse dump's staged copy reads as the dump and stays as sparse."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import staged  # noqa: E402

PAGE = 4096
# (page index, fill byte): data pages among holes, one at the end so the file ends in data
PAGES = [(0, 0x11), (1, 0x22), (300, 0x33), (301, 0x44), (1023, 0x55)]


def _sparse(path: Path, pages: list[tuple[int, int]], size_pages: int) -> None:
    with open(path, "wb") as f:
        f.truncate(size_pages * PAGE)
        for i, b in pages:
            f.seek(i * PAGE)
            f.write(bytes([b]) * PAGE)


@pytest.fixture
def dump(tmp_path: Path) -> Path:
    p = tmp_path / "vmcore"
    _sparse(p, PAGES, 1024)
    if staged.data_bytes(p) != len(PAGES) * PAGE:
        pytest.skip("the file system does not report holes (SEEK_HOLE)")
    return p


def _stage_dir(tmp_path: Path) -> Path:
    shm = Path("/dev/shm")
    if staged.tmpfs_room(shm) > (64 << 20):
        return shm / f"dumpfilter-test-{os.getpid()}"
    return tmp_path / "staged"  # what is tested holds on any file system with holes


def test_staged_copy_reads_as_the_dump_and_stays_sparse(dump: Path, tmp_path: Path):
    copy = staged.Staged(dump, _stage_dir(tmp_path))
    try:
        assert copy.path.read_bytes() == dump.read_bytes()
        assert staged.data_bytes(copy.path) == len(PAGES) * PAGE
    finally:
        copy.remove()


def test_data_extents_of_a_file_without_holes_is_the_whole_file(tmp_path: Path):
    p = tmp_path / "full"
    p.write_bytes(b"x" * 3 * PAGE)
    fd = os.open(p, os.O_RDONLY)
    try:
        assert list(staged.data_extents(fd)) == [(0, 3 * PAGE)]
    finally:
        os.close(fd)


def _mountinfo(tmp_path: Path, mounts: list[tuple[str, str]]) -> str:
    """A /proc/self/mountinfo with ``mounts`` as (mount point, file system type)."""
    p = tmp_path / "mountinfo"
    p.write_text(
        "".join(
            f"{i} 1 0:{i} / {mnt} rw,relatime shared:{i} - {fs} {fs} rw\n"
            for i, (mnt, fs) in enumerate(mounts, 20)
        )
    )
    return str(p)


def test_only_a_tmpfs_has_room_for_a_staged_dump(tmp_path: Path):
    d = tmp_path / "stage"
    d.mkdir()
    here = str(d.resolve())
    on_disk = _mountinfo(tmp_path, [("/", "ext4")])
    assert staged.tmpfs_room(d, on_disk) == 0
    on_tmpfs = _mountinfo(tmp_path, [("/", "ext4"), (here, "tmpfs")])
    assert staged.tmpfs_room(d, on_tmpfs) > 0
    # the mount nearest the directory decides, not the first or last one listed
    under_disk = _mountinfo(tmp_path, [(here, "ext4"), ("/", "tmpfs")])
    assert staged.tmpfs_room(d, under_disk) == 0
