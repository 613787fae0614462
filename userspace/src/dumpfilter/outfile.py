"""Output paths: what each kind of target gets, and how a finished file takes its name.

The rule, by what the path names (after following symlinks, as makedumpfile's ``open``
does, so a link is written through and its target's directory holds the temporary file):

- a new path, or an existing regular file with ``-f``: the data goes to an unnamed file in
  the target's directory (``O_TMPFILE``; a hidden ``.NAME.dumpfilter-PID`` where the
  filesystem has no ``O_TMPFILE``) that takes the name only when it is finished.  A new path
  is taken with ``link()``, which fails if the name appeared meanwhile, so two runs without
  ``-f`` never silently replace each other; ``-f`` replaces with ``rename()``.  An unnamed
  file vanishes with the process, so SIGKILL leaves nothing behind.
- a character device, a FIFO or a block device (with ``-f``: it exists), and ``-``
  (stdout): written directly, never replaced.  The dump writers need random access; where
  the target cannot seek (a FIFO, a terminal, a pipe on stdout) they are refused up front.
- anything else (a directory, a socket) is refused.

An output is never the input: a target that is the same file as one of ``inputs`` (same
device and inode, through any link) is refused, ``-f`` or not.  Every message names the
path the user gave, never a temporary name (cli.py escapes control characters in them).
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Iterable

from .errors import DumpError

STDOUT = "-"


def _stat(path: str, follow: bool = True) -> os.stat_result | None:
    try:
        return os.stat(path, follow_symlinks=follow)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise DumpError(f"{path}: {e.strerror}") from e


def same_file_as(st: os.stat_result, inputs: Iterable[str | int | None]) -> bool:
    """Whether *st* is one of *inputs* (paths, or open file descriptors such as stdin;
    None, no input, is skipped)."""
    for src in inputs:
        if src is None:
            continue
        try:
            other = os.fstat(src) if isinstance(src, int) else os.stat(src)
        except OSError:
            continue
        if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
            return True
    return False


_AT_FDCWD = -100
_AT_SYMLINK_FOLLOW = 0x400


def _link_following(source: str, dest: str) -> None:
    """linkat(AT_SYMLINK_FOLLOW): how an O_TMPFILE file gets a name through /proc/self/fd.
    os.link() calls linkat without that flag here, which links the /proc symlink itself
    (EXDEV)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.linkat(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(dest),
                   _AT_SYMLINK_FOLLOW) != 0:  # fmt: skip
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), dest)


def _seekable(fd: int) -> bool:
    try:
        os.lseek(fd, 0, os.SEEK_CUR)
    except OSError:
        return False
    return True


class SafeFile:
    """An output opened by the module's rule; ``fd`` takes the data, ``commit()`` finishes.

    ``seek``: the writer needs random access (kdump, ELF); a target that cannot seek is
    refused.  ``inputs``: paths (or descriptors) the output must not be.  Leaving the
    context without ``commit()`` (an error, Ctrl-C) drops an unnamed or temporary file; a
    device, FIFO or stdout keeps what was written (the dump says in its header that it is
    incomplete until the writer finishes it).
    """

    def __init__(
        self,
        path: str,
        force: bool = False,
        *,
        seek: bool = True,
        inputs: Iterable[str | int | None] = (),
    ):
        self.path = path
        self.fd = -1
        self.done = False
        self.tmp: str | None = None  # named temporary (no O_TMPFILE)
        self.replace = False
        self.direct = False
        if path == "":
            raise DumpError("empty output file name")
        if path == STDOUT:
            self._direct(sys.stdout.fileno() if sys.stdout is not None else -1, seek)
            return
        target = os.path.realpath(path)  # write through symlinks, as makedumpfile does
        st = _stat(target)
        if st is not None:
            if same_file_as(st, inputs):
                raise DumpError(f"{path}: is the input; refusing to overwrite it")
            if not force:
                raise DumpError(f"{path}: already exists (use -f to overwrite)")
            kind = stat.S_IFMT(st.st_mode)
            if kind in (stat.S_IFCHR, stat.S_IFIFO, stat.S_IFBLK):
                self._open_device(target, seek)
                return
            if kind != stat.S_IFREG:
                raise DumpError(f"{path}: exists and is not a regular file or device")
            self.replace = True
        self.target = target
        self._open_unnamed(os.path.dirname(target) or ".")

    # -- opening -------------------------------------------------------------------------

    def _direct(self, fd: int, seek: bool) -> None:
        if fd < 0:
            raise DumpError("standard output is closed")
        try:
            os.fstat(fd)
        except OSError as e:
            raise DumpError("standard output is closed") from e
        if seek and not _seekable(fd):
            raise DumpError(f"{self.path}: cannot seek (a pipe or terminal); use -F for a stream")
        self.fd = fd
        self.direct = True
        self.owned = False

    def _open_device(self, target: str, seek: bool) -> None:
        try:
            # A FIFO blocks here until it has a reader, as with any writer (`cat > fifo`).
            fd = os.open(target, os.O_WRONLY | os.O_CLOEXEC)
        except OSError as e:
            raise DumpError(f"cannot open {self.path}: {e.strerror}") from e
        try:
            self._direct(fd, seek)
        except DumpError:
            os.close(fd)
            raise
        self.owned = True

    def _open_unnamed(self, directory: str) -> None:
        self.owned = True
        flags = os.O_WRONLY | os.O_CLOEXEC
        _remove_stale_temporaries(directory, os.path.basename(self.target))
        if hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd"):
            try:
                self.fd = os.open(directory, flags | os.O_TMPFILE, 0o600)
                return
            except OSError as e:
                if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                    raise DumpError(f"cannot create {self.path}: {e.strerror}") from e
        self.tmp = os.path.join(
            directory, f".{os.path.basename(self.target)}.dumpfilter-{os.getpid()}"
        )
        try:
            self.fd = os.open(self.tmp, flags | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as e:
            self.tmp = None
            raise DumpError(f"cannot create {self.path}: {e.strerror}") from e

    # -- finishing -----------------------------------------------------------------------

    def commit(self) -> None:
        """Give the finished data its name (atomic within the directory)."""
        try:
            if not self.direct:
                self._name()
            if self.owned:
                os.close(self.fd)
            self.fd = -1
        except OSError as e:
            self.abort()
            raise DumpError(f"cannot write {self.path}: {e.strerror}") from e
        self.done = True

    def _name(self) -> None:
        source = self.tmp or f"/proc/self/fd/{self.fd}"
        if not self.replace:
            try:
                if self.tmp:
                    os.link(self.tmp, self.target)
                else:
                    _link_following(source, self.target)
            except FileExistsError:
                self.abort()
                raise DumpError(
                    f"{self.path}: appeared while writing (another run?); "
                    "not replaced (use -f to overwrite)"
                ) from None
            if self.tmp:
                os.unlink(self.tmp)
                self.tmp = None
            return
        if self.tmp is None:  # an unnamed file gets a hidden name for the rename
            hidden = os.path.join(
                os.path.dirname(self.target),
                f".{os.path.basename(self.target)}.dumpfilter-{os.getpid()}",
            )
            _link_following(source, hidden)
            self.tmp = hidden
        os.rename(self.tmp, self.target)
        self.tmp = None

    def abort(self) -> None:
        if self.fd >= 0 and self.owned:
            os.close(self.fd)
        self.fd = -1
        if self.tmp:
            try:
                os.unlink(self.tmp)
            except FileNotFoundError:
                pass
            self.tmp = None

    def __enter__(self) -> SafeFile:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.done:
            self.abort()


def _remove_stale_temporaries(directory: str, base: str) -> None:
    """Hidden temporaries of *base* left by runs that died (SIGKILL; on filesystems without
    O_TMPFILE, or between naming and renaming): removed when their process is gone."""
    prefix = f".{base}.dumpfilter-"
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if not name.startswith(prefix) or not name[len(prefix) :].isdigit():
            continue
        pid = int(name[len(prefix) :])
        try:
            os.kill(pid, 0)
            continue  # alive (or not ours to signal): leave it
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        try:
            os.unlink(os.path.join(directory, name))
        except OSError:
            pass
