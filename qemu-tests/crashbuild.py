#!/usr/bin/env python3
"""The crash utility that can read a given kernel: Debian's, or one built into the cache.

Debian bookworm's crash 8.0.2 reads 6.1 dumps but stops on 6.12 (``invalid structure member
offset: module_core_size``: 6.4 replaced the module core/init layout with mem[] regions).  For
newer kernels this builds crash from Debian's current source package (unstable's, which
bundles the gdb it links) into the cache, the way Debian builds it (``make lzo snappy zstd``
after the plain build), under ``nice``; nothing is installed on the host.

    $CACHE/crash/<version>/crash        the built binary
    $CACHE/crash/src/                   the source package while it is built (deleted after)

    crashbuild.py build      build (if not cached) and print the binary's path
    crashbuild.py for REL    print the crash binary that reads kernel release REL
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import debkernels

SYSTEM_CRASH = "/usr/bin/crash"
SOURCE_SUITE = (debkernels.ARCHIVE, "sid")


def _say(msg: str) -> None:
    print(f"crashbuild: {msg}", file=sys.stderr)


def root() -> Path:
    return debkernels.cache_dir() / "crash"


def _apt_opts() -> list[str]:
    d = root() / "apt"
    (d / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (d / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    uri, suite = SOURCE_SUITE
    line = f"deb-src [signed-by={debkernels.KEYRING}] {uri} {suite} main\n"
    src = d / "sources.list"
    if not src.exists() or src.read_text() != line:
        src.write_text(line)
    return [
        f"-o=Dir::Etc::sourcelist={src}",
        "-o=Dir::Etc::sourceparts=-",
        f"-o=Dir::State::Lists={d / 'lists'}",
        f"-o=Dir::Cache={d / 'cache'}",
        "-o=Dir::State::status=/dev/null",
        "-o=APT::Sandbox::User=root",
        "-qq",
    ]


def _built() -> Path | None:
    """The newest crash binary built into the cache, if any."""
    found = sorted(root().glob("*/crash"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def _source_version() -> str:
    r = subprocess.run(["apt-get", *_apt_opts(), "update"], capture_output=True, text=True)
    if r.returncode != 0:
        raise debkernels.FetchError(f"apt-get update (sources) failed: {r.stderr.strip()}")
    r = subprocess.run(
        ["apt-cache", *_apt_opts(), "showsrc", "crash"], capture_output=True, text=True
    )
    versions = re.findall(r"(?m)^Version: (\S+)$", r.stdout)
    if not versions:
        raise debkernels.FetchError("the archive has no source package crash")
    return versions[0]


def build() -> Path:
    """crash from Debian's current source package, built once into the cache."""
    ver = _source_version()
    dest = root() / ver.split(":", 1)[-1]
    binary = dest / "crash"
    if binary.exists():
        return binary
    (root() / "src").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root() / "src") as tmp:
        r = subprocess.run(
            ["apt-get", *_apt_opts(), "source", "--download-only", f"crash={ver}"],
            cwd=tmp,
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            raise debkernels.FetchError(f"apt-get source crash={ver} failed: {r.stderr.strip()}")
        (dsc,) = Path(tmp).glob("crash_*.dsc")
        subprocess.run(
            ["dpkg-source", "-x", dsc.name, "tree"], cwd=tmp, check=True, capture_output=True
        )
        tree = Path(tmp) / "tree"
        log = root() / f"build-{dest.name}.log"
        _say(f"building crash {ver} (bundled gdb; log {log})")
        start = time.monotonic()
        with open(log, "w") as f:
            # Debian's rules: the plain build, then the compression codecs a dump may use.
            for target in ([], ["lzo"], ["snappy"], ["zstd"]):
                r = subprocess.run(
                    ["nice", "-n", "10", "make", *target], cwd=tree, stdout=f, stderr=f
                )
                if r.returncode != 0:
                    raise debkernels.FetchError(f"crash {ver}: make {' '.join(target)} failed")
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(tree / "crash", dest / ".crash.tmp")
        os.replace(dest / ".crash.tmp", binary)
        _say(f"crash {ver} built in {time.monotonic() - start:.0f} s: {binary}")
    return binary


def crash_for(release: str) -> str:
    """The crash binary that reads dumps of kernel ``release``: Debian's own for 6.1 and
    older, the one built from the current source package (built now if not cached) after."""
    m = re.match(r"(\d+)\.(\d+)", release)
    if m and (int(m.group(1)), int(m.group(2))) <= (6, 1) and os.path.exists(SYSTEM_CRASH):
        return SYSTEM_CRASH
    built = _built()
    return str(built if built is not None else build())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("build", help="build crash from the current source package; print its path")
    f = sub.add_parser("for", help="print the crash binary that reads a kernel release")
    f.add_argument("release")
    a = ap.parse_args(argv)
    try:
        print(build() if a.cmd == "build" else crash_for(a.release))
    except (debkernels.FetchError, subprocess.CalledProcessError) as e:
        _say(str(e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
