"""The module as a DKMS package: ``dkms build`` against Debian's stock 6.1, 6.12 and 7.2 headers
(7.2: against the build directory stock-kbuild.sh prepares, see dkmsbuild.OWN_KBUILD).

That the module DKMS built loads and answers in a capture kernel is test_kernel_scan.py's
module cycles: they load exactly this build (dkmsbuild.py).
"""

from __future__ import annotations

import hashlib
import subprocess

import pytest

import dkmsbuild
import kdumpvm
from conftest import KERNELS


@pytest.mark.parametrize("series", KERNELS)
def test_dkms_builds_the_module_for_the_stock_kernel(series):
    kernel = kdumpvm.stock_kernel(series)
    name, ver = dkmsbuild.package()
    kdir = dkmsbuild.kernel_build_dir(kernel.modules, series)
    ko, status = dkmsbuild.build(kernel.release, kdir)
    assert status.startswith(f"{name}/{ver}, {kernel.release}, x86_64: built"), status
    info = subprocess.run(["modinfo", str(ko)], capture_output=True, text=True, check=True)
    fields = dict(line.split(":", 1) for line in info.stdout.splitlines() if ":" in line)
    assert fields["vermagic"].split()[0] == kernel.release
    assert fields["name"].strip() == "vmcore_pfn_lists"
    # the same sources give the same module: the cycle cache keys on its digest
    again, _ = dkmsbuild.build(kernel.release, kdir)
    assert hashlib.sha256(again.read_bytes()).digest() == hashlib.sha256(ko.read_bytes()).digest()
