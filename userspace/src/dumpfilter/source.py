"""``open_source(path) -> Source``: pick the reader from the file's first bytes.

An ELF vmcore (``/proc/vmcore`` or a saved copy) or a kdump-compressed file (re-filtering,
as makedumpfile allows; docs/kdump-compressed.md).  A flattened stream must be rebuilt
with ``-R`` first, like makedumpfile requires.  Every Source offers the protocol of
ARCHITECTURE.md plus ``phys_array(paddr, size) -> np.ndarray`` (a view when possible), which
the scan uses to read struct pages without copying.
"""

from __future__ import annotations

import os

from .errors import DumpError

PROC_VMCORE = "/proc/vmcore"


def is_proc_vmcore(path: str | None) -> bool:
    """Whether ``path`` is this capture kernel's own ``/proc/vmcore`` (not a saved copy):
    only it can be classified by the kernel scan, and its pages are cheaper to read through
    mappings than by read() (_pagecodec.c, ``struct reader``)."""
    if not path:
        return False
    try:
        return os.path.samefile(path, PROC_VMCORE)
    except OSError:
        return False


def open_source(path: str | None):
    if not path:
        raise DumpError("no input vmcore given")
    try:
        with open(path, "rb") as f:
            magic = f.read(16)
    except OSError as e:
        raise DumpError(f"cannot open {path}: {e.strerror}") from None
    if magic[:4] == b"\x7fELF":
        from .elfcore import ElfVmcore

        return ElfVmcore(path)
    if magic[:8] in (b"KDUMP   ", b"DISKDUMP"):
        from .diskdump_in import KdumpInput

        return KdumpInput(path)
    if magic.startswith(b"makedumpfile"):
        raise DumpError(f"{path} is a flattened dump; rebuild it with -R first")
    if not magic:
        raise DumpError(f"{path} is empty")
    size = os.path.getsize(path)
    raise DumpError(
        f"{path} is neither an ELF vmcore nor a kdump-compressed file ({size} bytes, unknown magic)"
    )
