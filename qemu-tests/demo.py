"""`make demo`: crash a real kernel under QEMU and filter its dump in the capture kernel.

Boots Debian's stock 6.12 kernel (``--kernel 6.1`` for the other one) with a small workload,
loads a capture kernel with ``kexec -p``, panics with sysrq-c, runs ``dumpfilter -d 31 -c`` on
/proc/vmcore inside the capture kernel, then reads the panic message back from the filtered
dump with ``dumpfilter --dump-dmesg`` on the host and opens it with drgn and the kernel's
debug info (Debian's -dbg package, fetched once into the cache) to print the crashed task's
stack: the dump is usable.

When the cache holds the /proc/vmcore_pfn_lists module for that kernel (built by DKMS or
``make -C kernel-patches/module``, as the kernel-scan tests do) the capture kernel loads it
and dumpfilter classifies with the kernel scan (``--kernel-scan=require``), and the demo
shows its time next to the userspace scan's on the same /proc/vmcore.  A patched kernel
(``--kernel PATH/bzImage``, e.g. $DUMPFILTER_CACHE/kernels/linux-7.2-patched-debug/bzImage)
has the interface built in and is shown the same way.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import debkernels  # noqa: E402
import kdumpvm  # noqa: E402

FILTER = "$DUMPFILTER -d 31 -c --stats-json stats.json $VMCORE dump.kdump"
KSCAN = "$DUMPFILTER --kernel-scan=require -d 31 -c --stats-json stats.json $VMCORE dump.kdump"
USCAN = "$DUMPFILTER -d 31 --dry-run --stats-json ustats.json $VMCORE"


def mib(n: int) -> str:
    return f"{n / (1 << 20):,.1f} MiB"


def cached_module(release: str) -> Path | None:
    """The vmcore_pfn_lists module built for ``release`` (DKMS or make), if in the cache."""
    kernels = debkernels.cache_dir() / "kernels"
    for d in (kernels / "dkms" / release, kernels / "module" / release):
        if (d / "vmcore_pfn_lists.ko").exists():
            return d / "vmcore_pfn_lists.ko"
    return None


def patched_vmlinux(image: Path) -> Path | None:
    """build-kernel.sh keeps vmlinux next to bzImage."""
    v = image.parent / "vmlinux"
    return v if v.exists() else None


def crashed_stack(dump: Path, vmlinux: Path) -> list[str]:
    """The crashed thread's stack as drgn prints it, from the filtered dump."""
    import drgn

    prog = drgn.Program()
    prog.set_core_dump(str(dump))
    prog.load_debug_info([str(vmlinux)])
    thread = prog.crashed_thread()
    task = thread.object
    head = f"PID {thread.tid} ({task.comm.string_().decode()}), the thread that panicked:"
    return [head, *str(thread.stack_trace()).splitlines()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernel", default="6.12", help='"6.12" (default), "6.1" or a bzImage')
    a = ap.parse_args(argv)
    patched = "/" in a.kernel
    if patched:
        image = Path(a.kernel)
        kernel = kdumpvm.custom_kernel(image, vmlinux=patched_vmlinux(image))
    else:
        kernel = kdumpvm.stock_kernel(a.kernel)
    module = None if patched else cached_module(kernel.release)
    if patched:
        cmds, scan_note = [KSCAN, USCAN], "the kernel scan (interface built into this kernel)"
    elif module is not None:
        cmds = [f"insmod {module}", KSCAN, USCAN]
        scan_note = f"the kernel scan (module {module})"
    else:
        cmds, scan_note = [FILTER], "the userspace scan (no patched kernel or module cached)"
    print(
        f"dumpfilter demo: booting {kernel.release} under QEMU ({kdumpvm.accel()}), "
        "crashing it and filtering the dump in the capture kernel...",
        flush=True,
    )
    t0 = time.monotonic()
    try:
        r = kdumpvm.run_kdump_cycle(kernel, capture_cmds=cmds, use_cache=False, tag="demo")
    except kdumpvm.CycleError as e:
        print(f"demo failed: {e}", file=sys.stderr)
        return 1
    wall = time.monotonic() - t0
    for i, cmd in enumerate(cmds):
        if r.rc(i) != 0:
            print(
                f"{cmd!r} failed in the capture kernel (exit {r.rc(i)}):\n{r.log(i)[-3000:]}",
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
    fi = cmds.index(KSCAN) if KSCAN in cmds else 0  # the command that wrote dump.kdump
    filt_wall = r.timings[f"cmd{fi}"] - r.timings[f"cmd{fi - 1}" if fi else "capture boot"]
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
    print(f"classified by       {scan_note}")
    if len(cmds) > 1:
        ustats = json.loads(r.path("ustats.json").read_text())
        same = all(ustats["pages"][k] == pages[k] for k in pages)
        print(
            f"scan time           kernel scan {stats['seconds']['scan'] * 1000:.1f} ms "
            f"({stats['scan']}), userspace scan {ustats['seconds']['scan'] * 1000:.1f} ms "
            f"on the same /proc/vmcore; page counts {'equal' if same else 'DIFFER'}"
        )
    print(f"dump                {dump}")
    print(f"console log         {r.console}")
    print("panic message read back from the filtered dump (dumpfilter --dump-dmesg):")
    for ln in panic[:6] or ["(not found!)"]:
        print(f"    {ln}")
    if not panic:
        return 1
    vmlinux = kernel.vmlinux
    if vmlinux is None:
        try:
            vmlinux = debkernels.fetch_dbg(kernel.release)
        except debkernels.FetchError as e:
            print(f"drgn: no debug info for {kernel.release}: {e}")
            return 0
    print(f"the filtered dump opened with drgn ({vmlinux}):")
    for ln in crashed_stack(dump, vmlinux):
        print(f"    {ln}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
