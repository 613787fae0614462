#!/usr/bin/env python3
"""Exercise /proc/vmcore_pfn_lists inside a kdump capture kernel and record what happened.

Run by qemu-tests/test_kernel_scan.py as a capture command (cwd = the cycle directory):

    $PYTHON -B kernel-patches/tests/vpl_probe.py [--insmod MODULE.ko]

Writes, in the current directory:
- ``vpl_probe.json``: the INFO answer, per-level scan statistics and times, the timing of the
  kernel scan against the userspace scan on this same /proc/vmcore, the errno of every hostile
  request, and any oops/BUG/WARNING lines the kernel logged meanwhile;
- ``vpl_runs.npz``: the kernel's runs for dump levels 0..31 (``l<N>_pfn/_count/_cls``).
The host compares the runs with the userspace scan of the raw vmcore saved by the same cycle.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import errno
import json
import mmap
import os
import re
import signal
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
from dumpfilter import kernelscan as ks
from dumpfilter import scan, source


def materialize(c) -> np.ndarray:
    out = np.empty(c.max_pfn, np.uint8)
    for w0, arr in c.windows():
        out[w0 : w0 + len(arr)] = arr
    return out


def raw_scan(fd: int, *, chunks_ptr: int, nr_chunks: int, runs_ptr: int, max_runs: int,
             level: int = 31, size: int = ks.SCAN.size, flags: int = 0, next_chunk: int = 0,
             next_pfn: int = 0, ioctl_nr: int = ks.IOC_SCAN) -> tuple[int, tuple]:  # fmt: skip
    """One VMCORE_PFN_IOC_SCAN with arbitrary fields: (errno or 0, fields written back)."""
    import fcntl

    buf = bytearray(
        ks.SCAN.pack(size, flags, level, nr_chunks, chunks_ptr, runs_ptr, max_runs, 0,
                     next_chunk, 0, next_pfn, *([0] * ks.NR_CLASSES))
    )  # fmt: skip
    try:
        fcntl.ioctl(fd, ioctl_nr, buf)
    except OSError as e:
        return e.errno, ()
    return 0, ks.SCAN.unpack(bytes(buf))


def capture_ram() -> list[tuple[int, int]]:
    """This (capture) kernel's own System RAM ranges, from /proc/iomem."""
    out = []
    for line in Path("/proc/iomem").read_text().splitlines():
        m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) : System RAM$", line.strip())
        if m and not line.startswith(" "):
            out.append((int(m.group(1), 16), int(m.group(2), 16) + 1))
    return out


def hostile(fd: int, chunks: np.ndarray, spage: int) -> dict[str, dict]:
    """Requests a buggy or hostile client could make; each must fail cleanly (or, for garbage
    struct pages, succeed without harm)."""
    runs = np.zeros(4096, ks.RUN_DTYPE)
    rp, cp = runs.ctypes.data, chunks.ctypes.data
    res: dict[str, dict] = {}

    def case(name: str, expect: int, table: np.ndarray | None = None, **kw) -> None:
        t = chunks if table is None else np.ascontiguousarray(table, ks.CHUNK_DTYPE)
        args = {
            "chunks_ptr": t.ctypes.data,
            "nr_chunks": len(t),
            "runs_ptr": rp,
            "max_runs": len(runs),
        }
        args.update(kw)
        err, _ = raw_scan(fd, **args)
        res[name] = {
            "errno": err,
            "expected": expect,
            "name": errno.errorcode.get(err, "0"),
        }

    def table(*rows) -> np.ndarray:
        return np.array(list(rows), ks.CHUNK_DTYPE)

    c0 = tuple(int(x) for x in chunks[0])
    case("chunk_outside_old_memory", errno.ERANGE, table((c0[0], c0[1], 1 << 45)))
    own = [r for r in capture_ram() if r[1] - r[0] >= 1 << 24]
    if own:
        case(
            "chunk_in_capture_kernel_ram",
            errno.ERANGE,
            table((c0[0], 4096, own[-1][0])),
        )
    case("overlapping_chunks", errno.EINVAL,
         table((c0[0], 4096, c0[2]), (c0[0] + 4095, 4096, c0[2] + 4095 * spage)))  # fmt: skip
    case("unsorted_chunks", errno.EINVAL,
         table((c0[0] + 8192, 4096, c0[2] + 8192 * spage), (c0[0], 4096, c0[2])))  # fmt: skip
    case("empty_chunk", errno.EINVAL, table((c0[0], 0, c0[2])))
    case("huge_chunk", errno.E2BIG, table((0, 1 << 30, c0[2])))
    case("pfn_range_overflow", errno.EINVAL, table(((1 << 64) - 8, 16, c0[2])))
    case("paddr_overflow", errno.ERANGE, table((c0[0], 4, (1 << 64) - 64)))
    case("misaligned_struct_page_address", errno.EINVAL, table((c0[0], 16, c0[2] + 4)))
    case("too_many_chunks", errno.E2BIG, nr_chunks=(1 << 20) + 1)
    case("no_chunks", errno.EINVAL, nr_chunks=0)
    case("bad_struct_size", errno.EINVAL, size=ks.SCAN.size - 8)
    case("unknown_flags", errno.EINVAL, flags=1)
    case("unknown_dump_level_bits", errno.EINVAL, level=0x20)
    case("no_room_for_runs", errno.EINVAL, max_runs=0)
    case("misaligned_run_buffer", errno.EINVAL, runs_ptr=rp + 4)
    case("misaligned_chunk_table", errno.EINVAL, chunks_ptr=cp + 4)
    case("unmapped_run_buffer", errno.EFAULT, runs_ptr=4096)
    case("unmapped_chunk_table", errno.EFAULT, chunks_ptr=4096)
    case("cursor_past_table", errno.EINVAL, next_chunk=len(chunks) + 1)
    case("cursor_far_beyond_pfns", 0, next_pfn=(1 << 62))
    case("unknown_ioctl", errno.ENOTTY, ioctl_nr=ks.IOC_SCAN + 1)
    # struct pages that are not struct pages: the first 32768*spage bytes of the chunk's own
    # RAM range interpreted at a wrong offset; must not oops (wrong runs are acceptable).
    case("garbage_struct_pages", 0, table((c0[0], 32768, c0[2] + 8)))
    # A run buffer of one entry: thousands of resumed calls must cover the same pages.
    res["one_run_per_call"] = one_run_per_call(fd, np.ascontiguousarray(chunks[:2]))
    res["unprivileged_open"] = unprivileged_open()
    return res


def aliasing_table(chunks: np.ndarray, nr: int) -> np.ndarray:
    """``nr`` chunks with disjoint page frame ranges that all name the first chunk's struct
    pages: valid, and without a bound per call one ioctl would visit all of them."""
    n0 = int(min(int(chunks[0]["nr_pages"]), ks.MAX_CHUNK_PAGES))
    table = np.zeros(nr, ks.CHUNK_DTYPE)
    table["start_pfn"] = np.arange(nr, dtype=np.uint64) * np.uint64(n0)
    table["nr_pages"] = n0
    table["paddr"] = chunks[0]["paddr"]
    return table


def work_bound(fd: int, chunks: np.ndarray) -> dict:
    """One call on 4096 aliasing chunks: returns soon, with its cursor, not done."""
    table = aliasing_table(chunks, 4096)
    runs = np.zeros(1 << 16, ks.RUN_DTYPE)
    t0 = time.monotonic()
    err, f = raw_scan(fd, chunks_ptr=table.ctypes.data, nr_chunks=len(table),
                      runs_ptr=runs.ctypes.data, max_runs=len(runs))  # fmt: skip
    dt = time.monotonic() - t0
    if err:
        return {"errno": err, "seconds": dt}
    return {"errno": 0, "seconds": dt, "covered": int(sum(f[11:])), "done": f[9],
            "next_chunk": f[8], "total_pfns": int(table["nr_pages"].sum())}  # fmt: skip


def signal_stop(chunks: np.ndarray, signo: int) -> dict:
    """A child scans a table of 2^20 aliasing chunks (hours of work) with a Python handler for
    ``signo``; the parent sends it after 1 s.  Bounded calls and the kernel's signal checks
    must let the handler run within a fraction of a second."""
    table = aliasing_table(chunks, 1 << 20)  # VMCORE_PFN_MAX_CHUNKS
    pid = os.fork()
    if pid == 0:
        def stop(*_):
            os._exit(42)

        signal.signal(signo, stop)
        try:
            with ks.KernelScanner() as k:
                k.scan(table, 31)
        except (OSError, ks.KernelScanUnavailable):
            os._exit(43)
        os._exit(0)
    time.sleep(1.0)
    t0 = time.monotonic()
    os.kill(pid, signo)
    _, status = os.waitpid(pid, 0)
    return {"signal": signal.Signals(signo).name, "exit": os.waitstatus_to_exitcode(status),
            "seconds_to_stop": time.monotonic() - t0}  # fmt: skip


def fake_vmcore() -> bytes:
    """An ELF core with one 4 KiB PT_LOAD at physical 0 and no notes."""
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    eh = struct.pack("<16sHHIQQQIHHHHHH", ident, 4, 62, 1, 0, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    ph = struct.pack("<IIQQQQQQ", 1, 7, 0x1000, 0, 0, 0x1000, 0x1000, 0)
    return (eh + ph).ljust(0x2000, b"\0")


def in_child(fn, *args) -> dict:
    """``fn(*args)`` in a child process; its dict comes back through a pipe.  A child killed
    by a signal (an ia32 system call where the kernel does not take them) is reported."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        try:
            out = fn(*args)
        except (OSError, ValueError, ks.KernelScanUnavailable) as e:
            out = {"error": str(e)}
        os.write(wfd, json.dumps(out).encode())
        os._exit(0)
    os.close(wfd)
    data = b""
    while chunk := os.read(rfd, 65536):
        data += chunk
    os.close(rfd)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return {"error": f"killed by {signal.Signals(os.WTERMSIG(status)).name}"}
    return json.loads(data or b"{}")


def namespace_open() -> dict:
    """The first open of the interface, from a mount namespace whose /proc/vmcore is another
    file (an ELF core with one bogus range and no VMCOREINFO): the interface must describe the
    true old memory all the same, and later openers must get the same answer."""
    fake = Path("vpl_fake_vmcore").resolve()
    fake.write_bytes(fake_vmcore())

    def child() -> dict:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(0x00020000):  # CLONE_NEWNS
            raise OSError(ctypes.get_errno(), "unshare")
        if libc.mount(b"none", b"/", None, 0x4000 | 0x40000, None):  # MS_REC | MS_PRIVATE
            raise OSError(ctypes.get_errno(), "mount private")
        if libc.mount(str(fake).encode(), b"/proc/vmcore", None, 0x1000, None):  # MS_BIND
            raise OSError(ctypes.get_errno(), "bind mount")
        out: dict = {}
        with open("/proc/vmcore", "rb") as f:
            out["sees_fake"] = f.read(len(fake_vmcore())) == fake_vmcore()
        with ks.KernelScanner() as k:
            out["info"] = dataclasses.asdict(k.info())
        return out

    return in_child(child)


def compat_info_and_scan(chunks: np.ndarray) -> dict:
    """INFO and a whole scan through the ia32 system call entry (int 0x80), with every
    structure below 4 GiB, as a 32-bit program would make them: the kernel takes the compat
    ioctl path.  Only where the kernel has IA32 emulation."""
    syms = Path("/proc/kallsyms").read_text()
    if not re.search(r" __ia32_(compat_)?sys_ioctl$", syms, re.MULTILINE):
        return {"skipped": "no IA32 emulation"}
    map_32bit = 0x40
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | map_32bit
    # push rbx; mov ebx, edi; mov ecx, esi; mov eax, 54 (ia32 ioctl); int 0x80;
    # movsxd rax, eax; pop rbx; ret  -- edx already holds the third argument
    code = bytes.fromhex("5389fb89f1b836000000cd804863c05bc3")
    text = mmap.mmap(-1, 4096, flags=flags,
                     prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)  # fmt: skip
    text.write(code)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(text))
    call = ctypes.CFUNCTYPE(ctypes.c_long, ctypes.c_int, ctypes.c_uint, ctypes.c_uint)(addr)
    table = np.ascontiguousarray(chunks, ks.CHUNK_DTYPE)
    mem = mmap.mmap(-1, ks.SCAN.size + ks.INFO.size + table.nbytes + (1 << 20), flags=flags)
    base = ctypes.addressof(ctypes.c_char.from_buffer(mem))
    req_at, info_at = base, base + ks.SCAN.size
    tab_at = info_at + ks.INFO.size
    runs_at = (tab_at + table.nbytes + 7) & ~7
    max_runs = (base + len(mem) - runs_at) // ks.RUN_DTYPE.itemsize
    ctypes.memmove(tab_at, table.ctypes.data, table.nbytes)
    out: dict = {"base": base}
    with ks.KernelScanner() as k:
        ret = call(k.fd, ks.IOC_INFO, info_at)
        out["info_ret"] = ret
        out["info"] = dataclasses.asdict(ks.KernelInfo.unpack(ctypes.string_at(info_at,
                                                                                ks.INFO.size)))
        parts, nc, npfn, calls = [], 0, 0, 0
        while True:
            ctypes.memmove(req_at, ks.SCAN.pack(ks.SCAN.size, 0, 31, len(table), tab_at,
                                                runs_at, max_runs, 0, nc, 0, npfn,
                                                *([0] * ks.NR_CLASSES)), ks.SCAN.size)  # fmt: skip
            ret = call(k.fd, ks.IOC_SCAN, req_at)
            calls += 1
            if ret:
                out["scan_ret"] = ret
                return out
            f = ks.SCAN.unpack(ctypes.string_at(req_at, ks.SCAN.size))
            runs = np.frombuffer(ctypes.string_at(runs_at, f[7] * 16), ks.RUN_DTYPE).copy()
            parts.append(runs)
            if f[9]:
                break
            nc, npfn = f[8], f[10]
    allruns = np.concatenate(parts)
    np.save("vpl_compat_runs.npy", allruns)
    out.update(scan_ret=0, calls=calls, runs=len(allruns))
    return out


def one_run_per_call(fd: int, chunks: np.ndarray) -> dict:
    runs = np.zeros(1, ks.RUN_DTYPE)
    got: list[tuple[int, int, int]] = []
    nc, npfn, calls = 0, 0, 0
    while calls < 1_000_000:
        err, f = raw_scan(fd, chunks_ptr=chunks.ctypes.data, nr_chunks=len(chunks),
                          runs_ptr=runs.ctypes.data, max_runs=1, next_chunk=nc,
                          next_pfn=npfn)  # fmt: skip
        calls += 1
        if err:
            return {"errno": err, "calls": calls}
        if f[7]:
            got.append((int(runs[0]["pfn"]), int(runs[0]["count"]), int(runs[0]["cls"])))
        if f[9]:
            break
        nc, npfn = f[8], f[10]
    arr = np.array(got, ks.RUN_DTYPE)
    np.save("vpl_one_run_per_call.npy", arr)
    return {"errno": 0, "calls": calls, "runs": len(got)}


def unprivileged_open() -> dict:
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.setgid(65534)
            os.setuid(65534)
            os.close(os.open(ks.DEVICE, os.O_RDONLY))
        except OSError as e:
            code = e.errno
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    err = os.waitstatus_to_exitcode(status)
    return {
        "errno": err,
        "name": errno.errorcode.get(err, "0"),
        "expected": "EACCES or EPERM",
    }


def kernel_log_problems() -> list[str]:
    try:
        log = subprocess.run(
            ["dmesg"], check=False, capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return [f"dmesg failed: {e}"]
    bad = re.compile(r"Oops|BUG:|WARNING:|general protection|Call Trace|scans refused")
    return [ln for ln in log.splitlines() if bad.search(ln)]


def dmesg_tail(n: int = 80) -> list[str]:
    p = subprocess.run(["dmesg"], check=False, capture_output=True, text=True, timeout=30)
    return p.stdout.splitlines()[-n:]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--insmod", help="load this module first (stock kernels)")
    ap.add_argument("--digest", help="ignored: makes the host's cycle cache key change")
    ap.add_argument("--module-digest", help="ignored: as --digest, for the module")
    a = ap.parse_args()
    res: dict = {}
    if a.insmod:
        p = subprocess.run(["insmod", a.insmod], check=False, capture_output=True, text=True)
        res["insmod"] = {"rc": p.returncode, "stderr": p.stderr.strip()}
    res["present"] = os.path.exists(ks.DEVICE)
    if not res["present"]:
        Path("vpl_probe.json").write_text(json.dumps(res, indent=1))
        return 0
    # Before anything else opens the interface: its first opener sees a false /proc/vmcore.
    res["namespace"] = namespace_open()
    with ks.KernelScanner() as k:
        res["info"] = dataclasses.asdict(k.info())
    if res["info"]["status"]:
        res["log"] = kernel_log_problems()
        res["dmesg_tail"] = dmesg_tail()
        res["iomem"] = Path("/proc/iomem").read_text().splitlines()
        res["cmdline"] = Path("/proc/cmdline").read_text().strip()
        Path("vpl_probe.json").write_text(json.dumps(res, indent=1))
        return 0

    with source.open_source(ks.PROC_VMCORE) as src:
        spage = src.vmcoreinfo.size("page")
        t0 = time.monotonic()
        chunks, _, _ = ks.layout(src)
        res["layout_seconds"] = time.monotonic() - t0
        res["nr_chunks"] = len(chunks)
        np.save("vpl_chunks.npy", chunks)

        runs: dict[str, np.ndarray] = {}
        res["levels"] = {}
        with ks.KernelScanner() as k:
            for level in range(32):
                t0 = time.monotonic()
                r = k.scan(chunks, level)
                dt = time.monotonic() - t0
                runs[f"l{level}_pfn"], runs[f"l{level}_count"] = r.pfn, r.count
                runs[f"l{level}_cls"] = r.cls
                res["levels"][level] = {"seconds": dt, "calls": r.calls, "runs": len(r.pfn),
                                        "counts": r.counts}  # fmt: skip
            np.savez("vpl_runs.npz", **runs)

            # Speed, same dump, same run (best of 3 each).  Both scans need the same layout
            # (page tables, mem_section -> chunk table, kernel image): timed once, apart.  The
            # comparison is the classification itself: the kernel's ioctl loop against the
            # userspace classifier producing its PageClass windows.
            kt, kall, ut, uall = [], [], [], []
            for _ in range(3):
                t0 = time.monotonic()
                k.scan(chunks, 31)
                kt.append(time.monotonic() - t0)
                t0 = time.monotonic()
                karr = materialize(ks.kernel_scan(src, 31))
                kall.append(time.monotonic() - t0)
                t0 = time.monotonic()
                uc = scan.userspace_scan(src, 31)
                t1 = time.monotonic()
                uarr = materialize(uc)
                ut.append(time.monotonic() - t1)
                uall.append(time.monotonic() - t0)
            res["bench"] = {
                "pages": int(src.max_pfn),
                "kernel_seconds": min(kt), "userspace_seconds": min(ut),
                "ratio_userspace_over_kernel": min(ut) / min(kt),
                "kernel_end_to_end_seconds": min(kall), "userspace_end_to_end_seconds": min(uall),
                "ratio_end_to_end": min(uall) / min(kall),
                "level31_equal": bool(np.array_equal(karr, uarr)),
                "level31_differing_pfns": int((karr != uarr).sum()),
            }  # fmt: skip
            res["hostile"] = hostile(k.fd, chunks, spage)
            res["work_bound"] = work_bound(k.fd, chunks)
        res["signal_stop"] = [signal_stop(chunks, s) for s in (signal.SIGINT, signal.SIGTERM)]
        res["compat"] = in_child(compat_info_and_scan, chunks)
        with ks.KernelScanner() as k:
            res["info_after"] = dataclasses.asdict(k.info())
    res["log"] = kernel_log_problems()
    Path("vpl_probe.json").write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
