"""`make demo`: crash a real kernel under QEMU and filter its dump in the capture kernel.

Boots Debian's stock 6.12 kernel (``--kernel 6.1`` for the other one) with a small workload,
loads a capture kernel with ``kexec -p``, panics with sysrq-c, runs ``dumpfilter -d 31 -c`` on
/proc/vmcore inside the capture kernel, then reads the panic message back from the filtered
dump with ``dumpfilter --dump-dmesg`` on the host to show the dump is usable.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import kdumpvm  # noqa: E402

FILTER = "$DUMPFILTER -d 31 -c --stats-json stats.json $VMCORE dump.kdump"


def mib(n: int) -> str:
    return f"{n / (1 << 20):,.1f} MiB"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernel", default="6.12", help='"6.12" (default), "6.1" or a bzImage')
    a = ap.parse_args(argv)
    kernel = kdumpvm.custom_kernel(a.kernel) if "/" in a.kernel else kdumpvm.stock_kernel(a.kernel)
    print(
        f"dumpfilter demo: booting {kernel.release} under QEMU ({kdumpvm.accel()}), "
        "crashing it and filtering the dump in the capture kernel...",
        flush=True,
    )
    t0 = time.monotonic()
    try:
        r = kdumpvm.run_kdump_cycle(kernel, capture_cmds=[FILTER], use_cache=False, tag="demo")
    except kdumpvm.CycleError as e:
        print(f"demo failed: {e}", file=sys.stderr)
        return 1
    wall = time.monotonic() - t0
    if r.rc(0) != 0:
        print(
            f"dumpfilter failed in the capture kernel (exit {r.rc(0)}):\n{r.log(0)[-3000:]}",
            file=sys.stderr,
        )
        return 1
    stats = json.loads(r.path("stats.json").read_text())
    dump = r.path("dump.kdump")
    dmesg = r.dir / "dmesg.txt"
    p = subprocess.run(
        [
            str(kdumpvm.VENV_PYTHON),
            "-m",
            "dumpfilter.cli",
            "--dump-dmesg",
            "-f",
            str(dump),
            str(dmesg),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if p.returncode != 0:
        print(f"dumpfilter --dump-dmesg failed:\n{p.stderr[-2000:]}", file=sys.stderr)
        return 1
    log = dmesg.read_text(errors="replace").splitlines()
    panic = [ln for ln in log if "Kernel panic" in ln or "sysrq" in ln.lower()]

    pages = stats["pages"]
    orig = r.meta["vmcore_size"] or 0
    size = dump.stat().st_size
    filt_wall = r.timings["cmd0"] - r.timings["capture boot"]
    print()
    print(f"kernel release      {r.release}")
    print(f"panic (console)     {r.meta['panic']}")
    print(
        "pages per class     "
        + ", ".join(
            f"{k} {pages[k]:,}"
            for k in (
                "ram",
                "free",
                "user",
                "cache",
                "cache_private",
                "zero",
                "offline",
                "hwpoison",
                "kept",
            )
            if k in pages
        )
    )
    print(f"original vmcore     {mib(orig)}")
    print(
        f"filtered dump       {mib(size)} ({100 * size / orig:.1f} % of the original)"
        if orig
        else f"filtered dump       {mib(size)}"
    )
    secs = stats.get("seconds", {})
    print(
        f"time taken          filter {secs.get('total', float('nan')):.1f} s in the capture "
        f"kernel ({filt_wall:.1f} s with Python start-up); whole cycle {wall:.1f} s"
    )
    print(f"dump                {dump}")
    print(f"console log         {r.console}")
    print("panic message read back from the filtered dump (dumpfilter --dump-dmesg):")
    for ln in panic[:6] or ["(not found!)"]:
        print(f"    {ln}")
    return 0 if panic else 1


if __name__ == "__main__":
    sys.exit(main())
