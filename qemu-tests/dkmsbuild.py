"""The /proc/vmcore_pfn_lists module built by DKMS, as a distribution kernel gets it.

kernel-patches/module/dkms.conf is the package; ``make dkms-source`` assembles the tree a
package installs under /usr/src.  Here that tree and DKMS's own state live in the cache
(``--sourcetree``/``--dkmstree`` under ``$CACHE/kernels/dkms/work``, remade for every build
at a fixed path, so that the same sources give the same module bytes), and the headers are
the stock kernel's unpacked in the cache (``--kernelsourcedir``): the host's /usr/src,
/var/lib/dkms and /lib/modules are not touched and no kernel package is installed.  The
built module is copied to
``$CACHE/kernels/dkms/<release>/vmcore_pfn_lists.ko``.
"""

from __future__ import annotations

import fcntl
import re
import shutil
import subprocess
from pathlib import Path

import debkernels

MODULE_DIR = Path(__file__).resolve().parent.parent / "kernel-patches" / "module"


# Series whose stock headers this host cannot build with (sid's: host tools linked against a
# newer glibc, config made by gcc 16): DKMS builds against stock-kbuild.sh's directory instead.
OWN_KBUILD = ("7.2",)


def kernel_build_dir(modules: Path, series: str) -> Path:
    """What ``dkms build --kernelsourcedir`` gets for a stock kernel whose unpacked modules
    tree is ``modules``: its ``build`` link (the headers package), or for OWN_KBUILD series the
    build directory kernel-patches/module/stock-kbuild.sh prepares from the same source."""
    if series not in OWN_KBUILD:
        return modules / "build"
    k = subprocess.run(
        [str(MODULE_DIR / "stock-kbuild.sh"), series],
        capture_output=True, text=True, timeout=3600, check=False,
    )  # fmt: skip
    if k.returncode:
        raise AssertionError(f"stock-kbuild.sh {series} failed:\n{k.stderr[-3000:]}")
    return Path(k.stdout.strip().splitlines()[-1])


def package() -> tuple[str, str]:
    """(PACKAGE_NAME, PACKAGE_VERSION) of dkms.conf."""
    conf = (MODULE_DIR / "dkms.conf").read_text()
    name = re.search(r'(?m)^PACKAGE_NAME="([^"]+)"', conf)
    ver = re.search(r'(?m)^PACKAGE_VERSION="([^"]+)"', conf)
    if not name or not ver:
        raise ValueError("dkms.conf has no PACKAGE_NAME or PACKAGE_VERSION")
    return name.group(1), ver.group(1)


def build(release: str, headers: Path) -> tuple[Path, str]:
    """``dkms build`` of the module for kernel ``release`` against ``headers``: the module's
    path and what ``dkms status`` said about it."""
    name, ver = package()
    base = debkernels.cache_dir() / "kernels" / "dkms"
    base.mkdir(parents=True, exist_ok=True)
    with open(base / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time uses the work directory
        work = base / "work"
        shutil.rmtree(work, ignore_errors=True)
        src, tree = work / "src", work / "tree"
        tree.mkdir(parents=True)
        subprocess.run(
            ["make", "-s", "-C", str(MODULE_DIR), "dkms-source", f"DEST={src}/{name}-{ver}"],
            check=True,
            capture_output=True,
        )
        trees = ["--sourcetree", str(src), "--dkmstree", str(tree)]
        p = subprocess.run(
            ["nice", "-n", "10", "dkms", "build", "-m", name, "-v", ver, "-k", release,
             "--kernelsourcedir", str(headers), *trees],
            capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        log = sorted(tree.glob(f"{name}/{ver}/build/make.log"))
        if p.returncode:
            raise AssertionError(
                f"dkms build for {release} failed:\n{p.stdout[-2000:]}{p.stderr[-2000:]}"
                + (log[0].read_text()[-2000:] if log else "")
            )
        status = subprocess.run(
            ["dkms", "status", "-m", name, "-v", ver, "-k", release, *trees],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        (ko,) = tree.glob(f"{name}/{ver}/{release}/*/module/vmcore_pfn_lists.ko*")
        dest = base / release
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ko, dest / ko.name)
        shutil.rmtree(work)
    return dest / ko.name, status
