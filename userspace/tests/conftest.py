"""Shared fixtures: synthetic vmcores built once per session (see synthvmcore.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import synthvmcore  # noqa: E402

MAKEDUMPFILE = shutil.which("makedumpfile") or (
    "/usr/bin/makedumpfile" if os.path.exists("/usr/bin/makedumpfile") else None
)


@pytest.fixture(scope="session")
def synth_factory(tmp_path_factory):
    """``synth_factory(**make_vmcore_kwargs) -> Synth``, cached per distinct arguments.

    Defaults to ``content="sparse"`` so that unit tests write little data.
    """
    cache: dict[tuple, synthvmcore.Synth] = {}
    base = tmp_path_factory.mktemp("synth")

    def make(**kw) -> synthvmcore.Synth:
        kw.setdefault("content", "sparse")
        key = tuple(sorted((k, repr(v)) for k, v in kw.items()))
        if key not in cache:
            path = base / f"vmcore{len(cache)}"
            cache[key] = synthvmcore.make_vmcore(path, **kw)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def synth61(synth_factory):
    """A default 6.1 synthetic vmcore (384 MiB, legacy hole, KASLR, 2M vmemmap leaves)."""
    return synth_factory(kernel="6.1")


def run_dumpfilter(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    """Run the CLI in a subprocess (as users do): returns the completed process."""
    cmd = [sys.executable, "-m", "dumpfilter.cli", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


@pytest.fixture
def cli():
    return run_dumpfilter


def needs_makedumpfile():
    return pytest.mark.skipif(MAKEDUMPFILE is None, reason="makedumpfile not installed")


__all__ = ["MAKEDUMPFILE", "Path", "needs_makedumpfile", "run_dumpfilter"]


# makedumpfile 1.7.9, the newest release, as an oracle: $MAKEDUMPFILE_179, or built from the
# anchors kept beside the repository into the cache (about 10 s, once).
_ANCHOR_BUILD = Path(__file__).resolve().parents[3] / "shared" / "anchors" / "build-makedumpfile.sh"


def _cache_dir() -> Path:
    return Path(os.environ.get("DUMPFILTER_CACHE") or Path.home() / ".cache" / "dumpfilter")


@pytest.fixture(scope="session")
def makedumpfile_179() -> str:
    """Path of makedumpfile 1.7.9; the test is skipped, saying why, where it cannot be had."""
    env = os.environ.get("MAKEDUMPFILE_179")
    if env:
        return env
    built = _cache_dir() / "anchors" / "makedumpfile-1.7.9" / "makedumpfile"
    if os.access(built, os.X_OK):
        return str(built)
    if not _ANCHOR_BUILD.exists():
        pytest.skip(f"makedumpfile 1.7.9: {_ANCHOR_BUILD} not found")
    p = subprocess.run(
        [str(_ANCHOR_BUILD), str(_cache_dir() / "anchors")], capture_output=True, text=True
    )
    path = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
    if p.returncode or not os.access(path, os.X_OK):
        pytest.skip(f"building makedumpfile 1.7.9 failed: {p.stderr.strip()[-200:]}")
    return path
