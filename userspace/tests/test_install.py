"""Installed the way people install Python tools, dumpfilter works with every codec.

``pip install ./userspace`` goes into a fresh virtualenv (the dependencies come from the
package index, as for a user); then the package is uninstalled and the wheel ``python -m
build`` makes is installed in its place.  Each time the installed ``dumpfilter`` command must
run from that virtualenv, not from this source tree, and write with zlib, lzo, snappy and zstd
the same bytes as the source tree does.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from conftest import run_dumpfilter

from dumpfilter.kdumpformat import Header

USERSPACE = Path(__file__).resolve().parents[1]
CODECS = {"-c": 0x1, "-l": 0x2, "-p": 0x4, "-z": 0x20}  # disk_dump_header.status bits


def _run(argv: list, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=900, **kw)
    if p.returncode != 0:
        raise AssertionError(f"{argv} exited {p.returncode}:\n{p.stdout[-2000:]}{p.stderr[-3000:]}")
    return p


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory) -> Path:
    """The package sources without build leftovers; building writes into the tree it builds."""
    dest = tmp_path_factory.mktemp("src") / "userspace"
    shutil.copytree(
        USERSPACE,
        dest,
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.so", "build", "dist", ".*"),
    )
    return dest


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory) -> Path:
    """The bin directory of a new, empty virtualenv."""
    where = tmp_path_factory.mktemp("install") / "venv"
    venv.EnvBuilder(with_pip=True).create(where)
    return where / "bin"


@pytest.fixture(scope="module", params=["pip install ./userspace", "python -m build wheel"])
def installed(request, fresh_venv, source_copy, tmp_path_factory) -> Path:
    """``fresh_venv`` with dumpfilter installed one way or the other."""
    pip = fresh_venv / "pip"
    if request.param.startswith("pip"):
        _run([pip, "install", "-q", source_copy])
    else:
        dist = tmp_path_factory.mktemp("dist")
        _run([sys.executable, "-m", "build", "--wheel", "--outdir", dist, source_copy])
        (wheel,) = dist.glob("dumpfilter-*.whl")
        _run([pip, "uninstall", "-y", "-q", "dumpfilter"], cwd=dist)
        _run([pip, "install", "-q", wheel])
    return fresh_venv


def test_installed_command_runs_from_its_own_virtualenv(installed):
    from dumpfilter import __version__

    assert _run([installed / "dumpfilter", "-v"]).stdout.split() == ["dumpfilter", __version__]
    where = _run([installed / "python", "-c", "import dumpfilter; print(dumpfilter.__file__)"])
    assert Path(where.stdout.strip()).is_relative_to(installed.parent), where.stdout
    assert "usage" in _run([installed / "dumpfilter", "--help"]).stdout
    page = installed.parent / "share" / "man" / "man8" / "dumpfilter.8"
    assert page.read_text() == (USERSPACE / "man" / "dumpfilter.8").read_text()


@pytest.mark.parametrize("codec", CODECS)
def test_installed_command_writes_each_codec_as_the_source_tree_does(
    installed, codec, synth61, tmp_path
):
    ours = tmp_path / "installed.kdump"
    _run([installed / "dumpfilter", codec, "-d", "31", synth61.path, ours])
    ref = tmp_path / "source.kdump"
    run_dumpfilter(codec, "-d", "31", synth61.path, ref, check=True)
    data = ours.read_bytes()
    status = Header.unpack(data).status
    assert status & 0x27 == CODECS[codec], hex(status)
    assert data == ref.read_bytes()
