"""Guest workload run before the crash: fill memory with every page class dumpfilter sorts.

Runs inside the first kernel (host Python from the read-only 9p root, ``python -B``) and stays
resident, so that its memory is still mapped when ``echo c > /proc/sysrq-trigger`` fires.
It records the PFNs it owns (from /proc/self/pagemap: bits 0-54 are the PFN when bit 63
"present" is set, Documentation/admin-guide/mm/pagemap.rst; root sees real PFNs) so the host
can check the classification of exactly these pages, not just totals:

- ``cache``: files on tmpfs, mmap'ed shared -> shmem page cache (LRU, not anon);
- ``anon``: private anonymous memory, THP disabled for it (MADV_NOHUGEPAGE) -> 4K anon pages;
- ``thp``: a 2 MiB-aligned anonymous region with MADV_HUGEPAGE -> THP heads and tails;
- ``hugetlb``: MAP_HUGETLB anonymous pages and a file on hugetlbfs -> hugetlb folios;
- slab growth: many small tmpfs files/dirs (dentry, inode caches); free memory is what is left.

Writes ``pfns_<region>.npy`` (uint64), ``workload.json`` and finally ``workload.ready``.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import signal
import subprocess
import sys
import time

import numpy as np

PAGE = 4096
HPAGE = 2 << 20
MAP_HUGETLB = 0x40000  # <asm-generic/mman-common.h>; not exported by Python's mmap module
MADV_NOHUGEPAGE = 15  # <asm-generic/mman-common.h>
PM_PRESENT = 1 << 63
PM_PFN_MASK = (1 << 55) - 1


def pfns_of(buf: mmap.mmap, length: int) -> np.ndarray:
    """PFNs backing [addr, addr+length) of a mapping, via /proc/self/pagemap (8 bytes/page)."""
    addr = np.frombuffer(buf, dtype=np.uint8).ctypes.data
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(addr // PAGE * 8)
        raw = np.frombuffer(f.read(length // PAGE * 8), dtype=np.uint64)
    if not np.all(raw & np.uint64(PM_PRESENT)):
        raise SystemExit(f"workload: {np.count_nonzero(~(raw >> np.uint64(63)) & 1)} pages absent")
    return raw & np.uint64(PM_PFN_MASK)


def advise(buf: mmap.mmap, advice: int, info: dict) -> None:
    """madvise, tolerating kernels built without it (tinyconfig lacks ADVISE_SYSCALLS: ENOSYS);
    THP then follows the system-wide mode."""
    try:
        buf.madvise(advice)
    except OSError as e:
        info["madvise"] = f"unavailable ({e.strerror})"


def fill(buf: mmap.mmap, seed: int) -> None:
    """Touch every page with non-zero, page-distinct data (so no page is a zero page)."""
    n = len(buf) // PAGE
    rng = np.random.default_rng(seed)
    arr = np.frombuffer(buf, dtype=np.uint64).reshape(n, PAGE // 8)
    arr[:] = rng.integers(1, 1 << 63, size=(n, PAGE // 8), dtype=np.uint64)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--cache-mb", type=int, default=48)
    ap.add_argument("--anon-mb", type=int, default=48)
    ap.add_argument("--thp-mb", type=int, default=32)
    ap.add_argument("--hugetlb-pages", type=int, default=8)
    ap.add_argument("--slab-files", type=int, default=3000)
    ap.add_argument(
        "--then",
        action="append",
        default=[],
        metavar="CMD",
        help="a shell command to run on the live system once memory is populated, just "
        "before the crash (output in live<i>.log, status in live<i>.rc)",
    )
    a = ap.parse_args()
    t0 = time.monotonic()
    keep: list[object] = []
    info: dict[str, object] = {}

    def save(name: str, pfns: np.ndarray) -> None:
        np.save(os.path.join(a.out, f"pfns_{name}.npy"), pfns)
        info[f"{name}_pages"] = int(pfns.size)

    # Page cache: shmem files on tmpfs (/tmp is a tmpfs in the guest), mapped shared.
    os.makedirs("/tmp/wl", exist_ok=True)
    size = a.cache_mb << 20
    fd = os.open("/tmp/wl/cache.bin", os.O_RDWR | os.O_CREAT, 0o600)
    os.ftruncate(fd, size)
    m = mmap.mmap(fd, size, flags=mmap.MAP_SHARED)
    fill(m, 1)
    save("cache", pfns_of(m, size))
    keep.append(m)

    # Anonymous 4K pages.
    size = a.anon_mb << 20
    m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    advise(m, MADV_NOHUGEPAGE, info)
    fill(m, 2)
    save("anon", pfns_of(m, size))
    keep.append(m)

    # THP: over-allocate, then use a 2 MiB-aligned sub-range so whole PMDs can be huge.
    thp = "/sys/kernel/mm/transparent_hugepage/enabled"
    try:
        info["thp_mode"] = open(thp).read().strip()
    except OSError:
        info["thp_mode"] = "absent"
    size = a.thp_mb << 20
    m = mmap.mmap(-1, size + HPAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    advise(m, mmap.MADV_HUGEPAGE, info)
    base = np.frombuffer(m, dtype=np.uint8).ctypes.data
    off = (-base) % HPAGE
    fill(m, 3)
    p = pfns_of(m, size + HPAGE)[off // PAGE : (off + size) // PAGE]
    save("thp", p)
    keep.append(m)

    # hugetlb: reserve pages, use half through MAP_HUGETLB, half through a hugetlbfs file.
    n = a.hugetlb_pages
    if n:
        with open("/proc/sys/vm/nr_hugepages", "w") as f:
            f.write(str(n))
        got = int(open("/proc/sys/vm/nr_hugepages").read())
        if got < n:
            raise SystemExit(f"workload: only {got} of {n} hugetlb pages reserved")
        n1 = n // 2
        m = mmap.mmap(-1, n1 * HPAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_HUGETLB)
        fill(m, 4)
        parts = [pfns_of(m, n1 * HPAGE)]
        keep.append(m)
        os.makedirs("/tmp/hugetlbfs", exist_ok=True)
        if os.system("mount -t hugetlbfs none /tmp/hugetlbfs") != 0:
            raise SystemExit("workload: cannot mount hugetlbfs")
        fd = os.open("/tmp/hugetlbfs/h", os.O_RDWR | os.O_CREAT, 0o600)
        os.ftruncate(fd, (n - n1) * HPAGE)
        m = mmap.mmap(fd, (n - n1) * HPAGE, flags=mmap.MAP_SHARED)
        fill(m, 5)
        parts.append(pfns_of(m, (n - n1) * HPAGE))
        keep.append(m)
        save("hugetlb", np.concatenate(parts))

    # Slab growth: dentries and inodes of many small files and directories.
    os.makedirs("/tmp/wl/slab", exist_ok=True)
    for i in range(a.slab_files):
        d = f"/tmp/wl/slab/d{i}"
        os.mkdir(d)
        open(f"{d}/f", "w").close()

    info["thp_anon_kb"] = next(
        int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("AnonHugePages")
    )
    info["seconds"] = round(time.monotonic() - t0, 2)
    for i, cmd in enumerate(a.then):
        with open(os.path.join(a.out, f"live{i}.log"), "wb") as log:
            rc = subprocess.run(cmd, shell=True, cwd=a.out, stdout=log, stderr=log).returncode
        with open(os.path.join(a.out, f"live{i}.rc"), "w") as f:
            f.write(f"{rc}\n")
    with open(os.path.join(a.out, "workload.json"), "w") as f:
        json.dump(info, f)
    open(os.path.join(a.out, "workload.ready"), "w").close()
    print("workload ready", json.dumps(info), flush=True)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    while True:  # hold every mapping until the crash
        time.sleep(3600)
    return 0


if __name__ == "__main__":
    sys.exit(main())
