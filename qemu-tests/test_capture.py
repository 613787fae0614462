"""dumpfilter run inside a real capture kernel, on Debian's stock 6.1 and 6.12."""

from __future__ import annotations

import json

import numpy as np

from conftest import host_classes, run_dumpfilter
from e2elib import RawVmcore, kdump_bitmap1, kdump_header
from kdumpvm import CycleResult

# PageClass numbers (dumpfilter.pageclass; also the kernel ABI's class numbers).
CACHE, CACHE_PRIVATE, USER, FREE = 1, 2, 3, 4


def test_capture_kernel_dumpfilter_writes_a_kdump_file_of_the_crashed_kernel(cycle: CycleResult):
    cycle.check(0)
    h = kdump_header(cycle.path("df31.kdump"))
    assert h["release"] == cycle.release
    assert h["dump_level"] == 31
    assert h["status"] & 0x1, "-c must give zlib pages (status bit DUMP_DH_COMPRESSED_ZLIB)"
    raw = RawVmcore(cycle.path("vmcore"))
    assert h["max_mapnr"] == raw.max_pfn


def test_capture_kernel_stats_match_the_host_scan_of_the_same_crash(cycle: CycleResult):
    """The stats the capture kernel reported equal a host-side scan of the raw copy of the
    same /proc/vmcore: the capture environment changes nothing in the classification."""
    cycle.check(0)
    stats = json.loads(cycle.path("df31.json").read_text())
    pages = stats["pages"]
    cls = host_classes(cycle)
    assert pages["free"] == int(np.count_nonzero(cls == FREE))
    assert pages["user"] == int(np.count_nonzero(cls == USER))
    assert pages["cache"] + pages["cache_private"] == int(
        np.count_nonzero((cls == CACHE) | (cls == CACHE_PRIVATE))
    )
    raw = RawVmcore(cycle.path("vmcore"))
    ram = int(kdump_bitmap1(cycle.path("df31.kdump")).sum())
    assert pages["ram"] == ram, "the report and the dump's RAM bitmap disagree"
    # Pages a PT_LOAD covers only in part may count either way (makedumpfile's 1st bitmap
    # counts them); everything else must.
    assert int(raw.ram(partial=False).sum()) <= ram <= int(raw.ram().sum())
    assert 0 < pages["kept"] < ram // 2, "a -d 31 dump of an idle 1G guest keeps well under half"


def test_filtered_dump_is_far_smaller_than_the_vmcore(cycle: CycleResult):
    cycle.check(0)
    size = cycle.path("df31.kdump").stat().st_size
    assert size * 8 < cycle.meta["vmcore_size"], (size, cycle.meta["vmcore_size"])


def test_dump_dmesg_reads_the_panic_back_from_the_filtered_dump(cycle: CycleResult, tmp_path):
    """The kept pages include the printk ring: the panic message is readable from the dump."""
    cycle.check(0)
    out = tmp_path / "dmesg.txt"
    run_dumpfilter("--dump-dmesg", str(cycle.path("df31.kdump")), str(out))
    text = out.read_text(errors="replace")
    assert "sysrq triggered crash" in text
    assert cycle.meta["panic"].split("] ")[-1] in text
