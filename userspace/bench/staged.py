"""A sparse vmcore's copy in tmpfs, from which every benchmark run starts alike.

The scale bench's dumps are sparse files: only the pages ``-d 31`` keeps have data, the
rest of RAM is holes.  Where a run reads a hole decides what it costs, and on a disk file
that is an artefact of the file, not of the tool:

* makedumpfile maps the dump in 4 MiB windows.  A fault in a file mapping reads ahead around
  it (``read_ahead_kb``, 4 MiB on this machine's disk), and the kernel fills every hole it
  reads ahead into the page cache as a newly zeroed page.  On the 4 GiB dump, with its
  holes dropped from the cache, its ``-d 31 -z`` run took 8.8 s instead of 0.45 s and left
  2.5 GB more in the page cache: free pages it never looks at.
* With the holes left in the cache, the runs before decide how much of them is there.

A capture kernel's ``/proc/vmcore`` has neither: a page the tool does not touch costs
nothing, and a page it touches is a memory copy.  A copy in tmpfs comes closest.  A
``read()`` of a hole copies the shared zero page and allocates nothing; a fault in a hole
allocates that one page and reads nothing ahead (shmem has no readahead).  The pages a
fault allocates stay with the file, as cached holes would: the scale bench runs every tool
once before it times any, so that every timed run finds what it touches in memory.  (On the
4 GiB dump makedumpfile's runs fault in 54 MiB of holes, the zero pages it tests; emptied
before every run, they cost its ``-d 31 -l`` run 0.22 s instead of 0.18.)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

_COPY_CHUNK = 64 << 20


def data_extents(fd: int) -> Iterator[tuple[int, int]]:
    """The ``[start, end)`` byte ranges of ``fd`` that hold data (SEEK_DATA / SEEK_HOLE,
    Linux 3.1; a file system without them reports one extent, the whole file)."""
    end = os.fstat(fd).st_size
    pos = 0
    while pos < end:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:  # ENXIO: only a hole is left
            return
        stop = min(os.lseek(fd, start, os.SEEK_HOLE), end)
        yield start, stop
        pos = stop


def data_bytes(path: Path) -> int:
    """Bytes of ``path`` that are data, not holes."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return sum(b - a for a, b in data_extents(fd))
    finally:
        os.close(fd)


class Staged:
    """``src``'s copy in ``directory`` (a tmpfs), sparse as ``src`` is."""

    def __init__(self, src: Path, directory: Path):
        self.path = directory / src.name
        directory.mkdir(parents=True, exist_ok=True)
        fin = os.open(src, os.O_RDONLY)
        try:
            fout = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                size = os.fstat(fin).st_size
                for start, end in data_extents(fin):
                    while start < end:
                        data = os.pread(fin, min(_COPY_CHUNK, end - start), start)
                        if not data:
                            raise OSError(f"{src}: shorter than its extents")
                        os.pwrite(fout, data, start)
                        start += len(data)
                os.ftruncate(fout, size)
            finally:
                os.close(fout)
        except BaseException:
            self.path.unlink(missing_ok=True)
            raise
        finally:
            os.close(fin)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        try:
            self.path.parent.rmdir()
        except OSError:
            pass  # not empty: not only ours


def tmpfs_room(directory: Path, mountinfo: str = "/proc/self/mountinfo") -> int:
    """Bytes a file in ``directory`` may take, 0 unless ``directory`` is on a tmpfs (the
    type of the longest mount point above it in ``mountinfo``): a copy on another file
    system would read ahead into its holes as the original does."""
    try:
        st = os.statvfs(directory)
        with open(mountinfo) as f:
            mounts = [line.split() for line in f]
    except OSError:
        return 0
    best = ""
    fstype = ""
    d = str(directory.resolve())
    for m in mounts:
        mnt = m[4]
        sep = m.index("-")
        if (d == mnt or d.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
            best, fstype = mnt, m[sep + 1]
    return st.f_bavail * st.f_frsize if fstype == "tmpfs" else 0
