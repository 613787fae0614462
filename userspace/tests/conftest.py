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

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
import anchor  # noqa: E402

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


@pytest.fixture(scope="session")
def makedumpfile_179() -> str:
    """Path of makedumpfile 1.7.9 (bench/anchor.py); skipped, saying why, where it cannot be had."""
    path, why = anchor.makedumpfile_179()
    if path is None:
        pytest.skip(f"makedumpfile 1.7.9: {why}")
    return path
