#!/usr/bin/env python3
"""`make bench-scale`: the cost curve, dumpfilter vs makedumpfile from 1 GiB to 1 TiB of RAM.

For each size, a sparse synthetic vmcore from scalevmcore.py (made once into the cache), and
side by side in one run: makedumpfile 1.7.9 (built by the anchors script), Debian's
makedumpfile 1.7.2 when installed, and dumpfilter with its defaults and with
``--num-threads`` 1 and 2.  Measured per tool and thread count:

* the scan step: makedumpfile's ``STEP [Excluding unnecessary pages]`` (``--message-level
  23``) against dumpfilter's ``--stats-json`` ``seconds.scan``, from the dry run;
* the whole process of ``--dry-run -d 31``, ``-d 31 -z`` and ``-d 31 -l``: wall seconds and
  peak RSS (GNU time's ``%M``: the largest process of the run, so a forked scan worker is
  counted on its own, not added to the parent);
* the kept PFN set: the 2nd bitmap of every dump written must equal makedumpfile 1.7.9's
  ``-d 31 -l`` one, bit for bit, or the row says where they differ.

The tools' programs and libraries are evicted from the page cache once before the first run
(``evict_programs`` says why).  The runs read a copy of the dump in tmpfs, after one untimed
run of each tool (``staged.py`` says why: on the disk, reading ahead into the sparse file's
holes costs makedumpfile more than its work); a dump whose data does not fit (1 TiB on a
24 GiB machine) is read from the disk, dropped from the page cache before every run.  The
machine's load average is recorded before each size: timings on a shared machine only mean
something side by side.  Results: ``results.md``
(tables of times and ratios), ``results.json`` and ``scale.png`` (log-log time and RSS
against RAM size) in ``--out`` (default ``$DUMPFILTER_CACHE/bench/scale``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run as bench  # noqa: E402  (run_once, dumpfilter_cmd, cache_dir)
import scalevmcore  # noqa: E402
import staged  # noqa: E402
from anchor import (  # noqa: E402
    bitmap2,
    compare_kept,
    describe,
    makedumpfile_179,
    makedumpfile_debian,
)
from staged import Staged  # noqa: E402

REPO = HERE.parent.parent
SIZES = (1, 4, 16, 64, 256, 1024)
VMCORE_PER_GIB = 0.021  # GiB on disk per GiB of RAM: mem_map (1.56 %) and the kept data
OUTPUT_PER_GIB = 0.006  # GiB of the largest dump written (-d 31 -l), per GiB of RAM
DISK_MARGIN = 20 * (1 << 30)  # left free for everyone else on the disk
BUSY_CAP = 3  # makedumpfile's 2-thread run stops at 3x its 1-thread time: it busy-waits
MDF_THREADS_MAX_GIB = 16  # and above this size its 2-thread runs are left out
_STEP = re.compile(r"STEP \[Excluding unnecessary pages\] : ([0-9.]+) seconds")
GIB = 1 << 30
STAGE_DIR = Path("/dev/shm/dumpfilter-scale")  # where a dump is copied to be read (staged.py)
STAGE_MARGIN = 2 * GIB  # of the tmpfs, left for the tools' own files


def evict_programs(tools: dict[str, list[str]]) -> int:
    """Drop the tools' programs and dumpfilter's Python packages from the page cache, as
    after a boot; the number of files.

    Peak RSS counts the file pages a process maps, and the kernel's fault-around maps every
    page of a library that is already cached near the one that faulted: a virtualenv made
    minutes ago (all of numpy's libraries still cached from the install) reads 3-6 MiB more
    than the same code run from an older one.  Evicting once before the first run gives
    every tool the same start: what its own runs bring into the cache."""
    import sysconfig

    files = [Path(cmd[0]) for cmd in tools.values()]
    packages = Path(sysconfig.get_paths()["purelib"])
    files += [f for f in packages.rglob("*.so*") if f.is_file()]
    n = 0
    for f in files:
        try:
            fd = os.open(f, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            n += 1
        finally:
            os.close(fd)
    return n


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def drop_cached(path: Path) -> None:
    """Drop ``path`` from the page cache: a dump too big to stage is read from the disk, by
    every run alike."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def stage(path: Path, budget: int) -> Staged | None:
    """The dump's copy in tmpfs (``staged.py`` says why the runs read that), or None when its
    data does not fit in ``budget`` bytes or in the tmpfs: the runs then read the disk."""
    shutil.rmtree(STAGE_DIR, ignore_errors=True)  # an interrupted run's copy
    need = staged.data_bytes(path)
    if need > min(budget, staged.tmpfs_room(STAGE_DIR.parent) - STAGE_MARGIN):
        return None
    return Staged(path, STAGE_DIR)


def _cpu(path: Path) -> float | None:
    """User + system seconds from GNU time's output (forked scan workers included)."""
    try:
        u, s = path.read_text().split()[-2:]
        return float(u) + float(s)
    except (OSError, ValueError):
        return None


def _merge(cells: dict, key: str, cell: dict) -> None:
    """Keep the fastest run of a cell (its times), the highest peak RSS, any failure."""
    old = cells.get(key)
    if old is None:
        cells[key] = cell
        return
    if cell.get("error"):
        return
    for k in ("seconds", "cpu_seconds", "scan_seconds", "prepare_seconds"):
        if cell.get(k) is not None and (old.get(k) is None or cell[k] < old[k]):
            old[k] = cell[k]
    old["maxrss_kib"] = max(old.get("maxrss_kib") or 0, cell.get("maxrss_kib") or 0)


def measure(size, tools, work: Path, timeout, budget, repeat: int, modes=("dry", "z", "l")):
    vmcore = scalevmcore.ensure(size, say=say)
    manifest = json.loads((vmcore.parent / "manifest.json").read_text())
    copy = stage(vmcore, budget)
    try:
        return _measure(size, vmcore, manifest, copy, tools, work, timeout, repeat, modes)
    finally:
        if copy is not None:
            copy.remove()


def _measure(size, vmcore, manifest, copy, tools, work, timeout, repeat, modes) -> dict:
    path = copy.path if copy is not None else vmcore
    load = os.getloadavg()
    where = "tmpfs" if copy is not None else "disk"
    say(f"== {size} GiB: {vmcore} (load {load[0]:.2f}, read from {where})")
    out = work / "dump"
    stats = work / "stats.json"
    cpu = work / "cpu"
    res: dict = {
        "ram_gib": size,
        "ram_pages": manifest["ram_pages"],
        "disk_bytes": scalevmcore.disk_bytes(vmcore),
        "load_before": load,
        "input": (
            "a copy in tmpfs, after one untimed dry run of each tool"
            if copy is not None
            else "the disk, dropped from the page cache before every run (data too big for tmpfs)"
        ),
        "rounds": repeat,
        "cells": {},
        "pfn_check": {},
    }
    cells = [
        (mode, name, threads)
        for mode in modes
        for name in tools
        for threads in (None, 1, 2)
        if threads is not None or name == "dumpfilter"  # makedumpfile's default: 1 thread
        if name == "dumpfilter" or threads != 2 or size <= MDF_THREADS_MAX_GIB
    ]
    if copy is not None:  # staged.py: what the timed runs touch is then in memory
        for cmd in tools.values():
            bench.run_once([*cmd, "-d", "31", "--dry-run", str(path), str(out)], None, timeout)
        out.unlink(missing_ok=True)
    ref: np.ndarray | None = None
    one: dict[tuple[str, str], float] = {}  # 1-thread times, for the 2-thread cap
    capped: set[tuple[str, str]] = set()
    for rnd in range(repeat):  # rounds over every cell: a busy spell hits all tools alike
        for mode, name, threads in cells:
            df = name == "dumpfilter"
            args = ["-d", "31"]
            args += {"dry": ["--dry-run"], "z": ["-z"], "l": ["-l"]}[mode]
            if threads is not None and (df or threads > 1):
                args += ["--num-threads", str(threads)]
            if df:
                args += ["--message-level", "4", "--stats-json", str(stats)]
            else:
                args += ["--message-level", "23" if mode == "dry" else "4"]
            out.unlink(missing_ok=True)
            stats.unlink(missing_ok=True)
            # the run before's dump is written back and freed now, not during this run:
            # makedumpfile 1.7.2's -z dumps are uncompressed (no zstd), gigabytes from 64 GiB
            os.sync()
            if copy is None:
                drop_cached(path)
            cmd = [*tools[name], *args, str(path)]
            if mode != "dry" or not df:
                cmd.append(str(out))
            cpu.unlink(missing_ok=True)
            cmd = [bench.GNU_TIME, "-f", "%U %S", "-o", str(cpu), *cmd]
            limit = timeout
            if not df and threads == 2:
                if (name, mode) in capped:
                    continue  # it hit the cap once: once is enough
                limit = min(timeout, max(20.0, BUSY_CAP * one.get((name, mode), timeout)))
            r = bench.run_once(cmd, None, limit)
            if not df and threads == 1 and r.ok:
                one[(name, mode)] = min(r.seconds, one.get((name, mode), r.seconds))
            if not df and threads == 2 and not r.ok and "timeout" in (r.error or ""):
                capped.add((name, mode))
                r.error = f"> {limit:.0f} s (stopped at {BUSY_CAP}x its 1-thread time)"
            cell = {
                "seconds": r.seconds,
                "cpu_seconds": _cpu(cpu) if r.ok else None,
                "maxrss_kib": r.maxrss_kib,
                "error": r.error,
                "out_bytes": out.stat().st_size if out.exists() and r.ok else None,
            }
            if mode == "dry" and r.ok:
                if df:
                    s = json.loads(stats.read_text())
                    cell["scan_seconds"] = s["seconds"]["scan"]
                    cell["prepare_seconds"] = s["seconds"]["prepare"]
                    cell["kept"] = s["pages"]["kept"]
                else:
                    steps = [float(t) for t in _STEP.findall(r.stdout)]
                    cell["scan_seconds"] = sum(steps) if steps else None
            tlabel = "default" if threads is None else str(threads)
            if mode != "dry" and r.ok and out.exists():
                bits = bitmap2(out)
                if name == "makedumpfile 1.7.9" and ref is None:
                    ref = bits
                if ref is not None:
                    key = f"{name} -{mode} threads={tlabel}"
                    if res["pfn_check"].get(key, "equal") == "equal":
                        res["pfn_check"][key] = describe(
                            compare_kept(bits, ref), name, "makedumpfile 1.7.9"
                        )
                del bits
            out.unlink(missing_ok=True)
            _merge(res["cells"], f"{name}|{mode}|{tlabel}", cell)
            show = f"{r.seconds:.2f} s, {r.maxrss_kib / 1024:.0f} MiB" if r.ok else r.error
            say(f"  [{rnd + 1}/{repeat}] {name} {mode} threads={tlabel}: {show}")
    res["load_after"] = os.getloadavg()
    return res


# --- the report ------------------------------------------------------------------------------


def _cell(res: dict, name: str, mode: str, t: str, key: str = "seconds"):
    c = res["cells"].get(f"{name}|{mode}|{t}")
    return None if c is None else c.get(key)


def _show(res: dict, name: str, mode: str, t: str, key: str, unit: str) -> str:
    """A cell's value, or why it has none (a capped run: '> N s')."""
    c = res["cells"].get(f"{name}|{mode}|{t}")
    if c is not None and c.get(key) is None and c.get("error"):
        err = c["error"]
        return err.split(" (")[0] if err.startswith(">") else "failed"
    return _fmt(None if c is None else c.get(key), unit)


def _fmt(v, unit: str = "s") -> str:
    if v is None:
        return "–"
    if unit == "MiB":
        return f"{v / 1024:.0f}"
    return f"{v:.3f}" if v < 1 else f"{v:.2f}"


def _ratio(a, b) -> str:
    return "–" if a is None or not b else f"{a / b:.2f}"


def markdown(results: list[dict], skipped: list[str]) -> str:
    df, m9, m2 = "dumpfilter", "makedumpfile 1.7.9", "makedumpfile 1.7.2"
    lines = [
        "Ratios are dumpfilter / makedumpfile 1.7.9 (< 1: dumpfilter is faster or smaller); "
        "dumpfilter's default (no `--num-threads`) against makedumpfile 1.7.9's best of its "
        "1- and 2-thread runs. Times in seconds, RSS in MiB.",
        "",
    ]
    measures = [
        ("Scan step (`-d 31`)", "dry", "scan_seconds", "s"),
        ("Whole `--dry-run -d 31`", "dry", "seconds", "s"),
        ("Whole `-d 31 -z`", "z", "seconds", "s"),
        ("Whole `-d 31 -l`", "l", "seconds", "s"),
        ("CPU seconds (user + system), `--dry-run -d 31`", "dry", "cpu_seconds", "s"),
        ("CPU seconds (user + system), `-d 31 -z`", "z", "cpu_seconds", "s"),
        ("CPU seconds (user + system), `-d 31 -l`", "l", "cpu_seconds", "s"),
        ("Peak RSS, `-d 31 -z`", "z", "maxrss_kib", "MiB"),
        ("Peak RSS, `-d 31 -l`", "l", "maxrss_kib", "MiB"),
    ]
    for title, mode, key, unit in measures:
        lines += [
            f"**{title}**",
            "",
            "| RAM | mdf 1.7.9 t=1 | t=2 | mdf 1.7.2 t=1 | t=2 | dumpfilter default | t=1 | t=2 "
            "| ratio default / mdf 1.7.9 best |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in results:
            v = {
                (n, t): _cell(r, n, mode, t, key)
                for n in (df, m9, m2)
                for t in ("default", "1", "2")
            }
            best = [x for x in (v[m9, "1"], v[m9, "2"]) if x is not None]
            cols = [(m9, "1"), (m9, "2"), (m2, "1"), (m2, "2"), (df, "default"), (df, "1")]
            cols.append((df, "2"))
            shown = " | ".join(_show(r, n, mode, t, key, unit) for n, t in cols)
            lines.append(
                f"| {r['ram_gib']} GiB | {shown} | {_ratio(v[df, 'default'], min(best or [0]))} |"
            )
        lines.append("")
    lines += [
        "**Scan step, dumpfilter 2 workers vs 1** (speed-up = t=1 / t=2):",
        "",
        "| RAM | t=1 | t=2 | speed-up | load before → after |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        a, b = _cell(r, df, "dry", "1", "scan_seconds"), _cell(r, df, "dry", "2", "scan_seconds")
        lb, la = r["load_before"][0], r["load_after"][0]
        lines.append(
            f"| {r['ram_gib']} GiB | {_fmt(a)} | {_fmt(b)} | {_ratio(a, b)} | {lb:.2f} → {la:.2f} |"
        )
    lines += ["", "**Kept PFN set against makedumpfile 1.7.9's `-d 31 -l`** (2nd bitmaps):", ""]
    for r in results:
        checks = r["pfn_check"]
        bad = {k: v for k, v in checks.items() if v != "equal"}
        state = "no makedumpfile 1.7.9 dump to compare with"
        if checks:
            state = (
                f"all {len(checks)} dumps equal"
                if not bad
                else "; ".join(f"{k}: {v}" for k, v in bad.items())
            )
        lines.append(
            f"- {r['ram_gib']} GiB ({r['ram_pages']} RAM pages, "
            f"{r['disk_bytes'] / GIB:.2f} GiB on disk, read from {_input(r)}, "
            f"fastest of {r['rounds']} round(s)): {state}"
        )
    lines += [f"- skipped: {s}" for s in skipped]
    return "\n".join(lines) + "\n"


def _input(r: dict) -> str:
    """Where a size's runs read the dump (results before staging name the page cache)."""
    return r.get("input") or f"the disk, page cache {r.get('page_cache', 'unknown')}"


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df, m9 = "dumpfilter", "makedumpfile 1.7.9"
    ram = [r["ram_gib"] for r in results]
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 5))
    styles = {"dry": ":", "z": "-", "l": "--"}
    labels = {"dry": "--dry-run -d 31", "z": "-d 31 -z", "l": "-d 31 -l"}
    for name, t, color in ((df, "default", "tab:blue"), (m9, "1", "tab:red")):
        for mode in ("dry", "z", "l"):
            ys = [_cell(r, name, mode, t) for r in results]
            pts = [(x, y) for x, y in zip(ram, ys, strict=True) if y]
            if pts:
                ax_t.plot(*zip(*pts, strict=True), styles[mode], marker="o", color=color,
                          label=f"{name.split()[0]} {labels[mode]}")  # fmt: skip
        ys = [_cell(r, name, "dry", t, "scan_seconds") for r in results]
        pts = [(x, y) for x, y in zip(ram, ys, strict=True) if y]
        if pts:
            ax_t.plot(*zip(*pts, strict=True), "-.", marker="s", color=color, alpha=0.6,
                      label=f"{name.split()[0]} scan step")  # fmt: skip
        for mode in ("z", "l"):
            ys = [_cell(r, name, mode, t, "maxrss_kib") for r in results]
            pts = [(x, y / 1024) for x, y in zip(ram, ys, strict=True) if y]
            if pts:
                ax_m.plot(*zip(*pts, strict=True), styles[mode], marker="o", color=color,
                          label=f"{name.split()[0]} {labels[mode]}")  # fmt: skip
    for ax, ylabel in ((ax_t, "seconds (wall)"), (ax_m, "peak RSS (MiB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("RAM of the dumped machine (GiB)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    ax_t.set_title("Time: dumpfilter defaults vs makedumpfile 1.7.9, 1 thread")
    ax_m.set_title("Peak RSS")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sizes", nargs="*", type=int, help=f"GiB of RAM (default {SIZES})")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per command")
    ap.add_argument("--out", type=Path, help="where results go")
    ap.add_argument(
        "--repeat", type=int, default=0, help="rounds per size (default 2 up to 16 GiB, else 1)"
    )
    ap.add_argument("--no-debian", action="store_true", help="leave makedumpfile 1.7.2 out")
    ap.add_argument("--modes", default="dry,z,l", help="of dry, z, l (default all)")
    ap.add_argument("--append", action="store_true", help="add to the results in --out")
    ap.add_argument("--report", action="store_true", help="only redo results.md, scale.png")
    ap.add_argument(
        "--drop-from",
        type=int,
        default=0,
        metavar="GIB",
        help="delete vmcores this big once measured",
    )
    a = ap.parse_args(argv)
    out = a.out or bench.cache_dir() / "bench" / "scale"
    out.mkdir(parents=True, exist_ok=True)
    work = bench.cache_dir() / "bench" / "scale-work"
    work.mkdir(parents=True, exist_ok=True)
    skipped: list[str] = []
    tools: dict[str, list[str]] = {}
    m9, why = makedumpfile_179()
    if m9:
        tools["makedumpfile 1.7.9"] = [m9]
    else:
        skipped.append(f"makedumpfile 1.7.9: {why}")
    sizes = ", ".join(f"{g} GiB" for g in a.sizes or SIZES)
    m2, why = (None, "left out (--no-debian)") if a.no_debian else makedumpfile_debian()
    if m2:
        tools["makedumpfile 1.7.2"] = [m2]
    else:
        skipped.append(f"makedumpfile 1.7.2 at {sizes}: {why}")
    tools["dumpfilter"] = bench.dumpfilter_cmd()
    skipped.append(
        f"makedumpfile --num-threads 2 above {MDF_THREADS_MAX_GIB} GiB: it busy-waits (each "
        f"2-thread run is stopped at {BUSY_CAP}x its 1-thread time), so 1 thread is its best "
        "configuration and the hours its 2-thread runs take are left out"
    )
    evicted = evict_programs(tools)
    say(f"evicted {evicted} program and library files from the page cache")
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    results: list[dict] = []
    if a.append and (out / "results.json").exists():
        old = json.loads((out / "results.json").read_text())
        results = old["results"]
        skipped = old["skipped"] + [s for s in skipped if s not in old["skipped"]]
    if a.report:  # the tables and the plot again, from what was measured
        old = json.loads((out / "results.json").read_text())
        (out / "results.md").write_text(markdown(old["results"], old["skipped"]))
        plot(old["results"], out / "scale.png")
        return 0
    modes = tuple(m for m in a.modes.split(",") if m in ("dry", "z", "l"))
    if len(modes) < 3:
        skipped.append(f"at {sizes}: only {', '.join(modes)} measured (--modes)")
    for size in a.sizes or SIZES:
        path = scalevmcore.cache_dir() / "scale" / scalevmcore.Params(size).key / "vmcore"
        need = (0 if path.exists() else size * VMCORE_PER_GIB * GIB) + size * OUTPUT_PER_GIB * GIB
        free = shutil.disk_usage(bench.cache_dir()).free
        if need + DISK_MARGIN > free:
            skipped.append(
                f"{size} GiB: needs ~{need / GIB:.0f} GiB of disk (vmcore and output) and "
                f"{DISK_MARGIN / GIB:.0f} GiB left for others; {free / GIB:.0f} GiB free"
            )
            continue
        repeat = a.repeat if a.repeat else (2 if size <= 16 else 1)
        results.append(measure(size, tools, work, a.timeout, mem // 2, repeat, modes))
        (out / "results.json").write_text(
            json.dumps({"time": time.time(), "results": results, "skipped": skipped}, indent=1)
        )
        (out / "results.md").write_text(markdown(results, skipped))
        if a.drop_from and size >= a.drop_from:
            shutil.rmtree(path.parent)
    (out / "results.json").write_text(
        json.dumps({"time": time.time(), "results": results, "skipped": skipped}, indent=1)
    )
    (out / "results.md").write_text(markdown(results, skipped))
    if results:
        plot(results, out / "scale.png")
    print(markdown(results, skipped))
    say(f"written {out}/results.md, results.json, scale.png")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
