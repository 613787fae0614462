"""Big guests and the capture kernel's memory budget, measured in real kdump cycles.

``make bench-guests`` (or ``python qemu-tests/bench_guests.py [options]``) runs two
measurements on Debian's stock 6.12 kernel with the vmcore_pfn_lists module as DKMS builds it
(``--kernel patched-6.12``: the patched kernel of ``build-kernel.sh 6.12``, without the debug
checks, whose KASAN would be what is timed):

1. **Timing** (``--sizes``, default 1G and 16G): one crash per guest size; in its capture
   kernel dumpfilter with ``--kernel-scan=require``, dumpfilter with its own scan and
   makedumpfile 1.7.9 each filter ``/proc/vmcore`` at ``-d 31``, once as a ``--dry-run`` and
   once writing a ``-z`` dump, in rounds whose tool order rotates.  Each run is timed by GNU
   time around the whole process (start to dump written): wall seconds, peak RSS, CPU.  The
   guests' root is cached, read ahead as a disk root is (kdumpvm.ROOT_CACHE).
2. **Budget** (``--budget``): per guest size, the smallest ``crashkernel=`` reservation with
   which a whole cycle succeeds for each tool (capture kernel boots, ``-d 31 -z`` dump
   written, read back), found by a bisection shared by the three tools: every cycle runs all
   of them, one after the other, in the same capture kernel.  The root is not cached there:
   9p's readahead of up to 500 KiB per fault would be what is measured.

Every dump is checked on the host: its kept PFN set (2nd bitmap) must equal makedumpfile
1.7.9's from the same capture kernel, and Debian's libkdumpfile must read every kept page
and find the same bytes as in makedumpfile's dump.  A run that does not pass is reported as
failed, never timed.

Results: ``$DUMPFILTER_CACHE/bench/guests/results.json`` and ``results.md``.  Cycles are not
taken from the cycle cache: a benchmark measures.  Python modules are compiled before the
cycles, as an installed package would be (the capture environment runs Python with ``-B``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "userspace" / "bench"))

import anchor  # noqa: E402

import dkmsbuild  # noqa: E402
import e2elib  # noqa: E402
import kdumpvm  # noqa: E402

REPO = HERE.parent
TOOLS = ("kernel", "user", "mdf179")
LABEL = {
    "kernel": "dumpfilter --kernel-scan=require",
    "user": "dumpfilter (own scan)",
    "mdf179": "makedumpfile 1.7.9",
}
# Workloads per guest size (guest/workload.py arguments): the 1 GiB one is the test suite's;
# the 16 GiB one puts a few GiB in each user class so that the scan meets every kind of page.
# Bigger guests run the 16 GiB one: more RAM to scan, mostly free, the same pages to keep (and
# the host holds only what the guest touched: kdumpvm backs guest RAM without reserving it).
WORKLOADS = {
    1: [],
    16: ["--cache-mb", "1024", "--anon-mb", "1024", "--thp-mb", "1024",
         "--hugetlb-pages", "256", "--slab-files", "20000"],
}  # fmt: skip
# Wall s, peak RSS KiB, user s, system s, major and minor page faults.
TIME_FMT = "%e %M %U %S %F %R"
GRAIN_MB = 8  # the bisection's resolution
# The capture kernel's memory as its tools find it (the first kernel's is in the cycle's meminfo).
MEMINFO = "grep -E 'Mem(Total|Free|Available)' /proc/meminfo > meminfo.txt"
# What the OOM killer said (the console shows only errors); read by _failed.
OOM_LOG = "dmesg | grep -E 'Out of memory|oom-kill' > oom.txt; true"


def say(text: str) -> None:
    print(f"bench-guests: {text}", file=sys.stderr, flush=True)


def size_gib(size: str) -> int:
    m = re.fullmatch(r"(\d+)G", size)
    if not m:
        raise SystemExit(f"bench-guests: guest size {size!r} is not N G (e.g. 16G)")
    return int(m.group(1))


def timeouts(gib: int) -> kdumpvm.Timeouts:
    """TCG boots, fills and dumps a big guest slowly: every step's limit grows with its RAM."""
    k = max(1.0, gib / 2)
    # the panic follows the snapshot of /proc/kpageflags, 8 bytes a PFN (512 MiB at 256 GiB)
    return kdumpvm.Timeouts(
        boot=120 * k, kexec=120, workload=180 * k, panic=60 * max(1.0, gib / 16),
        capture=150 * k, cmd=400 * k, poweroff=60, overall=1200 * k,
    )  # fmt: skip


def kernel_and_setup(which: str) -> tuple[kdumpvm.Kernel, list[str]]:
    """The guest kernel and the capture commands that make the interface available."""
    if which == "module-6.12":
        k = kdumpvm.stock_kernel("6.12")
        assert k.modules is not None
        ko, _ = dkmsbuild.build(k.release, dkmsbuild.kernel_build_dir(k.modules, "6.12"))
        return k, [f"insmod {shlex.quote(str(ko))}"]
    if which == "patched-6.12":
        p = subprocess.run(
            [str(REPO / "kernel-patches/build-kernel.sh"), "6.12"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if p.returncode:
            raise SystemExit(f"bench-guests: build-kernel.sh 6.12 failed:\n{p.stderr[-2000:]}")
        out = Path(p.stdout.strip().splitlines()[-1])
        return kdumpvm.custom_kernel(out / "bzImage", vmlinux=out / "vmlinux"), []
    raise SystemExit(f"bench-guests: unknown kernel {which!r} (module-6.12, patched-6.12)")


def tool_cmd(tool: str, mdf: str, name: str, dry: bool, keep: bool) -> str:
    """One timed run in the capture kernel; ``name`` prefixes its files (.time, .json, .kdump).
    A dump not kept for the host's checks is deleted at once (the share is the host's disk)."""
    out = f"$OUT/{name}.kdump"
    args = "--dry-run -d 31" if dry else "-d 31 -z"
    if tool == "mdf179":  # its --dry-run wants a dump file name too (and creates nothing)
        run = f"{shlex.quote(mdf)} {args} $VMCORE {out}"
    elif dry:
        ks = "--kernel-scan=require " if tool == "kernel" else ""
        run = f"$DUMPFILTER {ks}{args} --stats-json {name}.json $VMCORE"
    else:
        ks = "--kernel-scan=require " if tool == "kernel" else ""
        run = f"$DUMPFILTER {ks}{args} --stats-json {name}.json $VMCORE {out}"
    cmd = f"/usr/bin/time -f '{TIME_FMT}' -o {name}.time {run}"
    if dry or keep:
        return cmd
    return f"{cmd}; rc=$?; rm -f {out}; exit $rc"


def read_time(path: Path) -> dict | None:
    """GNU time's line (the last one: a killed process's status line comes first)."""
    if not path.exists():
        return None
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    try:
        wall, rss, user, sys_, major, minor = lines[-1].split()
        return {
            "wall": float(wall), "rss_mib": int(rss) / 1024, "cpu": float(user) + float(sys_),
            "sys": float(sys_), "faults": int(major) + int(minor),
        }  # fmt: skip
    except (IndexError, ValueError):
        return None


def kept_runs(bits: np.ndarray) -> list[list[int]]:
    """[[pfn, count], ...] of the set bits of a packed 2nd bitmap."""
    kept = np.unpackbits(bits, bitorder="little").astype(bool)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], kept.view(np.int8), [0]])))
    return [[int(a), int(b - a)] for a, b in zip(edges[0::2], edges[1::2], strict=True)]


def page_digest(dump: Path, runs_json: Path) -> dict:
    """libkdumpfile's reading of every kept page of ``dump`` (readback_kdumpfile.py --digest)."""
    p = subprocess.run(
        [e2elib.SYSTEM_PYTHON, str(HERE / "readback_kdumpfile.py"), "--digest", str(dump),
         str(runs_json)],
        capture_output=True, text=True, timeout=3600, check=False,
    )  # fmt: skip
    if p.returncode:
        return {"error": p.stderr.strip().splitlines()[-1] if p.stderr.strip() else "failed"}
    return json.loads(p.stdout)


def check_dumps(cdir: Path, names: dict[str, str], ref: str) -> dict[str, str]:
    """'ok' or why not, per tool, for the dumps ``names`` (tool -> file prefix) of one cycle,
    against makedumpfile 1.7.9's dump ``ref``: equal kept PFN set, every kept page read back
    by libkdumpfile with the same bytes as in the reference."""
    ref_path = cdir / f"{names[ref]}.kdump"
    ref_bits = anchor.bitmap2(ref_path)
    runs = cdir / "kept_runs.json"
    runs.write_text(json.dumps(kept_runs(ref_bits)))
    want = page_digest(ref_path, runs)
    verdict: dict[str, str] = {}
    for tool, name in names.items():
        path = cdir / f"{name}.kdump"
        try:
            cmp = anchor.compare_kept(anchor.bitmap2(path), ref_bits)
        except (OSError, ValueError) as e:
            verdict[tool] = f"unreadable: {e}"
            continue
        if not cmp["equal"]:
            verdict[tool] = "kept set " + anchor.describe(cmp, tool, ref)
            continue
        got = want if tool == ref else page_digest(path, runs)
        if "error" in got or "error" in want:
            verdict[tool] = f"read back failed: {got.get('error') or want.get('error')}"
        elif got != want:
            verdict[tool] = f"pages differ from {ref}'s: {got} / {want}"
        else:
            verdict[tool] = "ok"
        if tool != ref:
            path.unlink()  # checked: free the host's disk
    return verdict


# --------------------------------------------------------------------------- timing


def timing(kernel: str, size: str, rounds: int, mdf: str) -> dict:
    k, setup = kernel_and_setup(kernel)
    gib = size_gib(size)
    # Untimed first runs read both tools' files over 9p into the page cache; then the cost of
    # starting Python and importing dumpfilter alone, which TCG makes large.
    cmds = list(setup) + [
        MEMINFO,
        f"$DUMPFILTER -v; {shlex.quote(mdf)} -v",
        f"for i in 1 2 3; do /usr/bin/time -f '{TIME_FMT}' -o startup$i.time $DUMPFILTER -v; done",
    ]
    plan: list[tuple[str, str, int]] = []  # (tool, mode, round) per timed command
    for r in range(rounds):
        order = TOOLS[r % 3 :] + TOOLS[: r % 3]
        for mode in ("dry", "z"):
            for tool in order:
                plan.append((tool, mode, r))
                name = f"{tool}-{mode}{r}"
                cmds.append(tool_cmd(tool, mdf, name, mode == "dry", keep=r == 0))
    say(f"timing: {kernel}, {size} guest, {rounds} round(s), {len(plan)} timed runs")
    t0 = time.monotonic()
    res = kdumpvm.run_kdump_cycle(
        k, capture_cmds=cmds, memory=size, crashkernel="512M" if gib > 4 else "256M",
        kexec_flags="-s", workload=WORKLOADS.get(gib, WORKLOADS[16]), timeouts=timeouts(gib),
        use_cache=False, tag=f"bench{gib}g", root_cache=True,
    )  # fmt: skip
    say(f"timing: cycle took {time.monotonic() - t0:.0f} s ({res.dir})")
    first = len(setup) + 3
    startup = [read_time(res.dir / f"startup{i}.time") for i in (1, 2, 3)]
    for i in range(len(setup)):
        if res.rc(i) != 0:
            raise SystemExit(f"bench-guests: {cmds[i]} failed: {res.log(i)[-500:]}")
    runs = []
    for j, (tool, mode, r) in enumerate(plan):
        name = f"{tool}-{mode}{r}"
        row = {"tool": tool, "mode": mode, "round": r, "rc": res.rc(first + j)}
        row.update(read_time(res.dir / f"{name}.time") or {})
        stats = res.dir / f"{name}.json"
        if stats.exists():
            st = json.loads(stats.read_text())
            row["seconds"] = st.get("seconds", {})
            row["scan"] = st.get("scan")
        if row["rc"] != 0:
            row["error"] = res.log(first + j).strip().splitlines()[-1:] or ["(no output)"]
        runs.append(row)
    verdict = check_dumps(res.dir, {t: f"{t}-z0" for t in TOOLS}, "mdf179")
    return {
        "kernel": kernel,
        "release": k.release,
        "size": size,
        "rounds": rounds,
        "vmcore_bytes": res.meta.get("vmcore_size"),
        "meminfo": (res.dir / "meminfo.txt").read_text().split("\n")
        if (res.dir / "meminfo.txt").exists()
        else [],
        "runs": runs,
        "startup": startup,
        "check": verdict,
        "cycle": str(res.dir),
        "cycle_seconds": res.timings.get("total"),
        "load": os.getloadavg(),
    }


# --------------------------------------------------------------------------- budget


def budget_trial(k, setup, size: str, mb: int, tools: list[str], mdf: str) -> tuple[dict, dict]:
    """One cycle with ``crashkernel={mb}M`` running ``tools``: 'ok' or why not, per tool
    (tools a failure kept from running are left out), and what GNU time and the capture
    kernel's meminfo said."""
    verdicts, cdir = _budget_cycle(k, setup, size, mb, tools, mdf)
    details: dict = {"time": {}, "capture_meminfo": []}
    if cdir is not None:
        details["time"] = {t: read_time(cdir / f"{t}-b.time") for t in tools}
        mem = cdir / "meminfo.txt"
        details["capture_meminfo"] = mem.read_text().splitlines() if mem.exists() else []
    return verdicts, details


def _budget_cycle(k, setup, size: str, mb: int, tools: list[str], mdf: str):
    gib = size_gib(size)
    setup = [*setup, MEMINFO]
    cmds = setup + [tool_cmd(t, mdf, f"{t}-b", dry=False, keep=True) for t in tools]
    cmds.append(OOM_LOG)
    try:
        res = kdumpvm.run_kdump_cycle(
            k, capture_cmds=cmds, memory=size, crashkernel=f"{mb}M", kexec_flags="-s",
            workload=WORKLOADS.get(gib, WORKLOADS[16]), timeouts=timeouts(gib),
            use_cache=False, tag=f"budget{gib}g-{mb}m",
        )  # fmt: skip
    except kdumpvm.CycleError as e:
        cdir = Path(e.console).parent if getattr(e, "console", None) else None
        if e.step in ("kexec load", "capture boot"):
            return dict.fromkeys(tools, f"{e.step}: {e.why}"), cdir
        out: dict[str, str] = {}
        for i, t in enumerate(tools):  # the commands that ended before the capture kernel died
            rc = cdir / f"cmd{len(setup) + i}.rc" if cdir else None
            if rc and rc.exists():
                code = int(rc.read_text())
                out[t] = "ok?" if code == 0 else _failed(code, cdir / f"cmd{len(setup) + i}.log")
            else:
                out[t] = f"capture kernel died ({e.step}: {e.why})"
                break
        return (_checked(cdir, out) if cdir else out), cdir
    if any(res.rc(i) != 0 for i in range(len(setup))):
        return dict.fromkeys(tools, f"setup failed: {res.log(0)[-300:]}"), res.dir
    out = {}
    for i, t in enumerate(tools):
        rc = res.rc(len(setup) + i)
        out[t] = "ok?" if rc == 0 else _failed(rc, res.dir / f"cmd{len(setup) + i}.log")
    return _checked(res.dir, out), res.dir


def _failed(rc: int, log: Path) -> str:
    """How a tool's run ended: killed by the OOM killer (the kernel log says so; it kills
    with SIGKILL), killed otherwise, or its last line."""
    text = log.read_text(errors="replace") if log.exists() else ""
    if rc == 137 or "terminated by signal 9" in text:
        oom = log.parent / "oom.txt"
        by = "the OOM killer" if oom.exists() and oom.stat().st_size else "SIGKILL"
        return f"rc {rc}: killed by {by}"
    last = text.strip().splitlines()[-1:] or [""]
    return f"rc {rc}: {last[0][:200]}"


def _checked(cdir: Path, out: dict[str, str]) -> dict:
    """Replace each 'ok?' by the host's verdict on its dump (against 1.7.9's of the same
    cycle when that one succeeded, else its own pages read back alone)."""
    done = {t: f"{t}-b" for t, v in out.items() if v == "ok?"}
    if not done:
        return out
    ref = "mdf179" if "mdf179" in done else next(iter(done))
    verdict = check_dumps(cdir, done, ref)
    for t, v in verdict.items():
        out[t] = v if v == "ok" else f"dump check failed: {v}"
    (cdir / f"{done[ref]}.kdump").unlink(missing_ok=True)
    return out


def budget(kernel: str, size: str, mdf: str, lo: int, hi: int, tools=TOOLS) -> dict:
    """Bisect ``crashkernel=`` per tool between ``lo`` (taken as too small without a test)
    and ``hi`` MiB, all ``tools`` in every cycle, to GRAIN_MB."""
    k, setup = kernel_and_setup(kernel)
    fail = dict.fromkeys(tools, lo)
    ok: dict[str, int | None] = dict.fromkeys(tools)
    trials: list[dict] = []

    def trial(mb: int, tools: list[str]) -> None:
        say(f"budget: {size} guest, crashkernel={mb}M: {', '.join(tools)}")
        t0 = time.monotonic()
        res, details = budget_trial(k, setup, size, mb, tools, mdf)
        left = [t for t in tools if t not in res]
        if left:  # a tool took the capture kernel down before these ran: run them alone
            more, more_details = budget_trial(k, setup, size, mb, left, mdf)
            res.update(more)
            details["time"].update(more_details["time"])
        trials.append(
            {"crashkernel_mb": mb, "result": res, "seconds": time.monotonic() - t0, **details}
        )
        say(f"budget: {mb}M -> {res}")
        for t, v in res.items():
            if v == "ok":
                ok[t] = mb if ok[t] is None else min(ok[t], mb)
            elif not v.startswith("dump check failed"):
                fail[t] = max(fail[t], mb)
            else:
                raise SystemExit(f"bench-guests: wrong dump at crashkernel={mb}M: {t}: {v}")

    while any(ok[t] is None for t in tools) and hi <= 4096:
        trial(hi, [t for t in tools if ok[t] is None])
        hi *= 2
    while True:
        gaps = {t: (ok[t] or 0) - fail[t] for t in tools if ok[t] is not None}
        open_ = {t: g for t, g in gaps.items() if g > GRAIN_MB}
        if not open_:
            break
        t = max(open_, key=lambda x: open_[x])
        mid = (fail[t] + (ok[t] or 0)) // 2 // GRAIN_MB * GRAIN_MB
        trial(mid, [x for x in tools if fail[x] < mid < (ok[x] or 1 << 30)])
    return {
        "kernel": kernel,
        "release": k.release,
        "size": size,
        "smallest_ok_mb": ok,
        "largest_failed_mb": fail,
        "trials": trials,
        "load": os.getloadavg(),
    }


# --------------------------------------------------------------------------- report


def _median(rows: list[dict], key: str, fmt: str) -> str:
    vals = [r[key] for r in rows if key in r]
    return fmt.format(statistics.median(vals)) if vals else "–"


def markdown(doc: dict) -> str:
    lines = [f"Measured {doc['finished']} (load average at the end of each part in its rows)."]
    for t in doc.get("timing", []):
        lines += [
            "",
            f"**{t['size']} guest, {t['kernel']} ({t['release']}), {t['rounds']} round(s)**: "
            f"whole process in the capture kernel, median wall seconds (min–max), peak RSS MiB; "
            f"dumps checked: " + ", ".join(f"{LABEL[x]} {v}" for x, v in t["check"].items()),
            "",
            "| tool | mode | wall s | min–max | CPU s | of it system | page faults | RSS MiB | "
            "dumpfilter scan step s | vs own scan | vs makedumpfile 1.7.9 |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        good = {
            (tool, mode): [
                r for r in t["runs"]
                if r["tool"] == tool and r["mode"] == mode and r["rc"] == 0 and "wall" in r
            ]
            for tool in TOOLS for mode in ("dry", "z")
        }  # fmt: skip
        med = {
            key: statistics.median(r["wall"] for r in rows) for key, rows in good.items() if rows
        }
        for mode in ("dry", "z"):
            for tool in TOOLS:
                rows = good[tool, mode]
                flag = "--dry-run" if mode == "dry" else "-z"
                if not rows:
                    bad = [r for r in t["runs"] if r["tool"] == tool and r["mode"] == mode]
                    lines.append(f"| {LABEL[tool]} | {flag} | failed: {bad[0].get('error')} |")
                    continue
                walls = [r["wall"] for r in rows]
                scan = [r["seconds"]["scan"] for r in rows if "scan" in r.get("seconds", {})]
                cells = [
                    LABEL[tool], flag, f"{med[tool, mode]:.2f}",
                    f"{min(walls):.2f}–{max(walls):.2f}",
                    f"{statistics.median(r['cpu'] for r in rows):.2f}",
                    _median(rows, "sys", "{:.2f}"), _median(rows, "faults", "{:.0f}"),
                    f"{max(r['rss_mib'] for r in rows):.0f}",
                    f"{statistics.median(scan):.3f}" if scan else "–",
                ]  # fmt: skip
                for other in ("user", "mdf179"):
                    v = med.get((other, mode))
                    cells.append(f"{med[tool, mode] / v:.2f}" if v else "–")
                lines.append("| " + " | ".join(cells) + " |")
        up = [x for x in t.get("startup", []) if x]
        if up:
            lines += [
                "",
                f"Starting Python and importing dumpfilter (`dumpfilter -v`, {len(up)} runs): "
                f"median {statistics.median(x['wall'] for x in up):.2f} s wall, "
                f"{statistics.median(x['cpu'] for x in up):.2f} s CPU.",
            ]
    for b in doc.get("budget", []):
        lines += [
            "",
            f"**Smallest crashkernel= for a {b['size']} guest, {b['kernel']} ({b['release']})**"
            f" (resolution {GRAIN_MB} MiB; {len(b['trials'])} cycles):",
            "",
            "| tool | smallest that worked | its capture kernel's MemTotal | peak RSS there | "
            "largest that failed | how it failed |",
            "|---|---|---|---|---|---|",
        ]
        for tool, good in b["smallest_ok_mb"].items():
            bad = b["largest_failed_mb"][tool]
            at = {x["crashkernel_mb"]: x for x in b["trials"] if tool in x["result"]}
            how = at[bad]["result"][tool] if bad in at else "not run (the bisection's floor)"
            total, rss = "–", "–"
            if good in at:
                mem = [ln.split()[1] for ln in at[good].get("capture_meminfo", [])
                       if ln.startswith("MemTotal:")]  # fmt: skip
                total = f"{int(mem[0]) / 1024:.0f} MiB" if mem else "–"
                tm = at[good].get("time", {}).get(tool)
                rss = f"{tm['rss_mib']:.0f} MiB" if tm else "–"
            lines.append(f"| {LABEL[tool]} | {good} MiB | {total} | {rss} | {bad} MiB | {how} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernel", default="module-6.12", help="module-6.12 or patched-6.12")
    ap.add_argument("--sizes", default="1G,16G", help="guest RAM sizes for the timing cycles")
    ap.add_argument("--rounds", type=int, default=3, help="timed runs of each tool and mode")
    ap.add_argument("--budget", default="", help="guest sizes for the crashkernel bisection")
    ap.add_argument("--budget-range", default="64,256", help="bisection bounds, MiB")
    ap.add_argument("--budget-tools", default=",".join(TOOLS), help="tools to bisect for")
    ap.add_argument("--out", type=Path, default=kdumpvm.cache_dir() / "bench" / "guests")
    a = ap.parse_args(argv)
    mdf, why = anchor.makedumpfile_179()
    if mdf is None:
        raise SystemExit(f"bench-guests: makedumpfile 1.7.9: {why}")
    subprocess.run(
        [str(kdumpvm.VENV_PYTHON), "-m", "compileall", "-q", str(REPO / "userspace" / "src")],
        check=True,
    )  # fmt: skip
    a.out.mkdir(parents=True, exist_ok=True)
    doc: dict = {"timing": [], "budget": []}
    for size in filter(None, a.sizes.split(",")):
        doc["timing"].append(timing(a.kernel, size, a.rounds, mdf))
    lo, hi = (int(x) for x in a.budget_range.split(","))
    for size in filter(None, a.budget.split(",")):
        tools = tuple(t for t in a.budget_tools.split(",") if t)
        if not tools or set(tools) - set(TOOLS):
            raise SystemExit(f"bench-guests: --budget-tools takes {', '.join(TOOLS)}")
        doc["budget"].append(budget(a.kernel, size, mdf, lo, hi, tools))
    doc["finished"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    name = f"results-{a.kernel}"
    (a.out / f"{name}.json").write_text(json.dumps(doc, indent=1))
    (a.out / f"{name}.md").write_text(markdown(doc))
    print(markdown(doc))
    say(f"results in {a.out}/{name}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
