"""Real kdump cycles under QEMU: boot, workload, arm a capture kernel, panic, filter, power off.

API (used by the e2e tests, ``demo.py`` and other helpers)::

    from kdumpvm import stock_kernel, custom_kernel, run_kdump_cycle, CycleError

    k = stock_kernel("6.1")                      # or "6.12", or a full release string
    k = custom_kernel("/path/bzImage", vmlinux="/path/vmlinux")   # 9p+virtio built in: no
                                                 # initramfs; with modules=DIR: initramfs from it
    r = run_kdump_cycle(
        k,
        capture_cmds=['$DUMPFILTER -d 31 -c --stats-json stats.json $VMCORE out.kdump'],
        save_raw=False,                          # True: also copy /proc/vmcore to r.dir/"vmcore"
        capture_kernel=None,                     # another Kernel to kexec as the capture kernel
        workload=(),                             # workload.py args; None = no workload
        kexec_flags="",                          # "-s": kexec_file_load
    )
    r.dir          # Path: $DUMPFILTER_CACHE/cycles/<key>/ (the guest's rw share; all artefacts)
    r.console      # Path of the full serial console log
    r.files        # {name: Path} of everything the cycle produced (kpageflags, pfns_*.npy, ...)
    r.rc(0), r.log(0)   # exit status and output of capture command 0
    r.release, r.timings, r.cached

Capture commands are ``sh`` command lines run in the capture kernel with the host root as /
(chroot) and the cycle directory as the working directory. They may use ``$VMCORE``
(/proc/vmcore), ``$DUMPFILTER`` (this repo's dumpfilter, run by the venv's Python with ``-B``
because the root is read-only), ``$PYTHON``, ``$MAKEDUMPFILE``, ``$OUT`` (the cycle dir) and
``$REPO`` (this repository: a command naming its files through ``$REPO`` keeps its cache key
in a clone elsewhere).
A command's non-zero exit is recorded (``r.rc(i)``), not raised: tests decide what it means.

A cycle that does not complete raises ``CycleError`` naming the step (boot, kexec load,
workload, panic, capture boot, filter, power-off) with the console tail. "No capture kernel
loaded" and "the capture kernel never came up" are such failures, never a pass.

Results are cached: the key hashes the kernel image, the cycle options, the harness files and
the dumpfilter sources, so a pytest session runs one cycle per kernel/config; delete the
directory (or set ``DUMPFILTER_NO_CYCLE_CACHE=1``) to force a new run.

Environment:
- ``DUMPFILTER_CACHE`` (default ~/.cache/dumpfilter): where cycles and initramfs images live.
- ``DUMPFILTER_QEMU_ACCEL=tcg|kvm`` (default tcg). KVM hangs on the Firecracker/kvm_pvm hosts
  this project runs on (docs/qemu-harness.md §2), so it is opt-in.
- ``DUMPFILTER_QEMU_TIMEOUT_SCALE``: multiply every timeout (TCG on a busy box is 3-10x slower).

How a cycle runs and why it is set up so: docs/qemu-harness.md (a stock kernel with a busybox
initramfs and the host root over 9p, or a self-built kernel with 9p built in and no initramfs).
"""

from __future__ import annotations

import argparse
import fcntl
import gzip
import hashlib
import json
import lzma
import os
import re
import shlex
import shutil
import stat
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pexpect

import debkernels

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
GUEST = HERE / "guest"
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
BUSYBOX = Path("/bin/busybox")
# What the stock kernels need as modules to reach a 9p share over virtio-pci.
NEEDED_MODULES = ("virtio_pci", "9pnet_virtio", "9p")
NINEP_OPTS = "trans=virtio,version=9p2000.L,msize=512000"
# run_kdump_cycle(root_cache=True): the read-only host root cached.  Without a cache 9p reads
# nothing ahead (fs/9p/vfs_super.c sets ra_pages to 0) and each page a program maps is a round
# trip to QEMU, 5,000-6,000 to start Python and numpy, where a capture kernel's disk or
# initramfs root has them read ahead or in memory: timing cycles want it.  Cycles that test
# how little memory suffices do not: with a cache, 9p reads ahead up to msize at each fault,
# and in a 96 MiB capture kernel a run whose pages keep being dropped and read again took
# 227 s instead of 10.  The root does not change during a cycle, so the cache cannot go
# stale.  The kernel hands the unknown parameter ROOT_CACHE_ARG to guest/init.sh as an
# environment variable, in the capture kernel too (kexec --reuse-cmdline).
ROOT_CACHE = "loose"
ROOT_CACHE_ARG = f"rootcache={ROOT_CACHE}"
# kdump.rst recommends "irqpoll nr_cpus=1 reset_devices" for x86; nokaslr avoids sporadic
# reservation failures of a randomised capture kernel (drgn vmtest). nr_cpus=1: TCG + SMP
# capture kernels sporadically trip a QEMU assertion (drgn commit 32a968de).
CAPTURE_APPEND = "nr_cpus=1 irqpoll reset_devices nokaslr"
# For KASAN kernels under TCG: PCI interrupts routed by the PIIX router instead of ACPI.
# Evaluating \_SB.PCI0._PRT in ACPICA's interpreter, every access checked by KASAN, can
# run past ACPICA's loop timeout (AE_AML_LOOP_TIMEOUT); the virtio-9p devices then never
# get an interrupt and the boot waits until the cycle's limit (seen intermittently with the
# patched 7.2 debug kernel).  With this option no _PRT is evaluated.
SANITIZED_APPEND = "acpi=noirq"
# Lines guest/init.sh prints when something it needs fails (any step).
ERR = r"STAGE: (error [^\r\n]*|insmod \S+ failed)"


def ninep_root_args(root_cache: bool) -> list[str]:
    """Kernel command line of a kernel with 9p built in and no initramfs: the host root is
    its root (cached with *root_cache*)."""
    opts = f"{NINEP_OPTS},cache={ROOT_CACHE}" if root_cache else NINEP_OPTS
    return [
        "root=/dev/root",
        "rootfstype=9p",
        f"rootflags={opts}",
        "ro",
        f"init={GUEST / 'init.sh'}",
    ]


STEPS = ("boot", "kexec load", "workload", "panic", "capture boot", "filter", "power-off")


def cache_dir() -> Path:
    return Path(os.environ.get("DUMPFILTER_CACHE") or Path.home() / ".cache" / "dumpfilter")


def prune_cycles(keep: int | None = None) -> None:
    """Delete all but the ``keep`` most recently used cycle directories.

    A cycle with a raw copy holds a whole vmcore (about 1 GiB for a 1 GiB guest), and every
    change to dumpfilter's sources makes new cycles: without pruning, a machine that runs the
    suite often fills its disk.  ``DUMPFILTER_KEEP_CYCLES`` overrides the default of 40,
    more than one ``make test-full`` makes, so that a run does not prune the cycles it made.
    """
    if keep is None:
        try:
            keep = int(os.environ.get("DUMPFILTER_KEEP_CYCLES", "40"))
        except ValueError:
            keep = 40
    root = cache_dir() / "cycles"
    if not root.is_dir():
        return
    dirs = sorted(
        (d for d in root.iterdir() if d.is_dir()), key=lambda d: d.stat().st_mtime, reverse=True
    )
    for d in dirs[max(keep, 1) :]:
        with open(root / f".{d.name}.lock", "w") as lock:
            try:  # a cycle another process is running or reading right now stays
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            shutil.rmtree(d, ignore_errors=True)
        (root / f".{d.name}.lock").unlink(missing_ok=True)


def timeout_scale() -> float:
    try:
        return float(os.environ.get("DUMPFILTER_QEMU_TIMEOUT_SCALE", "1"))
    except ValueError:
        return 1.0


def accel() -> str:
    a = os.environ.get("DUMPFILTER_QEMU_ACCEL", "tcg").strip().lower()
    if a not in ("tcg", "kvm"):
        raise ValueError(f"DUMPFILTER_QEMU_ACCEL must be tcg or kvm, not {a!r}")
    return a


class CycleError(RuntimeError):
    """A kdump cycle did not complete; ``step`` names where, the message has the console tail."""

    def __init__(self, step: str, why: str, console: Path | None = None, tail: str = ""):
        self.step, self.why, self.console = step, why, console
        msg = f"kdump cycle failed at step '{step}': {why}"
        if console:
            msg += f"\nconsole log: {console}"
        if tail:
            msg += "\n--- console tail ---\n" + tail
        super().__init__(msg)


# --------------------------------------------------------------------------- kernels


@dataclass(frozen=True)
class Kernel:
    """A bootable kernel. ``modules`` set: needs the harness initramfs; None: 9p built in."""

    image: Path
    release: str
    modules: Path | None
    vmlinux: Path | None = None
    sanitized: bool = False  # built with KASAN: every step of a cycle takes several times longer

    @property
    def short(self) -> str:
        return re.sub(r"[^A-Za-z0-9.+_-]", "_", self.release)


def bzimage_release(image: Path) -> str:
    """Kernel release from a bzImage: setup header field kernel_version (offset 0x20e) is a
    pointer, relative to 0x200, to "<release> (builder) #1 ..." (x86 boot protocol)."""
    with open(image, "rb") as f:
        hdr = f.read(0x400)
        if hdr[0x202:0x206] != b"HdrS":
            raise ValueError(f"{image}: not a bzImage (no HdrS setup header)")
        (ptr,) = struct.unpack_from("<H", hdr, 0x20E)
        f.seek(ptr + 0x200)
        return f.read(256).split(b"\0")[0].split()[0].decode()


def stock_kernel(which: str) -> Kernel:
    """Debian's stock kernel: "6.1", "6.12" (the newest fetched) or a full release string,
    unpacked in the cache by debkernels.py (host-setup.sh fetches them)."""
    root = debkernels.stock_dir(which)
    rel = debkernels.release(which)
    image = root / "boot" / f"vmlinuz-{rel}"
    mods = root / "lib" / "modules" / rel
    if not image.exists() or not mods.is_dir():
        raise FileNotFoundError(f"{image} or {mods} missing: run qemu-tests/host-setup.sh")
    return Kernel(image=image, release=rel, modules=mods)


def custom_kernel(
    image: str | Path, *, vmlinux: str | Path | None = None, modules: str | Path | None = None
) -> Kernel:
    """A given bzImage. Without ``modules`` it must have virtio-pci and 9p built in (it boots
    with the host root over 9p as /, recipe B); with ``modules`` an initramfs is built."""
    image = Path(image).resolve()
    config = image.parent / "config"  # build-kernel.sh keeps the .config beside the image
    return Kernel(
        image=image,
        release=bzimage_release(image),
        modules=Path(modules).resolve() if modules else None,
        vmlinux=Path(vmlinux).resolve() if vmlinux else None,
        sanitized=config.exists() and "CONFIG_KASAN=y" in config.read_text().split("\n"),
    )


# --------------------------------------------------------------------------- initramfs


def initramfs_modules(moddir: Path, wanted: Sequence[str] = NEEDED_MODULES) -> list[Path]:
    """Module files to insmod, dependencies first, from modules.dep (busybox insmod does no
    dependency resolution; a wrong order gives "unknown symbol"). Built-in ones are skipped."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        if ":" not in line:
            continue
        mod, rest = line.split(":", 1)
        deps[mod] = rest.split()
        by_name[_modname(mod)] = mod
    builtin = set()
    bfile = moddir / "modules.builtin"
    if bfile.exists():
        builtin = {_modname(x) for x in bfile.read_text().split()}
    order: list[str] = []

    def visit(mod: str, stack: tuple[str, ...]) -> None:
        if mod in order:
            return
        if mod in stack:
            raise ValueError(f"module dependency cycle at {mod}")
        for d in deps.get(mod, []):
            visit(d, stack + (mod,))
        order.append(mod)

    for name in wanted:
        if name in builtin:
            continue
        if name not in by_name:
            raise FileNotFoundError(f"{moddir}: module {name} neither built in nor in modules.dep")
        visit(by_name[name], ())
    return [moddir / m for m in order]


def _modname(path: str) -> str:
    base = path.rsplit("/", 1)[-1]
    base = re.sub(r"\.ko(\.(xz|gz|zst))?$", "", base)
    return base.replace("-", "_")


def _ko_bytes(path: Path) -> bytes:
    """Module contents, decompressed (Debian 6.12 ships .ko.xz; busybox insmod wants ELF)."""
    data = path.read_bytes()
    if path.suffix == ".xz":
        return lzma.decompress(data)
    if path.suffix == ".gz":
        return gzip.decompress(data)
    if path.suffix == ".zst":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return data


class _Newc:
    """Minimal cpio "newc" writer (the initramfs format, Documentation/driver-api/early-userspace
    /buffer-format.rst): 110-byte ASCII header, name, data, each padded to 4 bytes."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.ino = 1

    def add(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        nm = name.encode() + b"\0"
        fields = (self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(nm), 0)
        self.ino += 1
        self.buf += b"070701" + b"".join(b"%08X" % v for v in fields) + nm
        self.buf += b"\0" * (-len(self.buf) % 4) + data
        self.buf += b"\0" * (-len(self.buf) % 4)

    def finish(self) -> bytes:
        self.add("TRAILER!!!", 0)
        return bytes(self.buf)


def build_initramfs(kernel: Kernel) -> Path:
    """Busybox + the virtio/9p modules + guest/init.sh, gzip'ed; cached by content hash."""
    assert kernel.modules is not None
    mods = initramfs_modules(kernel.modules)
    init = (GUEST / "init.sh").read_bytes()
    h = hashlib.sha256(init)
    for p in [BUSYBOX, *mods]:
        st = p.stat()
        h.update(f"{p}:{st.st_size}:{st.st_mtime_ns}".encode())
    out = cache_dir() / "initramfs" / f"{kernel.short}-{h.hexdigest()[:12]}.img"
    if out.exists():
        return out
    c = _Newc()
    for d in ("bin", "dev", "proc", "sys", "tmp", "host", "work", "lib", "lib/modules"):
        c.add(d, stat.S_IFDIR | 0o755)
    c.add("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
    c.add("bin/busybox", stat.S_IFREG | 0o755, BUSYBOX.read_bytes())
    c.add("bin/sh", stat.S_IFLNK | 0o777, b"busybox")
    c.add("init", stat.S_IFREG | 0o755, init)
    c.add("initramfs-dumpfilter", stat.S_IFREG | 0o644, kernel.release.encode() + b"\n")
    names = []
    for m in mods:
        n = _modname(m.name)
        names.append(n)
        c.add(f"lib/modules/{n}.ko", stat.S_IFREG | 0o644, _ko_bytes(m))
    c.add("modules.order", stat.S_IFREG | 0o644, ("\n".join(names) + "\n").encode())
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(gzip.compress(c.finish(), compresslevel=6))
    tmp.rename(out)
    return out


# --------------------------------------------------------------------------- cycle


@dataclass
class CycleResult:
    """What a completed cycle left in its directory (the guest's read-write share)."""

    dir: Path
    console: Path
    files: dict[str, Path]
    release: str
    timings: dict[str, float]
    cmds: list[str]
    cached: bool = False
    meta: dict = field(default_factory=dict)

    def rc(self, i: int) -> int:
        """Exit status of capture command ``i``."""
        return int((self.dir / f"cmd{i}.rc").read_text())

    def log(self, i: int) -> str:
        """stdout+stderr of capture command ``i``."""
        return (self.dir / f"cmd{i}.log").read_text(errors="replace")

    def path(self, name: str) -> Path:
        p = self.dir / name
        if not p.exists():
            raise FileNotFoundError(f"cycle {self.dir} has no {name}")
        return p

    def check(self, i: int) -> None:
        """Raise AssertionError with the command's output unless command ``i`` exited 0."""
        if self.rc(i) != 0:
            raise AssertionError(
                f"capture command {i} ({self.cmds[i]!r}) exited {self.rc(i)}:\n"
                + self.log(i)[-3000:]
            )


@dataclass(frozen=True)
class Timeouts:
    boot: float = 120
    kexec: float = 120
    workload: float = 180
    panic: float = 60
    capture: float = 150
    cmd: float = 400
    poweroff: float = 60
    overall: float = 1200

    def scaled(self, k: float) -> Timeouts:
        return Timeouts(**{f: getattr(self, f) * k for f in self.__dataclass_fields__})

    def at_least(self, other: Timeouts) -> Timeouts:
        fields = self.__dataclass_fields__
        return Timeouts(**{f: max(getattr(self, f), getattr(other, f)) for f in fields})


# A kernel with KASAN, UBSAN and lockdep boots several times slower under TCG than a stock
# one; on a loaded host its ACPI methods alone can take minutes (AE_AML_LOOP_TIMEOUT lines).
SANITIZED_TIMEOUTS = Timeouts(boot=480, capture=600, cmd=1200, overall=3600)


RAW_CMD = 'cp /proc/vmcore "$OUT/vmcore"'


def _source_digest() -> str:
    """Hash of everything that can change a cycle's outcome on our side."""
    h = hashlib.sha256()
    files = [HERE / "kdumpvm.py", *sorted(GUEST.glob("*"))]
    for pattern in ("*.py", "*.c"):
        files += sorted((REPO / "userspace" / "src" / "dumpfilter").rglob(pattern))
    for p in files:
        h.update(str(p.relative_to(REPO)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def _file_digest(p: Path) -> str:
    st = p.stat()
    return f"{p}:{st.st_size}:{st.st_mtime_ns}"


def run_kdump_cycle(
    kernel: Kernel,
    *,
    capture_cmds: Sequence[str] = (),
    save_raw: bool = False,
    memory: str = "1G",
    crashkernel: str = "256M",
    kexec_flags: str = "",
    workload: Sequence[str] | None = (),
    capture_append: str = "",
    fault: str | None = None,
    capture_kernel: Kernel | None = None,
    timeouts: Timeouts | None = None,
    use_cache: bool = True,
    tag: str = "",
    root_cache: bool = False,
) -> CycleResult:
    """Run (or reuse from the cache) one kdump cycle; see the module docstring.

    ``kexec_flags``: e.g. "-s" for kexec_file_load. ``workload``: extra arguments for
    guest/workload.py (e.g. ["--anon-mb", "64"]); None: no workload (faster, for failure
    tests). ``capture_append``: extra capture-kernel command line. ``fault``: "no-kexec" skips
    loading the capture kernel (to prove that failure is detected). ``capture_kernel``: load
    this kernel for the capture instead of ``kernel`` (e.g. a stock capture kernel for a patched
    crashed kernel; either may be modular or 9p-built-in). ``tag``: a name fragment for the
    cycle directory.  ``root_cache``: the guests' read-only root cached (ROOT_CACHE_ARG says
    when that is wanted).
    """
    cmds = list(capture_cmds) + ([RAW_CMD] if save_raw else [])
    opts = dict(
        kernel=_file_digest(kernel.image),
        release=kernel.release,
        modules=str(kernel.modules),
        cmds=cmds,
        memory=memory,
        crashkernel=crashkernel,
        kexec_flags=kexec_flags,
        workload=None if workload is None else list(workload),
        capture_append=capture_append,
        fault=fault,
        capture_kernel=_file_digest(capture_kernel.image) if capture_kernel else None,
        src=_source_digest(),
        root_cache=root_cache,
    )
    key = hashlib.sha256(json.dumps(opts, sort_keys=True).encode()).hexdigest()[:16]
    cdir = cache_dir() / "cycles" / f"{kernel.short}{'-' + tag if tag else ''}-{key}"
    cdir.parent.mkdir(parents=True, exist_ok=True)
    no_cache = not use_cache or os.environ.get("DUMPFILTER_NO_CYCLE_CACHE") == "1"
    with open(cdir.parent / f".{cdir.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent demo/test with the same key waits
        done = cdir / "cycle.json"
        if done.exists() and not no_cache:
            meta = json.loads(done.read_text())
            os.utime(cdir)  # most recently used: kept by prune_cycles
            return _result(cdir, kernel, cmds, meta, cached=True)
        if cdir.exists():
            shutil.rmtree(cdir)
        cdir.mkdir()
        prune_cycles()
        try:
            meta = _run(
                kernel,
                cdir,
                cmds,
                memory=memory,
                crashkernel=crashkernel,
                kexec_flags=kexec_flags,
                workload=None if workload is None else list(workload),
                capture_append=capture_append,
                fault=fault,
                capture=capture_kernel or kernel,
                t=_timeouts(timeouts, kernel, capture_kernel or kernel),
                root_cache=root_cache,
            )
        except CycleError as e:
            (cdir / "cycle.error").write_text(str(e) + "\n")  # the artefact says why
            raise
        meta["options"] = opts
        done.write_text(json.dumps(meta, indent=1))
        return _result(cdir, kernel, cmds, meta, cached=False)


def _timeouts(given: Timeouts | None, crashed: Kernel, capture: Kernel) -> Timeouts:
    t = given or Timeouts()
    if crashed.sanitized or capture.sanitized:
        t = t.at_least(SANITIZED_TIMEOUTS)
    return t.scaled(timeout_scale())


def _result(cdir: Path, kernel: Kernel, cmds: list[str], meta: dict, cached: bool) -> CycleResult:
    files = {p.name: p for p in sorted(cdir.iterdir()) if p.is_file()}
    return CycleResult(
        dir=cdir,
        console=cdir / "console.log",
        files=files,
        release=kernel.release,
        timings=meta["timings"],
        cmds=cmds,
        cached=cached,
        meta=meta,
    )


def _capture_script(cmds: list[str]) -> str:
    """The capture kernel's command runner (host /bin/sh, chroot'ed to the host root)."""
    lines = [
        "#!/bin/sh",
        "# generated by qemu-tests/kdumpvm.py: capture-kernel commands of one cycle",
        "export PYTHONDONTWRITEBYTECODE=1",
        f"export PYTHON={shlex.quote(str(VENV_PYTHON))} REPO={shlex.quote(str(REPO))}",
        'export DUMPFILTER="$PYTHON -B -m dumpfilter.cli"',
        "export MAKEDUMPFILE=/usr/bin/makedumpfile",
        "export VMCORE=/proc/vmcore OUT=/tmp/work",
        "cd /tmp/work || exit 1",
        "up() { cut -d' ' -f1 /proc/uptime; }",
    ]
    for i, c in enumerate(cmds):
        lines += [
            f'echo "STAGE: cmd {i} start t=$(up)"',
            f"( {c}\n) > cmd{i}.log 2>&1 < /dev/null",
            f'rc=$?; echo $rc > cmd{i}.rc; sync; echo "STAGE: cmd {i} rc=$rc t=$(up)"',
        ]
    return "\n".join(lines) + "\n"


def _qemu_argv(
    kernel: Kernel,
    cdir: Path,
    initrd: Path | None,
    memory: str,
    crashkernel: str,
    root_cache: bool = False,
) -> list[str]:
    append = [
        "console=ttyS0,115200",
        f"crashkernel={crashkernel}",
        "panic=-1",
        "oops=panic",
        "loglevel=4",
        "no_timer_check",
    ]
    if initrd is None:  # recipe B: the host root over 9p is the root fs; init is our script
        append += ninep_root_args(root_cache)
    if root_cache:
        append.append(ROOT_CACHE_ARG)
    if kernel.sanitized:
        append.append(SANITIZED_APPEND)
    argv = ["qemu-system-x86_64"]
    if accel() == "kvm":
        argv += ["-accel", "kvm", "-cpu", "host,-arch-capabilities", "-smp", "2"]
    else:
        argv += ["-accel", "tcg", "-cpu", "max", "-smp", "1"]
    argv += [
        "-m",
        memory,
        # The guest's RAM without a commitment for all of it (reserve=off): QEMU's default
        # commits -m up front, and the host's heuristic overcommit refuses a guest larger than
        # its RAM and swap, although a kdump cycle touches a few GiB of any guest (workload,
        # struct pages, kept pages; the scans read free pages' struct pages only).  That is
        # what lets this 24 GiB machine crash and filter a 64 GiB guest.
        "-object",
        f"memory-backend-ram,id=ram0,size={memory},reserve=off",
        "-machine",
        "memory-backend=ram0",
        "-nodefaults",
        "-display",
        "none",
        "-monitor",
        "none",
        "-no-reboot",
        "-serial",
        "stdio",
        "-kernel",
        str(kernel.image),
        "-append",
        " ".join(append),
        # -fsdev + -device rather than -virtfs: -virtfs derives the fsdev id from the mount
        # tag, and "/dev/root" (the tag a 9p root needs) is not a valid id.
        "-fsdev",
        "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap",
        "-device",
        # The tag a 9p root must have; guest/init.sh mounts the same tag in initramfs mode.
        "virtio-9p-pci,fsdev=hostroot,mount_tag=/dev/root",
        "-fsdev",
        f"local,id=work,path={cdir},security_model=none,multidevs=remap",
        "-device",
        "virtio-9p-pci,fsdev=work,mount_tag=work",
    ]
    if initrd is not None:
        argv += ["-initrd", str(initrd)]
    return argv


def _run(
    kernel: Kernel,
    cdir: Path,
    cmds: list[str],
    *,
    memory: str,
    crashkernel: str,
    kexec_flags: str,
    workload: list[str] | None,
    capture_append: str,
    fault: str | None,
    capture: Kernel,
    t: Timeouts,
    root_cache: bool = False,
) -> dict:
    initrd = build_initramfs(kernel) if kernel.modules else None
    cinitrd = build_initramfs(capture) if capture.modules else None
    cappend = [CAPTURE_APPEND, capture_append]
    if capture.sanitized and not kernel.sanitized:  # else the reused command line has it
        cappend.append(SANITIZED_APPEND)
    if cinitrd is None and initrd is not None:
        # The first kernel's command line (reused by kexec) has no 9p root: add it.
        cappend += ninep_root_args(root_cache)
    env = {
        "REPO": str(REPO),
        "PYTHON": str(VENV_PYTHON),
        "CAPTURE_KERNEL": str(capture.image),
        "CAPTURE_INITRD_ARG": f"--initrd={cinitrd}" if cinitrd else "",
        "CAPTURE_APPEND": " ".join(x for x in cappend if x),
        "KEXEC_FLAGS": kexec_flags,
        "KEXEC": "skip" if fault == "no-kexec" else "load",
        "WORKLOAD": "skip" if workload is None else "run",
        "WORKLOAD_ARGS": " ".join(shlex.quote(w) for w in workload or ()),
        "WORKLOAD_WAIT": str(int(t.workload)),
    }
    (cdir / "cycle.env").write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in env.items()))
    (cdir / "capture.sh").write_text(_capture_script(cmds))
    argv = _qemu_argv(kernel, cdir, initrd, memory, crashkernel, root_cache)
    (cdir / "qemu.argv").write_text(shlex.join(argv) + "\n")
    console = cdir / "console.log"
    log = open(console, "w", encoding="utf-8", errors="replace")
    t0 = time.monotonic()
    deadline = t0 + t.overall
    timings: dict[str, float] = {}
    panic_msg = ""
    child = pexpect.spawn(
        argv[0],
        argv[1:],
        encoding="utf-8",
        codec_errors="replace",
        timeout=None,
        maxread=65536,
        searchwindowsize=None,
    )
    child.logfile_read = log

    def tail() -> str:
        log.flush()
        text = console.read_text(errors="replace").replace("\r", "")
        return "\n".join(text.splitlines()[-40:])

    def fail(step: str, why: str) -> CycleError:
        return CycleError(step, why, console, tail())

    def expect(step: str, patterns: list[str], timeout: float) -> int:
        """Index of the matching pattern; EOF/TIMEOUT become a CycleError naming ``step``."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise fail(step, f"overall timeout {t.overall:.0f}s exceeded")
        n = len(patterns)
        i = child.expect(patterns + [ERR, pexpect.EOF, pexpect.TIMEOUT], timeout=min(timeout, left))
        if i == n:
            raise fail(step, f"guest reported {child.match.group(0).strip()!r}")
        if i == n + 1:
            child.close()
            how = (
                f"signal {child.signalstatus}" if child.signalstatus else f"exit {child.exitstatus}"
            )
            raise fail(step, f"QEMU ended ({how}) " + _eof_hint(step))
        if i == n + 2:
            raise fail(step, f"no progress within {min(timeout, left):.0f}s (timeout)")
        timings[step] = round(time.monotonic() - t0, 2)
        return i

    # The console arrives in pieces: a pattern that captures a value must end where the line's
    # value ends (a space or the line end), or "workload read" / "rc=1" match half a line.
    try:
        expect("boot", [r"STAGE: first kernel up"], t.boot)
        expect("kexec load", [r"STAGE: kexec (rc=(\d+) |skipped)"], t.kexec)
        if child.match.group(2) not in (None, "0"):
            raise fail("kexec load", f"kexec failed: {child.match.group(0).strip()}")
        expect("kexec load", [r"STAGE: kexec state loaded=(\d)"], t.kexec)
        if child.match.group(1) != "1":
            # Crashing now would end the VM without a dump (panic=-1, -no-reboot).
            raise fail("kexec load", "no capture kernel loaded (kexec_crash_loaded=0)")
        i = expect(
            "workload",
            [r"STAGE: workload ready", r"STAGE: workload (?!ready)\w[^\r\n]*[\r\n]"],
            t.workload,
        )
        if i == 1:
            raise fail("workload", child.match.group(0).strip())
        expect("panic", [r"Kernel panic - not syncing[^\r\n]*"], t.panic)
        panic_msg = child.match.group(0).strip()
        expect("capture boot", [r"STAGE: capture kernel up"], t.capture)
        for i in range(len(cmds)):
            expect("filter", [rf"STAGE: cmd {i} rc=(-?\d+) "], t.cmd)
            timings[f"cmd{i}"] = timings.pop("filter")
        expect("filter", [r"STAGE: capture done"], t.cmd)
        expect("power-off", [r"STAGE: power-off capture"], t.poweroff)
        child.expect([pexpect.EOF, pexpect.TIMEOUT], timeout=t.poweroff)
        if child.isalive():
            raise fail("power-off", f"QEMU still running {t.poweroff:.0f}s after poweroff")
        timings["power-off"] = timings["total"] = round(time.monotonic() - t0, 2)
    finally:
        if child.isalive():
            child.terminate(force=True)
        child.close()
        log.close()
    m = re.search(r"capture kernel up t=\S+ vmcore=(\d+)", console.read_text(errors="replace"))
    return {
        "timings": timings,
        "release": kernel.release,
        "accel": accel(),
        "panic": panic_msg,
        "vmcore_size": int(m.group(1)) if m else None,
        "initrd": str(initrd or ""),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _eof_hint(step: str) -> str:
    if step == "capture boot":
        return "after the panic: the capture kernel never came up"
    if step in ("filter", "power-off"):
        return "in the capture kernel before its commands finished"
    return "unexpectedly"


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run one kdump cycle under QEMU.")
    ap.add_argument("--kernel", default="6.1", help='"6.1", "6.12", a release, or a bzImage path')
    ap.add_argument("--modules", help="modules dir for a custom modular bzImage")
    ap.add_argument("--cmd", action="append", default=[], help="capture-kernel command")
    ap.add_argument("--raw", action="store_true", help="also copy /proc/vmcore")
    ap.add_argument("--kexec-flags", default="")
    ap.add_argument("--memory", default="1G")
    ap.add_argument("--crashkernel", default="256M")
    ap.add_argument("--fault", choices=["no-kexec"])
    ap.add_argument("--no-cache", action="store_true")
    a = ap.parse_args(argv)
    if "/" in a.kernel:
        k = custom_kernel(a.kernel, modules=a.modules)
    else:
        k = stock_kernel(a.kernel)
    try:
        r = run_kdump_cycle(
            k,
            capture_cmds=a.cmd,
            save_raw=a.raw,
            memory=a.memory,
            crashkernel=a.crashkernel,
            kexec_flags=a.kexec_flags,
            fault=a.fault,
            use_cache=not a.no_cache,
        )
    except CycleError as e:
        print(e, file=sys.stderr)
        return 1
    print(
        json.dumps(
            {
                "dir": str(r.dir),
                "cached": r.cached,
                "timings": r.timings,
                "rcs": [r.rc(i) for i in range(len(r.cmds))],
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
