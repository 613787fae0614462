"""makedumpfile 1.7.9, the peer measured against and the tests' second oracle.

It is built (about 10 s, once) into ``$DUMPFILTER_CACHE/anchors`` by the anchors script kept
beside the repository, or taken from ``$MAKEDUMPFILE_179``.  Its code is never copied here.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ANCHOR_BUILD = Path(__file__).resolve().parents[3] / "shared" / "anchors" / "build-makedumpfile.sh"


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
