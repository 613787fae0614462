#!/usr/bin/env python3
"""`make bench`: dumpfilter side by side with makedumpfile on the same vmcores.

The peers are Debian's makedumpfile 1.7.2 and makedumpfile 1.7.9, the newest release (built
once by ``anchor.makedumpfile_179``).  Every timing is reported as a ratio dumpfilter /
makedumpfile (plus the raw numbers), never as a pass/fail threshold: timings on a shared
machine only mean something relative to each other.  The kept PFN set is an exact check
instead: a benchmark of a wrong answer is worthless.

Inputs (all under $DUMPFILTER_CACHE, default ~/.cache/dumpfilter):
* synthetic ELF vmcores made with userspace/tests/synthvmcore.py, a ~1 GiB and a >= 4 GiB one,
  with a realistic mix of zero, text and random pages, kept in bench/ and only made if missing;
* every real ELF vmcore found elsewhere in the cache (the QEMU kdump harness puts them there;
  ``make bench-scale``'s synthetic ones in scale/ are left out).

Measured per vmcore:
* the floor: ``cat vmcore > /dev/null`` (the input is read once before, so all runs see a warm
  page cache);
* scan rate, GiB of RAM classified per second of the scan step: makedumpfile's
  ``STEP [Excluding unnecessary pages]`` times (printed with ``--message-level 23``, one per
  cycle, summed) vs dumpfilter's ``--stats-json`` ``seconds.scan`` (the same step: neither
  counts reading VMCOREINFO, page tables and mem_section), and once more with dumpfilter's
  ``seconds.prepare`` (that reading, plus its lookup tables) added; and the whole
  ``--dry-run`` process time of both (Python start-up included);
* writing at ``-d 31`` and ``-d 1``, with no compression, ``-c`` and ``-l``, single-threaded
  and with ``--num-threads`` = CPUs: wall time, output size and peak RSS (``ru_maxrss`` of the
  child from ``os.wait4``) of each; ``-z`` and ``-p`` against 1.7.9 only (Debian's
  makedumpfile 1.7.2 is built with zlib and lzo only).

Checked per real vmcore (and per vmcore named on the command line): the kept PFN set.  At
``-l -d N`` for N in 1, 2, 4, 8, 16, 31, dumpfilter's 2nd bitmap must equal makedumpfile
1.7.9's bit for bit; the report gives the number of differing PFNs and the first ones
otherwise, and the bench then exits with status 1 after writing its results.  On kernels from
7.1 on, which 1.7.9 does not know, the comparison is shown for information only.

A command that fails shows as ``failed: <reason>`` in its cell; the bench itself keeps going.
Results: markdown tables on stdout and in bench/results.md, raw numbers in bench/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import anchor  # noqa: E402

USERSPACE = HERE.parent
GIB = 1 << 30
MAKEDUMPFILE = "/usr/bin/makedumpfile"
CHECK_LEVELS = (1, 2, 4, 8, 16, 31)  # the kept PFN set is compared at each of these -d
# makedumpfile 1.7.9 predates 7.1's page.compound_info and there drops tails of compound
# kernel pages as user data; qemu-tests/test_makedumpfile.py judges 7.1 and later by
# /proc/kpageflags instead.  From this release on the comparison is shown, not demanded.
ORACLE_UNTIL = (7, 1)
UNTRUSTED = "for information: makedumpfile 1.7.9 predates 7.1's page.compound_info"


def oracle_trusted(release: str | None) -> bool:
    """Whether 1.7.9's kept PFN set is the answer for a kernel (unknown releases: yes)."""
    m = re.match(r"(\d+)\.(\d+)", release or "")
    return not m or (int(m.group(1)), int(m.group(2))) < ORACLE_UNTIL


# makedumpfile prints one line per cycle: "STEP [Excluding unnecessary pages] : 0.123 seconds".
_MDF_STEP = re.compile(r"STEP \[(Excluding [^\]]*)\] : ([0-9.]+) seconds")


def cache_dir() -> Path:
    return Path(os.environ.get("DUMPFILTER_CACHE") or Path.home() / ".cache" / "dumpfilter")


# --- running one command ---------------------------------------------------------------------


@dataclass
class Run:
    """One measured process: wall seconds, peak RSS, output size, or why it failed."""

    cmd: list[str]
    seconds: float | None = None
    maxrss_kib: int | None = None
    out_bytes: int | None = None
    error: str | None = None
    extra: dict = field(default_factory=dict)
    stdout: str = ""  # kept for parsing, dropped from the JSON

    @property
    def ok(self) -> bool:
        return self.error is None


GNU_TIME = "/usr/bin/time"
REPEAT = [1]  # --repeat, for the report header
_LOG_CAP = 4 << 20  # bytes of a command's output kept for parsing


def run(cmd: list[str], out: Path | None, timeout: float, repeat: int = 1) -> Run:
    """The fastest of ``repeat`` runs of ``cmd``; a failure ends the series."""
    best: Run | None = None
    for _ in range(max(1, repeat)):
        r = run_once(cmd, out, timeout)
        if not r.ok:
            return r
        if best is None or (r.seconds or 0) < (best.seconds or 0):
            best = r
    assert best is not None
    return best


def run_once(cmd: list[str], out: Path | None, timeout: float) -> Run:
    """Run ``cmd`` (stdin closed, output captured to files), timing it and its peak RSS.

    Peak RSS is the child's ``ru_maxrss`` (KiB) from wait4(2).  Linux carries the RSS high
    mark of the mm a process had *before* execve into its ``ru_maxrss``, and Python spawns with
    vfork, so a child waited for directly would report at least this bench's own RSS.  GNU
    time (a small C program, ~2 MiB) does the fork + wait4 instead when it is installed.
    The process gets its own session so a timeout kills it and everything it started.
    """
    r = Run(cmd)
    if out is not None and out.exists():
        out.unlink()
    logdir = cache_dir() / "bench" / "logs"
    logdir.mkdir(parents=True, exist_ok=True)
    so, se, rss = logdir / "stdout", logdir / "stderr", logdir / "maxrss"
    rss.unlink(missing_ok=True)
    use_time = os.access(GNU_TIME, os.X_OK)
    full = [GNU_TIME, "-f", "%M", "-o", str(rss), *cmd] if use_time else cmd
    try:
        with open(so, "wb") as fo, open(se, "wb") as fe:
            t0 = time.perf_counter()
            p = subprocess.Popen(
                full, stdin=subprocess.DEVNULL, stdout=fo, stderr=fe, start_new_session=True
            )
            timed_out = threading.Event()

            def kill() -> None:
                timed_out.set()
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

            timer = threading.Timer(timeout, kill)
            timer.start()
            try:
                _, status, usage = os.wait4(p.pid, 0)
            finally:
                timer.cancel()
            elapsed = time.perf_counter() - t0
            p.returncode = os.waitstatus_to_exitcode(status)
    except OSError as e:
        r.error = f"failed: cannot run {full[0]}: {e.strerror}"
        return r
    r.stdout = _tail(so) + "\n" + _tail(se)
    maxrss: int | None = usage.ru_maxrss
    if use_time:
        try:
            maxrss = int(rss.read_text().split()[-1])
        except (OSError, ValueError, IndexError):
            maxrss = None
    if timed_out.is_set():
        r.error = f"failed: timeout after {timeout:.0f} s"
    elif p.returncode != 0:
        lines = [
            ln.strip()
            for ln in re.split(r"[\r\n]", r.stdout)
            if ln.strip() and not ln.startswith("Command exited with")
        ]
        reason = lines[-1] if lines else f"exit status {p.returncode}"
        r.error = f"failed: {reason[:120]}"
    elif out is not None and not out.exists():
        r.error = "failed: no output file"
    else:
        r.seconds = elapsed
        r.maxrss_kib = maxrss
        if out is not None:
            r.out_bytes = out.stat().st_size
    if out is not None and out.exists():
        out.unlink()
    return r


def _tail(path: Path) -> str:
    """The last few MiB of a log (a command that floods stdout must not flood our memory)."""
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - _LOG_CAP))
        return f.read().decode(errors="replace")


def dumpfilter_cmd() -> list[str]:
    """The installed console script next to this interpreter, else the module."""
    script = Path(sys.executable).with_name("dumpfilter")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from dumpfilter.cli import main; sys.exit(main())"]


# --- inputs ----------------------------------------------------------------------------------


def elf_ram_bytes(path: Path) -> int | None:
    """Sum of PT_LOAD p_memsz of an ELF64 core (the RAM the dump describes), else None."""
    try:
        with open(path, "rb") as f:
            eh = f.read(64)
            if len(eh) < 64 or eh[:4] != b"\x7fELF" or eh[4] != 2:
                return None
            e_type = struct.unpack_from("<H", eh, 16)[0]
            phoff = struct.unpack_from("<Q", eh, 32)[0]
            phentsize, phnum = struct.unpack_from("<HH", eh, 54)
            if e_type != 4 or phentsize < 56 or phnum == 0:
                return None
            f.seek(phoff)
            ph = f.read(phentsize * phnum)
    except OSError:
        return None
    total = 0
    for i in range(min(phnum, len(ph) // phentsize)):
        p_type = struct.unpack_from("<I", ph, i * phentsize)[0]
        if p_type == 1:
            total += struct.unpack_from("<Q", ph, i * phentsize + 40)[0]
    return total


def synthetic(name: str, ram_gib: float, say) -> Path | str:
    """Path of the synthetic vmcore ``name`` (made now if missing), or why it cannot be made."""
    path = cache_dir() / "bench" / f"{name}.vmcore"
    if path.exists() and elf_ram_bytes(path):
        return path
    sys.path.insert(0, str(USERSPACE / "tests"))
    try:
        import synthvmcore  # userspace/tests/synthvmcore.py
    except ImportError as e:
        return f"synthetic vmcore generator unavailable ({e})"
    finally:
        sys.path.pop(0)
    pages = int(ram_gib * GIB) // 4096
    # PC-like layout: the legacy hole below 1 MiB and, above 3 GiB, the PCI hole up to 4 GiB.
    if pages <= 0xC0000:
        ram = [(1, 0x9F), (0x100, pages)]
    else:
        ram = [(1, 0x9F), (0x100, 0xC0000), (0x100000, 0x100000 + pages - 0xC0000)]
    say(f"generating {path} ({ram_gib:g} GiB of RAM) ...")
    tmp = path.with_suffix(".tmp")
    t0 = time.perf_counter()
    try:
        synthvmcore.make_vmcore(tmp, kernel="6.1", ram=ram, content="mixed", seed=1)
        tmp.rename(path)
    except Exception as e:  # a generator bug must not stop the rest of the bench
        tmp.unlink(missing_ok=True)
        return f"generation failed: {type(e).__name__}: {e}"
    say(f"  made in {time.perf_counter() - t0:.1f} s")
    return path


def elf_osrelease(path: Path) -> str | None:
    """``OSRELEASE`` from the VMCOREINFO note of an ELF64 core, if any."""
    try:
        with open(path, "rb") as f:
            eh = f.read(64)
            phoff = struct.unpack_from("<Q", eh, 32)[0]
            phentsize, phnum = struct.unpack_from("<HH", eh, 54)
            f.seek(phoff)
            ph = f.read(phentsize * phnum)
            for i in range(phnum):
                p_type, _, off = struct.unpack_from("<IIQ", ph, i * phentsize)
                if p_type == 4:  # PT_NOTE
                    size = struct.unpack_from("<Q", ph, i * phentsize + 32)[0]
                    f.seek(off)
                    m = re.search(rb"OSRELEASE=([^\n\0]+)", f.read(min(size, 1 << 20)))
                    return m.group(1).decode(errors="replace") if m else None
    except (OSError, struct.error):
        return None
    return None


def _whole_cycle_vmcore(p: Path) -> bool:
    """False for a kdump cycle's vmcore that is not a whole, ordinary panic dump.

    qemu-tests/kdumpvm.py records each cycle in cycle.json (release, panic line, vmcore size);
    fault-injection cycles leave truncated or corrupted cores that would only measure errors.
    """
    meta_path = p.parent / "cycle.json"
    if not meta_path.exists():
        return True
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return False
    return bool(meta.get("panic")) and meta.get("vmcore_size") == p.stat().st_size


def real_vmcores() -> list[Path]:
    """The newest ELF core per kernel release anywhere in the cache except bench/ and scale/
    (synthetic vmcores of this bench and of ``make bench-scale``).

    The QEMU harness leaves one vmcore per cycle; one per release is enough for a comparison.
    """
    newest: dict[str, Path] = {}
    root = cache_dir()
    if not root.is_dir():
        return []
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == root:
            dirnames[:] = [d for d in dirnames if d not in ("bench", "scale")]
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for fn in filenames:
            p = Path(dirpath) / fn
            if "vmcore" not in fn or not p.is_file() or not elf_ram_bytes(p):
                continue
            if not _whole_cycle_vmcore(p):
                continue
            rel = elf_osrelease(p) or str(p)
            if rel not in newest or p.stat().st_mtime > newest[rel].stat().st_mtime:
                newest[rel] = p
    return [newest[k] for k in sorted(newest)]


# --- the measurements ------------------------------------------------------------------------


@dataclass
class Case:
    """One row: the same options given to each tool (None: that tool was not run)."""

    label: str
    mdf: Run | None  # makedumpfile 1.7.2
    df: Run | None
    kind: str = "write"  # "write", "dry-run", "scan"
    mdf_value: float | None = None  # for "scan": GiB/s
    df_value: float | None = None
    m9: Run | None = None  # makedumpfile 1.7.9
    m9_value: float | None = None


def pfn_check(vmcore: Path, m9: str, timeout: float, say) -> dict[str, dict]:
    """Per dump level, dumpfilter's kept PFN set against makedumpfile 1.7.9's (``-l -d N``):
    ``anchor.compare_kept``'s answer plus ``text``, or ``error`` when a run failed."""
    work = cache_dir() / "bench" / "check"
    work.mkdir(parents=True, exist_ok=True)
    ref_out, out = work / "makedumpfile-1.7.9", work / "dumpfilter"
    checks: dict[str, dict] = {}
    for level in CHECK_LEVELS:
        args = ["-l", "-d", str(level), "--message-level", "4", str(vmcore)]
        bitmaps = []
        for cmd, path in (([m9, *args], ref_out), ([*dumpfilter_cmd(), *args], out)):
            path.unlink(missing_ok=True)
            r = run_once([*cmd, str(path)], None, timeout)
            if r.ok and not path.exists():
                r.error = "failed: no output file"
            if r.ok:
                try:
                    bitmaps.append(anchor.bitmap2(path))
                except (OSError, ValueError) as e:
                    r.error = f"failed: {e}"
            path.unlink(missing_ok=True)
            if not r.ok:
                who = "makedumpfile 1.7.9" if cmd[0] == m9 else "dumpfilter"
                checks[str(level)] = {"equal": False, "error": f"{who} {r.error}"}
                break
        else:
            cmp = anchor.compare_kept(bitmaps[1], bitmaps[0])
            cmp["text"] = anchor.describe(cmp, "dumpfilter", "makedumpfile 1.7.9")
            checks[str(level)] = cmp
        c = checks[str(level)]
        how = "" if oracle_trusted(elf_osrelease(vmcore)) else f" ({UNTRUSTED})"
        say(f"  kept PFNs -l -d {level} vs makedumpfile 1.7.9{how}: {c.get('text') or c['error']}")
    shutil.rmtree(work, ignore_errors=True)
    return checks


def measure(
    vmcore: Path,
    quick: bool,
    timeout: float,
    repeat: int,
    say,
    scan_only: bool = False,
    m9: str | None = None,
    check: bool = False,
) -> dict:
    ram = elf_ram_bytes(vmcore) or vmcore.stat().st_size
    work = cache_dir() / "bench" / "out"
    work.mkdir(parents=True, exist_ok=True)
    out = work / "dump"
    jpath = work / "stats.json"
    ncpu = os.cpu_count() or 1
    df = dumpfilter_cmd()
    cases: list[Case] = []

    say(f"== {vmcore} ({ram / GIB:.2f} GiB RAM)")
    cat = ["sh", "-c", 'exec cat "$1" > /dev/null', "cat", str(vmcore)]
    run_once(cat, None, timeout)  # warm the page cache for everyone
    floor = run(cat, None, timeout, repeat)
    say(f"  floor cat: {fmt_s(floor)}")

    def go(cmd: list[str], output: Path | None) -> Run:
        return run(cmd, output, timeout, repeat)

    # Scan: dry runs at -d 31.  Cheap, so each is repeated at least 3 times and the fastest
    # scan step and fastest process count (otherwise a busy machine decides the ratio).
    def mdf_scan(r: Run) -> None:
        steps = [
            float(t) for name, t in _MDF_STEP.findall(r.stdout) if name.startswith("Excluding unn")
        ]
        if steps:
            r.extra["scan_seconds"] = sum(steps)
        else:
            r.extra["scan_error"] = "no 'STEP [Excluding unnecessary pages]' line"

    def df_scan(r: Run) -> None:
        try:
            stats = json.loads(jpath.read_text())
            r.extra["scan_seconds"] = float(stats["seconds"]["scan"])
            prepare = float(stats["seconds"].get("prepare", 0.0))
            r.extra["scan_prepare_seconds"] = r.extra["scan_seconds"] + prepare
            r.extra["scan"] = stats.get("scan")
        except (OSError, ValueError, KeyError, TypeError) as e:
            r.extra["scan_error"] = f"bad --stats-json: {e}"

    def dry(cmd: list[str], parse) -> Run:
        best: Run | None = None
        for _ in range(max(3, repeat)):
            jpath.unlink(missing_ok=True)
            r = run_once(cmd, None, timeout)
            if not r.ok:
                return r
            parse(r)
            if best is None:
                best = r
                continue
            best.seconds = min(best.seconds or 0, r.seconds or 0)
            best.maxrss_kib = max(best.maxrss_kib or 0, r.maxrss_kib or 0)
            for key in ("scan_seconds", "scan_prepare_seconds"):
                if key in r.extra:
                    old = best.extra.get(key)
                    best.extra[key] = min(old, r.extra[key]) if old else r.extra[key]
                    best.extra.pop("scan_error", None)
        assert best is not None
        return best

    mdf_args = ["-d", "31", "--dry-run", "--message-level", "23", str(vmcore), str(out)]
    mdf_dry = dry([MAKEDUMPFILE, *mdf_args], mdf_scan)
    m9_dry = dry([m9, *mdf_args], mdf_scan) if m9 else None
    df_dry = dry([*df, "-d", "31", "--dry-run", "--stats-json", str(jpath), str(vmcore)], df_scan)
    cases.append(Case("dry run -d 31 (process)", mdf_dry, df_dry, kind="dry-run", m9=m9_dry))
    scan = Case("scan step -d 31 (GiB RAM/s)", mdf_dry, df_dry, kind="scan", m9=m9_dry)
    for run_, attr in ((mdf_dry, "mdf_value"), (df_dry, "df_value"), (m9_dry, "m9_value")):
        s = run_.extra.get("scan_seconds") if run_ else None
        if s:
            setattr(scan, attr, ram / GIB / s)
    cases.append(scan)
    # the same step with our layout reading and table making added (makedumpfile does its
    # equivalent before the step it times): the conservative reading of the ratio
    scan_p = Case(
        "scan step + dumpfilter's prepare -d 31 (GiB RAM/s)", mdf_dry, df_dry, "scan", m9=m9_dry
    )
    scan_p.mdf_value, scan_p.m9_value = scan.mdf_value, scan.m9_value
    s = df_dry.extra.get("scan_prepare_seconds")
    if s:
        scan_p.df_value = ram / GIB / s
    cases.append(scan_p)
    say(
        f"  scan: makedumpfile {fmt_rate(scan.mdf_value, mdf_dry)}, "
        f"1.7.9 {fmt_rate(scan.m9_value, m9_dry)}, dumpfilter {fmt_rate(scan.df_value, df_dry)}"
    )

    threads = [] if scan_only else [1] if ncpu == 1 else [1, ncpu]
    quiet = ["--message-level", "4"]  # errors only: no progress output in the timings
    for level in ("31", "1") if threads else ():
        for copt in ([], ["-c"], ["-l"]):
            for t in threads:
                topt = [] if t == 1 else ["--num-threads", str(t)]
                args = [*copt, "-d", level, *topt, *quiet, str(vmcore), str(out)]
                label = f"-d {level} {copt[0] if copt else 'none'} threads={t}"
                m = go([MAKEDUMPFILE, *args], out)
                m9_run = go([m9, *args], out) if m9 else None
                d = go([*df, *args], out)
                cases.append(Case(label, m, d, m9=m9_run))
                say(
                    f"  {label}: makedumpfile {fmt_s(m)}, 1.7.9 {fmt_s(m9_run)}, "
                    f"dumpfilter {fmt_s(d)}"
                )
        for copt in (["-z"], ["-p"]):  # Debian's makedumpfile 1.7.2 has neither
            for t in threads if not quick else [1]:
                topt = [] if t == 1 else ["--num-threads", str(t)]
                label = f"-d {level} {copt[0]} threads={t}"
                args = [*copt, "-d", level, *topt, *quiet, str(vmcore), str(out)]
                m9_run = go([m9, *args], out) if m9 else None
                d = go([*df, *args], out)
                cases.append(Case(label, None, d, m9=m9_run))
                say(f"  {label}: 1.7.9 {fmt_s(m9_run)}, dumpfilter {fmt_s(d)}")
    shutil.rmtree(work, ignore_errors=True)
    return {
        "vmcore": str(vmcore),
        "release": elf_osrelease(vmcore),
        "ram_bytes": ram,
        "file_bytes": vmcore.stat().st_size,
        "cpus": ncpu,
        "floor": floor,
        "cases": cases,
        "pfn_check": pfn_check(vmcore, m9, timeout, say) if m9 and check else None,
        "pfn_check_demanded": oracle_trusted(elf_osrelease(vmcore)),
    }


# --- formatting ------------------------------------------------------------------------------


def fmt_s(r: Run | None) -> str:
    if r is None:
        return "–"
    return cell(r.error) if not r.ok else f"{r.seconds:.2f} s"


def cell(text: str | None) -> str:
    """Text safe inside a markdown table cell."""
    return (text or "failed").replace("|", "\\|").replace("\n", " ")


def fmt_rate(v: float | None, r: Run | None) -> str:
    if r is None:
        return "–"
    if not r.ok:
        return cell(r.error)
    if v is None:
        return cell("failed: " + r.extra.get("scan_error", "no scan time"))
    return f"{v:.2f}"


def fmt_size(n: int | None) -> str:
    if n is None:
        return "–"
    return f"{n / (1 << 20):.1f} MiB"


def ratio(a: float | None, b: float | None) -> str:
    """dumpfilter / makedumpfile."""
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}"


def pfn_failures(results: list[dict]) -> list[str]:
    """One line per dump level whose kept PFN set differs from 1.7.9's or was not checked."""
    bad = []
    for res in results:
        if not res.get("pfn_check_demanded", True):
            continue
        for level, c in (res.get("pfn_check") or {}).items():
            if not c["equal"]:
                bad.append(f"{_title(res['vmcore'])} -l -d {level}: {c.get('text') or c['error']}")
    return bad


def markdown(results: list[dict], skipped: list[str]) -> str:
    rss_how = "via GNU time"
    if not os.access(GNU_TIME, os.X_OK):
        rss_how = "via wait4, so never below this bench's own RSS"
    lines = [
        "# dumpfilter vs makedumpfile 1.7.9 and 1.7.2",
        "",
        f"Host: {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. "
        "Ratios are dumpfilter / makedumpfile: for times and sizes < 1 means dumpfilter is "
        "faster or smaller; for the scan rate > 1 means dumpfilter classifies faster. "
        "Times are wall seconds of the whole process (fastest of "
        f"{REPEAT[0]} run(s), dry runs fastest of {max(3, REPEAT[0])}); input in the page "
        "cache. Peak RSS is the child's ru_maxrss "
        f"({rss_how}).",
        "",
    ]
    checked = [r for r in results if r.get("pfn_check") and r["pfn_check_demanded"]]
    if checked:
        bad = pfn_failures(results)
        n = sum(len(r["pfn_check"]) for r in checked)
        lines += [
            f"**Kept PFN sets vs makedumpfile 1.7.9: {n - len(bad)} of {n} equal"
            + (", MISMATCH (exit status 1)**" if bad else "**"),
            "",
        ]
    for res in results:
        floor = res["floor"]
        lines += [
            f"## {_title(res['vmcore'])}: kernel {res.get('release') or '?'}, "
            f"{res['ram_bytes'] / GIB:.2f} GiB RAM, file {res['file_bytes'] / GIB:.2f} GiB",
            "",
            f"Floor `cat vmcore > /dev/null`: {fmt_s(floor)}"
            + (f" ({res['file_bytes'] / GIB / floor.seconds:.2f} GiB/s)" if floor.ok else ""),
            "",
        ]
        if res.get("pfn_check"):
            how = "" if res["pfn_check_demanded"] else f" ({UNTRUSTED})"
            lines += [f"| kept PFNs vs makedumpfile 1.7.9{how}, `-l -d` | result |", "|---|---|"]
            for level, c in res["pfn_check"].items():
                lines.append(f"| {level} | {cell(c.get('text') or c['error'])} |")
            lines.append("")
        if any(c.m9 for c in res["cases"]):
            lines += ["### vs makedumpfile 1.7.9", "", *_table(res["cases"], "m9", "1.7.9"), ""]
        lines += [
            "### vs makedumpfile 1.7.2 (Debian's)",
            "",
            *_table(res["cases"], "mdf", "1.7.2"),
            "",
        ]
    for s in skipped:
        lines.append(f"- skipped: {s}")
    return "\n".join(lines).rstrip() + "\n"


def _table(cases: list[Case], peer: str, version: str) -> list[str]:
    """Rows of dumpfilter against the makedumpfile in ``Case.<peer>`` (and ``<peer>_value``)."""
    lines = [
        f"| case | makedumpfile {version} | dumpfilter | time ratio | size {version} | size df "
        f"| size ratio | RSS {version} | RSS df | RSS ratio |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cases:
        m, d = getattr(c, peer), c.df
        if c.kind == "scan":
            mv = getattr(c, f"{peer}_value")
            lines.append(
                f"| {c.label} | {fmt_rate(mv, m)} | {fmt_rate(c.df_value, d)} "
                f"| {ratio(c.df_value, mv)} (rate) | | | | | | |"
            )
            continue
        mt, dt = (m.seconds if m else None), (d.seconds if d else None)
        ms, ds = (m.out_bytes if m else None), (d.out_bytes if d else None)
        mr, dr = (m.maxrss_kib if m else None), (d.maxrss_kib if d else None)
        lines.append(
            f"| {c.label} | {fmt_s(m)} | {fmt_s(d)} | {ratio(dt, mt)} "
            f"| {fmt_size(ms)} | {fmt_size(ds)} | {ratio(ds, ms)} "
            f"| {fmt_rss(mr)} | {fmt_rss(dr)} | {ratio(dr, mr)} |"
        )
    return lines


def _title(path: str) -> str:
    """synth-1g.vmcore, or the cycle directory for a harness vmcore (all are named vmcore)."""
    p = Path(path)
    return f"{p.parent.name}/{p.name}" if p.name == "vmcore" else p.name


def fmt_rss(kib: int | None) -> str:
    return "–" if kib is None else f"{kib / 1024:.0f} MiB"


def to_json(results: list[dict], skipped: list[str]) -> dict:
    def run_dict(r: Run | None):
        if r is None:
            return None
        d = asdict(r)
        d.pop("stdout")
        return d

    out = []
    for res in results:
        out.append(
            {
                **{k: v for k, v in res.items() if k not in ("floor", "cases")},
                "floor": run_dict(res["floor"]),
                "cases": [
                    {
                        "label": c.label,
                        "kind": c.kind,
                        "makedumpfile": run_dict(c.mdf),
                        "makedumpfile_179": run_dict(c.m9),
                        "dumpfilter": run_dict(c.df),
                        "mdf_gib_per_s": c.mdf_value,
                        "mdf179_gib_per_s": c.m9_value,
                        "df_gib_per_s": c.df_value,
                    }
                    for c in res["cases"]
                ],
            }
        )
    return {
        "host_cpus": os.cpu_count(),
        "time": time.time(),
        "results": out,
        "skipped": skipped,
        "pfn_mismatches": pfn_failures(results),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the 1 GiB synthetic vmcore only")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per command")
    ap.add_argument("--scan-only", action="store_true", help="floor and dry runs only")
    ap.add_argument("--repeat", type=int, default=1, help="runs per command; the fastest counts")
    ap.add_argument("--no-real", action="store_true", help="skip real vmcores in the cache")
    ap.add_argument("vmcores", nargs="*", type=Path, help="benchmark these instead")
    a = ap.parse_args(argv)

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    bench = cache_dir() / "bench"
    bench.mkdir(parents=True, exist_ok=True)
    inputs: list[Path] = []
    skipped: list[str] = []
    checked: set[Path] = set()  # real dumps: their kept PFN sets are compared with 1.7.9's
    if a.vmcores:
        inputs = a.vmcores
        checked = set(inputs)
    else:
        for name, gib in [("synth-1g", 1)] + ([] if a.quick else [("synth-4g", 4.5)]):
            p = synthetic(name, gib, say)
            if isinstance(p, Path):
                inputs.append(p)
            else:
                skipped.append(f"{name}: {p}")
        if not a.quick and not a.no_real:
            reals = real_vmcores()
            checked = set(reals)
            inputs += reals
    if not os.access(MAKEDUMPFILE, os.X_OK):
        skipped.append(f"{MAKEDUMPFILE} not installed: makedumpfile columns fail")
    m9, why = anchor.makedumpfile_179()
    if not m9:
        skipped.append(f"makedumpfile 1.7.9: {why}; no 1.7.9 columns, kept PFN sets unchecked")
    elif not checked:
        skipped.append("kept PFN check: no real vmcore in the cache (run the QEMU suite)")

    REPEAT[0] = a.repeat
    results: list[dict] = []
    md = markdown(results, skipped)
    for v in inputs:  # results are rewritten after each vmcore: a long run is never all lost
        res = measure(v, a.quick, a.timeout, a.repeat, say, a.scan_only, m9, v in checked)
        results.append(res)
        md = markdown(results, skipped)
        (bench / "results.md").write_text(md)
        (bench / "results.json").write_text(json.dumps(to_json(results, skipped), indent=1))
    print(md)
    say(f"written {bench / 'results.md'} and {bench / 'results.json'}")
    bad = pfn_failures(results)
    for line in bad:
        say(f"KEPT PFN MISMATCH vs makedumpfile 1.7.9: {line}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
