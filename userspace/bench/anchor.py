"""The makedumpfile peers and the kept-PFN comparison against them.

makedumpfile 1.7.9 is the peer measured against and the tests' second oracle.  It is built
(about 10 s, once) into ``$DUMPFILTER_CACHE/anchors`` by the anchors script kept beside the
repository, or taken from ``$MAKEDUMPFILE_179``.  Its code is never copied here.  Debian's
makedumpfile 1.7.2 is the packaged one, used where it is installed.

The kept PFN set of a kdump-compressed file is its 2nd bitmap: ``bitmap2`` reads it packed
(one bit per PFN, so 32 MiB at 1 TiB of RAM) and ``compare_kept`` says which PFNs differ.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
from pathlib import Path

import numpy as np

ANCHOR_BUILD = Path(__file__).resolve().parents[3] / "shared" / "anchors" / "build-makedumpfile.sh"
DEBIAN_MDF = ("/usr/sbin/makedumpfile", "/usr/bin/makedumpfile")
FIRST_SHOWN = 8  # differing PFNs listed by name; the rest are counted


def _cache_dir() -> Path:
    return Path(os.environ.get("DUMPFILTER_CACHE") or Path.home() / ".cache" / "dumpfilter")


def makedumpfile_179() -> tuple[str | None, str]:
    """Path of makedumpfile 1.7.9 (built if needed), or None and why not."""
    env = os.environ.get("MAKEDUMPFILE_179")
    if env:
        return env, ""
    built = _cache_dir() / "anchors" / "makedumpfile-1.7.9" / "makedumpfile"
    if os.access(built, os.X_OK):
        return str(built), ""
    if not ANCHOR_BUILD.exists():
        return None, f"{ANCHOR_BUILD} not found"
    out = _cache_dir() / "anchors"
    p = subprocess.run([str(ANCHOR_BUILD), str(out)], capture_output=True, text=True)
    path = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
    if p.returncode or not os.access(path, os.X_OK):
        return None, f"building makedumpfile 1.7.9 failed: {p.stderr.strip()[-200:]}"
    return path, ""


def makedumpfile_debian() -> tuple[str | None, str]:
    """Path of Debian's makedumpfile 1.7.2, or None and why not."""
    for path in DEBIAN_MDF:
        if os.access(path, os.X_OK):
            v = subprocess.run([path, "-v"], capture_output=True, text=True)
            m = re.search(r"version (\S+)", v.stdout + v.stderr)
            if m and m.group(1) == "1.7.2":
                return path, ""
            return None, f"{path} is version {m.group(1) if m else '?'}, not 1.7.2"
    return None, "Debian's makedumpfile is not installed (" + ", ".join(DEBIAN_MDF) + ")"


def bitmap2(path: Path) -> np.ndarray:
    """The 2nd (dumpable) bitmap of a kdump-compressed file, packed: bit ``pfn % 8`` of byte
    ``pfn // 8`` is set when the page is in the file; ``ceil(max_mapnr / 8)`` bytes."""
    with open(path, "rb") as f:
        h = f.read(464)
        if len(h) < 464 or h[:8] != b"KDUMP   ":
            raise ValueError(f"{path}: not a kdump-compressed file")
        version = struct.unpack_from("<i", h, 8)[0]
        bs, sub_blocks, bitmap_blocks, max_mapnr = struct.unpack_from("<iiiI", h, 428)
        if version >= 6:  # max_mapnr_64 of the sub-header: the field above is 32 bits
            f.seek(bs + 96)
            max_mapnr = struct.unpack("<Q", f.read(8))[0] or max_mapnr
    offset = (1 + sub_blocks) * bs + bitmap_blocks * bs // 2
    nbytes = (max_mapnr + 7) // 8
    bits = np.fromfile(path, dtype=np.uint8, count=nbytes, offset=offset)
    if len(bits) != nbytes:
        raise ValueError(f"{path}: 2nd bitmap cut short")
    return bits


def compare_kept(ours: np.ndarray, ref: np.ndarray) -> dict:
    """How two packed 2nd bitmaps differ: the PFNs kept by one side only, counted, and the
    first ``FIRST_SHOWN`` of them with the side that keeps each.  Bitmaps of different length
    (different max_mapnr) are compared as if the shorter one ended in zeros."""
    n = max(len(ours), len(ref))
    a = ours if len(ours) == n else np.concatenate([ours, np.zeros(n - len(ours), np.uint8)])
    b = ref if len(ref) == n else np.concatenate([ref, np.zeros(n - len(ref), np.uint8)])
    diff = np.bitwise_xor(a, b)
    where = np.flatnonzero(diff)
    only_ours = int(np.unpackbits(a[where] & diff[where]).sum())
    only_ref = int(np.unpackbits(b[where] & diff[where]).sum())
    head = where[:FIRST_SHOWN]
    rows, cols = np.nonzero(np.unpackbits(diff[head], bitorder="little").reshape(-1, 8))
    pfns = head[rows] * 8 + cols
    by_ours = np.unpackbits(a[head], bitorder="little").reshape(-1, 8)[rows, cols]
    first = [
        {"pfn": hex(int(p)), "kept_by": "ours" if o else "ref"}
        for p, o in zip(pfns[:FIRST_SHOWN], by_ours[:FIRST_SHOWN], strict=True)
    ]
    return {
        "equal": only_ours == 0 and only_ref == 0 and len(ours) == len(ref),
        "differing": only_ours + only_ref,
        "kept_by_ours_only": only_ours,
        "kept_by_ref_only": only_ref,
        "first": first,
        "bitmap_bytes": [len(ours), len(ref)],
    }


def describe(cmp: dict, ours: str, ref: str) -> str:
    """'equal', or one line saying how many PFNs differ and the first ones."""
    if cmp["equal"]:
        return "equal"
    names = {"ours": ours, "ref": ref}
    first = ", ".join(f"{d['pfn']} ({names[d['kept_by']]})" for d in cmp["first"])
    n = cmp["differing"]
    text = (
        f"DIFFER: {n} PFN{'' if n == 1 else 's'} ({cmp['kept_by_ours_only']} kept by {ours} "
        f"only, {cmp['kept_by_ref_only']} by {ref} only)"
    )
    if first:
        text += f"; first: {first}"
    la, lb = cmp["bitmap_bytes"]
    if la != lb:
        text += f"; bitmap lengths {la} / {lb} bytes"
    return text
