"""/proc/vmcore_pfn_lists end to end: patched kernels, and stock kernels with the module.

One kdump cycle per kernel runs kernel-patches/tests/vpl_probe.py in the capture kernel
(kernel-scan runs for dump levels 0..31, hostile requests, timing against the userspace scan
on the same /proc/vmcore) and ``dumpfilter --kernel-scan=require``; the host then compares the
kernel's runs with the userspace scan of the raw vmcore saved by the same cycle.  On patched
kernels the same cycle also writes a real -d 31 dump with the kernel scan, which drgn opens on
the host with the built vmlinux.

Patched kernels come from ``kernel-patches/build-kernel.sh VER debug`` (cached by series hash;
20-40 min per kernel when not cached): the series with KASAN, UBSAN and lockdep, so that every
test here also requires a kernel log free of their reports and of warnings.
DUMPFILTER_SKIP_KERNEL_BUILD=1 skips the patched-kernel cycles.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

import dkmsbuild
import kdumpvm

REPO = Path(__file__).resolve().parent.parent
PROBE_PY = REPO / "kernel-patches/tests/vpl_probe.py"
# The probe's digest is part of the command so that the cycle cache (keyed by the command
# lines, the kernel image and the dumpfilter sources) notices a changed probe or module.
# The path is relative to $REPO (set in the capture kernel): a clone elsewhere reuses cycles.
PROBE_DIGEST = hashlib.sha256(PROBE_PY.read_bytes()).hexdigest()[:12]
PROBE = f"$PYTHON -B $REPO/{PROBE_PY.relative_to(REPO)} --digest {PROBE_DIGEST}"
# --dry-run: classification and report only.  Writing the dump is covered by the other e2e
# tests; here the point is the CLI choosing, or refusing, the kernel scan.
DFK = "$DUMPFILTER -d 31 --dry-run --kernel-scan=require --stats-json dfk.json $VMCORE"
DFU = "$DUMPFILTER -d 31 --dry-run --stats-json dfu.json $VMCORE"
DFA = "$DUMPFILTER -d 31 --dry-run --kernel-scan --stats-json dfa.json $VMCORE"
# Patched kernels only: a real lzo-compressed dump written with the kernel scan, for drgn to
# open on the host with the kernel's vmlinux (issue 5: the dump is usable by a debugger).
DFW_FILE = "kscan31.kdump"
DFW = f"$DUMPFILTER --kernel-scan -d 31 -l --stats-json dfw.json $VMCORE $OUT/{DFW_FILE}"
# Last capture command: the whole kernel log of the capture kernel, for the clean-log checks
# (the console shows only errors: loglevel=4 hides lockdep's and WARN()'s reports).
DMESG = "dmesg > capture_dmesg.txt"
# What KASAN, UBSAN, lockdep, WARN() and oopses print; none may appear in the capture kernel.
SPLAT = re.compile(
    r"BUG:|WARNING:|UBSAN:|KASAN|Oops|general protection|Call Trace|"
    r"lockdep is turned off|DEBUG_LOCKS_WARN_ON|INFO: task .* blocked"
)
LEVELS = range(1, 32)
# Patched 6.1 and 6.12 kernels are built from source only by `make test-full` (marker
# full): three kernel builds do not fit a cold `make test` in CI's time.  The 7.2 series, the
# one a reviewer sees first, and the module on every stock kernel are always tested.
FULL = pytest.mark.full
VARIANTS = (
    pytest.param("patched-6.1", marks=FULL), pytest.param("patched-6.12", marks=FULL),
    "patched-7.2", "module-6.1", "module-6.12", "module-7.2",
)  # fmt: skip
PATCHED = [pytest.param("patched-6.1", marks=FULL), pytest.param("patched-6.12", marks=FULL)]
PATCHED.append("patched-7.2")
_cycles: dict[str, kdumpvm.CycleResult] = {}


def _run_cycle(
    crashed: kdumpvm.Kernel, *, inconclusive_without_boot: bool = False, **kw
) -> kdumpvm.CycleResult:
    """One kdump cycle, run again once when a KASAN kernel never finished booting.

    Under TCG the patched debug kernel sometimes stops in its first boot, before anything of
    this project runs: ACPI reports AE_AML_LOOP_TIMEOUT in the PCI root's _PRT method and the
    guest then sits idle until the boot limit (seen three times in a row on one refusal cycle,
    on a quiet host, while the same kernel booted in 78 s in the cycle before).  A second
    boot is a new chance.  If it fails too, the test fails, unless it asked to be reported
    as inconclusive (skipped with the reason): the refusal tests, whose crashed kernel is
    the one the main cycle of its series has already booted."""
    try:
        return kdumpvm.run_kdump_cycle(crashed, **kw)
    except kdumpvm.CycleError as e:
        if e.step != "boot" or not crashed.sanitized:
            raise
        first = e.why
    print(f"first boot of {crashed.release} failed ({first}); running the cycle again")
    try:
        return kdumpvm.run_kdump_cycle(crashed, **kw)
    except kdumpvm.CycleError as e:
        if e.step != "boot" or not inconclusive_without_boot:
            raise
        pytest.skip(
            f"inconclusive: the KASAN kernel {crashed.release} did not finish booting under "
            f"TCG, twice ({first}; {e.why}; console: {e.console})"
        )


def _patched(ver: str) -> kdumpvm.Kernel:
    if os.environ.get("DUMPFILTER_SKIP_KERNEL_BUILD") == "1":
        pytest.skip("DUMPFILTER_SKIP_KERNEL_BUILD=1")
    p = subprocess.run(
        [str(REPO / "kernel-patches/build-kernel.sh"), ver, "debug"],
        capture_output=True, text=True, timeout=7200, check=False,
    )  # fmt: skip
    if p.returncode:
        raise AssertionError(f"build-kernel.sh {ver} failed:\n{p.stderr[-3000:]}")
    out = Path(p.stdout.strip().splitlines()[-1])
    return kdumpvm.custom_kernel(out / "bzImage", vmlinux=out / "vmlinux")


def _module(kernel: kdumpvm.Kernel, series: str) -> Path:
    """The module as DKMS builds it (kernel-patches/module/dkms.conf) against a stock kernel's
    headers: the capture kernel loads what a distribution user gets."""
    assert kernel.modules is not None
    return dkmsbuild.build(kernel.release, dkmsbuild.kernel_build_dir(kernel.modules, series))[0]


def vpl_cycle(variant: str) -> kdumpvm.CycleResult:
    if variant not in _cycles:
        kind, ver = variant.split("-")
        flags = "" if ver == "6.1" else "-s"
        extra: list[str] = []
        if kind == "patched":
            kernel, probe, extra = _patched(ver), PROBE, [DFW]
        else:
            kernel = kdumpvm.stock_kernel(ver)
            ko = _module(kernel, ver)
            digest = hashlib.sha256(ko.read_bytes()).hexdigest()[:12]
            probe = f"{PROBE} --insmod {ko} --module-digest {digest}"
        _cycles[variant] = _run_cycle(
            kernel, capture_cmds=[probe, DFK, DFU, *extra, DMESG], save_raw=True, kexec_flags=flags,
            tag="vpl",
        )  # fmt: skip
    return _cycles[variant]


@pytest.fixture(scope="module", params=VARIANTS)
def vcycle(request) -> kdumpvm.CycleResult:
    return vpl_cycle(request.param)


def assert_clean_kernel_log(r: kdumpvm.CycleResult, debug: bool) -> None:
    """The capture kernel logged no KASAN, UBSAN, lockdep or WARN() report and no oops while
    every capture command ran; a patched (``debug``) capture kernel is the build that would
    report them (Debian's stock kernels are not)."""
    log = r.path("capture_dmesg.txt").read_text(errors="replace")
    if debug:
        assert "KernelAddressSanitizer initialized" in log, "capture kernel without KASAN"
        assert "Lock dependency validator" in log, "capture kernel without lockdep"
    bad = [ln for ln in log.splitlines() if SPLAT.search(ln)]
    assert not bad, "\n".join(bad[:40])
    console = r.console.read_text(errors="replace").split("STAGE: capture kernel up")[-1]
    bad = [ln for ln in console.splitlines() if SPLAT.search(ln)]
    assert not bad, "\n".join(bad[:40])


def _probe(r: kdumpvm.CycleResult) -> dict:
    assert r.rc(0) == 0, r.log(0)
    assert_clean_kernel_log(r, debug=not r.release.endswith("-amd64"))
    res = json.loads(r.path("vpl_probe.json").read_text())
    assert res.get("insmod", {"rc": 0})["rc"] == 0, res["insmod"]
    assert res["present"], "no /proc/vmcore_pfn_lists in the capture kernel"
    assert res["info"]["status"] == 0, (res["info"], res.get("log"))
    return res


def _host_layout(r: kdumpvm.CycleResult):
    from dumpfilter import kernelscan as ks
    from dumpfilter import source

    src = source.open_source(str(r.path("vmcore")))
    _, image, nodata = ks.layout(src)
    return src, image, nodata


def _as_array(c) -> np.ndarray:
    out = np.empty(c.max_pfn, np.uint8)
    for w0, arr in c.windows():
        out[w0 : w0 + len(arr)] = arr
    return out


def test_kernel_scan_equals_userspace_scan_at_every_dump_level(vcycle):
    from dumpfilter import kernelscan as ks
    from dumpfilter import scan
    from dumpfilter.pageclass import PageClass

    _probe(vcycle)
    runs = np.load(vcycle.path("vpl_runs.npz"))
    src, image, nodata = _host_layout(vcycle)
    with src:
        bad = []
        for level in LEVELS:
            res = ks.ScanResult.from_runs(
                runs[f"l{level}_pfn"], runs[f"l{level}_count"], runs[f"l{level}_cls"]
            )
            kc = ks.KernelClassification(src.max_pfn, src.ram_ranges, res, image, nodata)
            karr = _as_array(kc)
            uarr = _as_array(scan.userspace_scan(src, level))
            kx = (karr != PageClass.KEEP) & (karr != PageClass.HOLE)
            ux = (uarr != PageClass.KEEP) & (uarr != PageClass.HOLE)
            if not np.array_equal(kx, ux) or not np.array_equal(karr, uarr):
                d = np.flatnonzero(karr != uarr)
                bad.append((level, len(d), [(int(p), int(karr[p]), int(uarr[p])) for p in d[:5]]))
        assert not bad, f"kernel vs userspace (level, #pfns, [(pfn, kernel, user)]): {bad}"


def test_hostile_requests_get_errors_and_never_an_oops(vcycle):
    res = _probe(vcycle)
    checked = {k: v for k, v in res["hostile"].items() if isinstance(v.get("expected"), int)}
    wrong = {k: v for k, v in checked.items() if v["errno"] != v["expected"]}
    assert len(checked) >= 20, sorted(checked)
    assert not wrong, wrong
    assert res["hostile"]["unprivileged_open"]["name"] in ("EACCES", "EPERM")
    assert res["info_after"]["status"] == 0
    assert not res["log"], res["log"]
    console = vcycle.console.read_text(errors="replace")
    for marker in ("Oops", "BUG:", "general protection fault", "Kernel panic - not syncing: Fatal"):
        assert marker not in console.split("STAGE: capture kernel up")[-1], marker


def test_one_run_per_call_resumes_to_the_same_pages(vcycle):
    from dumpfilter import kernelscan as ks

    res = _probe(vcycle)
    assert res["hostile"]["one_run_per_call"]["errno"] == 0
    small = np.load(vcycle.path("vpl_one_run_per_call.npy"))
    chunks = np.load(vcycle.path("vpl_chunks.npy"))[:2]
    runs = np.load(vcycle.path("vpl_runs.npz"))
    lo = int(chunks[0]["start_pfn"])
    hi = int(chunks[-1]["start_pfn"] + chunks[-1]["nr_pages"])

    def expand(pfn, count, cls):
        out = np.zeros(hi - lo + (1 << 20), np.uint8)
        for p, n, c in zip(pfn, count, cls, strict=True):
            if lo <= p < hi:
                out[p - lo : p - lo + n] = c
        return out

    whole = expand(runs["l31_pfn"], runs["l31_count"], runs["l31_cls"])
    one = expand(small["pfn"], small["count"], small["cls"])
    assert len(small) == res["hostile"]["one_run_per_call"]["runs"] > 0
    # Compared inside the two chunks: a run of the whole scan may go on past them (free
    # blocks on both sides of the third chunk's start), the two-chunk scan stops there.
    assert not one[hi - lo :].any()
    assert np.array_equal(whole[: hi - lo], one[: hi - lo])
    assert res["hostile"]["one_run_per_call"]["calls"] >= len(small)
    assert ks.RUN_DTYPE == small.dtype


def _expand_runs(pfn, count, cls) -> np.ndarray:
    n = int((np.asarray(pfn, np.int64) + np.asarray(count, np.int64)).max(initial=0))
    out = np.zeros(n, np.uint8)
    for p, c, k in zip(pfn, count, cls, strict=True):
        out[int(p) : int(p) + int(c)] = k
    return out


def test_first_opener_with_a_false_proc_vmcore_gets_the_true_old_memory(vcycle):
    """The probe's first open of the interface comes from a mount namespace where
    /proc/vmcore is a bind-mounted fake (one 4 KiB range, no VMCOREINFO): the interface must
    not read it, and everyone after gets the same, working interface."""
    res = _probe(vcycle)
    ns = res["namespace"]
    assert "error" not in ns, ns
    assert ns["sees_fake"], "the namespace's /proc/vmcore was not the fake"
    assert ns["info"]["status"] == 0, ns["info"]
    assert ns["info"]["nr_old_ranges"] == res["info"]["nr_old_ranges"] > 1


def test_failed_first_opens_do_not_disable_the_interface(vcycle):
    """In the same namespace, before any open succeeded, opens were made to fail with ENOMEM
    at each slab allocation in turn (fail-nth; the debug kernels have fault injection): the
    interface's setup failed at least once (it logs so), and the next opens worked."""
    res = _probe(vcycle)
    fo = res["namespace"]["failing_opens"]
    if vcycle.release.endswith("-amd64") and fo.get("skipped") == "no fault injection":
        return  # Debian's stock kernels: the unit tests cover the module's setup failures
    assert fo.get("failed_opens", 0) >= 1 and errno.ENOMEM in fo["errnos"], fo
    log = vcycle.path("capture_dmesg.txt").read_text()
    assert "vmcore_pfn_lists: setup failed (-12), the next open tries again" in log
    assert res["namespace"]["info"]["status"] == 0


def test_chunk_table_rewritten_during_scans_maps_nothing_outside_old_memory(vcycle):
    """The probe scans for 20 s while a child process rewrites every chunk's struct page
    address (shared memory) between its true value, one outside old memory and one in the
    capture kernel's RAM.  A kprobe event on memremap() records each mapping the scanner
    causes; all lie inside /proc/vmcore's PT_LOADs and outside the capture kernel's RAM, calls
    fail only with the documented errno, and every scan whose calls all succeeded equals the
    unraced scan."""
    res = _probe(vcycle)
    r = res["race"]
    if vcycle.release.endswith("-amd64") and r.get("skipped") == "no kprobe events":
        return
    assert "skipped" not in r, r
    assert r["maps"] > 0 and not r["lost_events"], r
    assert r["bad_maps"] == [], r
    assert r["errnos"] and set(r["errnos"]) <= {"ERANGE", "EINVAL"}, r  # the race was run
    assert r["complete_scans"] > 0 and r["equal_scans"] == r["complete_scans"], r


def test_aliasing_chunks_are_bounded_per_call_and_signals_stop_a_scan(vcycle):
    res = _probe(vcycle)
    wb = res["work_bound"]
    assert wb["errno"] == 0, wb
    # one call: at most 256 chunks and 2^20 struct pages examined, whichever comes first; the
    # last free block or compound page examined may carry the answer past 2^20 frames
    assert not wb["done"] and 0 < wb["covered"] < (1 << 20) + (1 << 18), wb
    assert 0 < wb["next_chunk"] <= 256, wb
    assert wb["covered"] >= 1 << 20 or wb["next_chunk"] == 256, wb
    for stop in res["signal_stop"]:
        # exit 42: the child's own handler ran, between two bounded calls
        assert stop["exit"] == 42, stop
        assert stop["seconds_to_stop"] < 5, stop


def test_32bit_caller_gets_the_same_answer(vcycle):
    """INFO and a whole level-31 scan through the ia32 system call entry, every structure
    below 4 GiB.  The patched kernels are built with IA32 emulation; a stock kernel without
    it must be the only reason for no answer."""
    res = _probe(vcycle)
    c = res["compat"]
    stock = vcycle.release.endswith("-amd64")  # Debian's; the patched ones are "6.x.y+"
    if stock and (c.get("skipped") == "no IA32 emulation" or c.get("error") == "killed by SIGSEGV"):
        return
    assert "error" not in c and "skipped" not in c, c
    assert c["base"] < 1 << 32
    assert c["info_ret"] == 0 and c["info"] == res["info"], c
    assert c["scan_ret"] == 0, c
    compat = np.load(vcycle.path("vpl_compat_runs.npy"))
    runs = np.load(vcycle.path("vpl_runs.npz"))
    assert len(compat) == c["runs"] > 0
    assert np.array_equal(
        _expand_runs(compat["pfn"], compat["count"], compat["cls"]),
        _expand_runs(runs["l31_pfn"], runs["l31_count"], runs["l31_cls"]),
    )


def test_dumpfilter_kernel_scan_require_gives_the_same_report(vcycle):
    _probe(vcycle)
    assert vcycle.rc(1) == 0, vcycle.log(1)
    assert vcycle.rc(2) == 0, vcycle.log(2)
    k = json.loads(vcycle.path("dfk.json").read_text())
    u = json.loads(vcycle.path("dfu.json").read_text())
    assert k["scan"] == "kernel" and u["scan"] == "userspace"
    # zero pages are only counted when pages are written; everything else must agree
    assert {a: b for a, b in k["pages"].items() if a != "zero"} == {
        a: b for a, b in u["pages"].items() if a != "zero"
    }


@pytest.mark.parametrize("series", [pytest.param("6.1", marks=FULL), "7.2"])
@pytest.mark.parametrize(
    "direction", ["stock-crash-patched-capture", "patched-crash-module-capture"]
)
def test_refused_kernel_scan_falls_back_in_auto_and_fails_in_require(direction, series):
    """The crashed and the capture kernel differ (stock Debian and the patched kernel of one
    series, either way round; the stock capture kernel gets the module): the interface must
    refuse, auto must fall back with one line, require must fail."""
    patched, stock = _patched(series), kdumpvm.stock_kernel(series)
    if direction == "stock-crash-patched-capture":
        crashed, capture, probe = stock, patched, PROBE
    else:
        ko = _module(stock, series)
        digest = hashlib.sha256(ko.read_bytes()).hexdigest()[:12]
        crashed, capture, probe = patched, stock, f"{PROBE} --insmod {ko} --module-digest {digest}"
    r = _run_cycle(
        crashed, inconclusive_without_boot=crashed is patched, capture_kernel=capture,
        capture_cmds=[probe, DFK, DFA, DMESG], tag="vpl-refuse",
    )  # fmt: skip
    assert r.rc(0) == 0, r.log(0)
    assert_clean_kernel_log(r, debug=capture is patched)
    res = json.loads(r.path("vpl_probe.json").read_text())
    assert res.get("insmod", {"rc": 0})["rc"] == 0, res["insmod"]
    assert res["present"], "no /proc/vmcore_pfn_lists in the capture kernel"
    assert res["info"]["status"] == -errno.EXDEV, res["info"]
    # the reason is in the kernel log, not in the interface
    refused = [ln for ln in r.path("capture_dmesg.txt").read_text().splitlines()
               if "vmcore_pfn_lists: scans refused:" in ln]  # fmt: skip
    assert len(refused) == 1 and "OSRELEASE" in refused[0], refused
    assert r.rc(1) == 1 and "kernel scan unavailable: refused" in r.log(1), r.log(1)
    assert r.rc(2) == 0, r.log(2)
    assert "kernel scan not used (refused" in r.log(2), r.log(2)
    assert json.loads(r.path("dfa.json").read_text())["scan"] == "userspace"


def test_speed_is_measured_in_the_capture_kernel(vcycle, record_property):
    res = _probe(vcycle)
    b = res["bench"]
    for key in ("kernel_seconds", "userspace_seconds", "kernel_end_to_end_seconds",
                "userspace_end_to_end_seconds"):  # fmt: skip
        if key in b:
            record_property(key, b[key])
    print(
        f"\n{vcycle.release}: {b['pages']} pages, classification: kernel {b['kernel_seconds']:.3f}"
        f" s, userspace {b['userspace_seconds']:.3f} s, ratio "
        f"{b['ratio_userspace_over_kernel']:.1f}x; end to end (layout + windows) ratio "
        f"{b.get('ratio_end_to_end', float('nan')):.2f}x"
    )
    assert b["level31_equal"], b


def _vmcoreinfo(path: Path) -> dict[str, str]:
    """VMCOREINFO text of a kdump-compressed file, found through kdump_sub_header
    offset_vmcoreinfo/size_vmcoreinfo (offsets 32/40 of the sub-header at block 1) -- read
    without drgn, to check drgn against."""
    with open(path, "rb") as f:
        f.seek(4096 + 32)
        off, size = struct.unpack("<QQ", f.read(16))
        f.seek(off)
        text = f.read(size).decode(errors="replace")
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


@pytest.mark.parametrize("variant", PATCHED)
def test_drgn_reads_uts_and_task_list_of_the_kernel_scan_dump(variant):
    """drgn 0.3.0 with the built vmlinux opens the dump the capture kernel wrote with the
    kernel scan at -d 31: init_uts_ns gives the dump's OSRELEASE and the task list walks from
    init_task to PID 1, which is the crashing task (guest/init.sh, PID 1, writes ``c`` to
    /proc/sysrq-trigger with the shell builtin echo, so no child process does it)."""
    drgn = pytest.importorskip("drgn")
    from drgn.helpers.linux.pid import for_each_task

    r = vpl_cycle(variant)
    r.check(3)
    assert_clean_kernel_log(r, debug=True)
    assert json.loads(r.path("dfw.json").read_text())["scan"] == "kernel", r.log(3)
    dump = r.path(DFW_FILE)
    info = _vmcoreinfo(dump)
    assert info["OSRELEASE"] == r.release

    prog = drgn.Program()
    prog.set_core_dump(str(dump))
    vmlinux = _patched(variant.split("-")[1]).vmlinux
    assert vmlinux is not None and vmlinux.exists(), vmlinux
    prog.load_debug_info([str(vmlinux)])
    assert prog["init_uts_ns"].name.release.string_().decode() == info["OSRELEASE"]

    tasks = {}
    for t in for_each_task(prog):
        tasks[int(t.pid)] = t.comm.string_().decode()
    # kernel threads (kthreadd, per-CPU workers, ...) + init + the workload: dozens, not 0
    # or a runaway walk through garbage
    assert 20 <= len(tasks) <= 2000, len(tasks)
    assert 2 in tasks and tasks[2] == "kthreadd", tasks.get(2)
    # the kernel sets comm of an exec'd script to its file name (bprm->filename)
    init_comm = (kdumpvm.GUEST / "init.sh").name[:15]
    assert tasks.get(1) == init_comm, tasks.get(1)
    # the workload (guest/workload.py, run by the venv's python) stays resident until the crash
    assert any(c.startswith("python") for c in tasks.values()), sorted(tasks.values())
    crashed = prog.crashed_thread()
    assert crashed.tid == 1
    assert crashed.object.comm.string_().decode() == init_comm


@pytest.mark.parametrize("variant", PATCHED)
def test_patched_kernels_export_the_values_the_scan_would_otherwise_assume(variant):
    """Patch 1's VMCOREINFO keys are in a real dump of the patched kernel, and the page flag
    numbers equal the kernel's own ``enum pageflags``, read by drgn from the built vmlinux's
    debug info (an oracle independent of both the patch and our parser)."""
    drgn = pytest.importorskip("drgn")
    r = vpl_cycle(variant)
    r.check(3)
    assert_clean_kernel_log(r, debug=True)
    dump = r.path(DFW_FILE)
    info = _vmcoreinfo(dump)
    kernel = _patched(variant.split("-")[1])
    # 7.2 names the anonymous-mapping bit FOLIO_MAPPING_ANON, and so does its patch 2.
    anon = "NUMBER(FOLIO_MAPPING_ANON)" if variant == "patched-7.2" else "NUMBER(PAGE_MAPPING_ANON)"
    keys = ["NUMBER(PG_reserved)", anon, "NUMBER(SECTION_MAP_LAST_BIT)"]
    keys += ["NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)"]
    # 6.12's patch exports the unaccepted page type always; 7.2 exports it itself, and only
    # with CONFIG_UNACCEPTED_MEMORY (kernel/vmcore_info.c).
    assert kernel.vmlinux is not None
    config = (kernel.vmlinux.parent / "config").read_text()
    unaccepted = variant == "patched-6.12" or "CONFIG_UNACCEPTED_MEMORY=y" in config.split()
    if variant == "patched-6.1":
        keys += ["NUMBER(PAGE_TYPE_BASE)", "NUMBER(PAGE_MAPCOUNT_RESERVE)", "SYMBOL(vmemmap)"]
        keys += ["NUMBER(VMALLOC_START)"]
    else:
        keys += ["NUMBER(PAGE_TYPE_SHIFT)"]
        keys += ["NUMBER(PAGE_UNACCEPTED_MAPCOUNT_VALUE)"] if unaccepted else []
    assert [k for k in keys if k not in info] == []
    # userspace derives the direct map base from the PT_LOADs: not exported
    assert "NUMBER(page_offset_base)" not in info
    prog = drgn.Program()
    prog.set_core_dump(str(dump))
    prog.load_debug_info([str(kernel.vmlinux)])
    for flag in ("PG_reserved", "PG_private", "PG_lru", "PG_swapbacked"):
        assert int(info[f"NUMBER({flag})"]) == prog.constant(flag).value_(), flag
    assert int(info[anon]) == 1  # include/linux/page-flags.h
    if variant != "patched-6.1":  # the type values follow from the kernel's own shift
        shift = int(info["NUMBER(PAGE_TYPE_SHIFT)"])
        types = [("BUDDY", "PGTY_buddy"), ("OFFLINE", "PGTY_offline")]
        types += [("UNACCEPTED", "PGTY_unaccepted")] if unaccepted else []
        for name, pgty in types:
            value = int(info[f"NUMBER(PAGE_{name}_MAPCOUNT_VALUE)"])
            # printed as a C long of an int: compare as 32-bit words
            assert (value - (prog.constant(pgty).value_() << shift)) % (1 << 32) == 0, name
