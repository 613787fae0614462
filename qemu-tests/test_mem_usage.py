"""``dumpfilter --mem-usage /proc/kcore`` on a running guest, checked two ways.

In the first kernel, once the workload has populated memory, makedumpfile 1.7.9 and then
dumpfilter run ``--mem-usage /proc/kcore``; the guest crashes right after and the capture
kernel writes an uncompressed ``-d 31`` dump.  dumpfilter's estimate for level 31 must be that
dump's size and kept pages, and its table makedumpfile's, within what memory moves between
the three moments (the tolerance below).

Where the two tools count differently, by design: makedumpfile 1.7.9's "Total pages on
system" also counts the memory reserved for the crash kernel (never in a vmcore) and counts
the kernel image (_text.._end) twice, once more for /proc/kcore's kernel-text segment; these
pages land in its ZERO and KERN_DATA rows.  dumpfilter counts the RAM the dump will hold.
And dumpfilter's own process (Python, numpy, its read buffers: OWN below, its USER count
less makedumpfile's) is user memory while it runs, tens of MiB that makedumpfile's C process
does not take from FREE; it costs kernel memory too (page tables, slab), and when it exits
its pages go back through the per-CPU free lists, where the crash finds many of them: a dump
keeps pages on those lists (they are not buddy pages), so the dump holds up to OWN more
kernel data than the estimate counted (6.12's self-tuning lists hold more than 6.1's).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import kdumpvm
from conftest import KERNELS, remember_cycle

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "userspace" / "bench"))
import anchor  # noqa: E402

ROWS = ("ZERO", "NON_PRI_CACHE", "PRI_CACHE", "USER", "FREE", "KERN_DATA")
# Page cache, slabs and per-CPU lists move a little between the three moments: a few MiB of
# a 1 GiB guest.  Counts may differ by 1% of RAM (about 10 MiB here), plus OWN where the
# estimating process's own memory is involved.
TOLERANCE_OF_RAM = 0.01
MAX_OWN = 128 << 20 >> 12  # pages: dumpfilter's process (Python, numpy, 48 MiB of read buffers)


def table(text: str) -> dict[str, int]:
    """makedumpfile's --mem-usage rows and "Total pages on system"."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] in ROWS:
            out[parts[0]] = int(parts[1])
        elif line.startswith("Total pages on system:"):
            out["total"] = int(parts[-1])
    return out


def level_estimate(text: str, level: int) -> tuple[int, int]:
    lines = text.splitlines()
    i = lines.index("LEVEL\tPAGES\t\tBYTES")
    for line in lines[i + 1 :]:
        lv, pages, size = line.split()
        if int(lv) == level:
            return int(pages), int(size)
    raise AssertionError(f"no estimate for level {level}")


@pytest.fixture(scope="module", params=KERNELS)
def live(request):
    mdf, why = anchor.makedumpfile_179()
    if mdf is None:
        pytest.skip(f"makedumpfile 1.7.9: {why}")
    df = f"{kdumpvm.VENV_PYTHON} -B -m dumpfilter.cli"
    r = kdumpvm.run_kdump_cycle(
        kdumpvm.stock_kernel(request.param),
        workload=[
            "--then",
            "grep -E ' (_text|_end)$' /proc/kallsyms > kallsyms.txt && "
            "grep 'Crash kernel' /proc/iomem > iomem.txt",
            "--then",
            f"{mdf} --mem-usage /proc/kcore > mdf_mem_usage.txt",
            "--then",
            f"{df} --mem-usage /proc/kcore > df_mem_usage.txt",
        ],
        capture_cmds=["$DUMPFILTER -d 31 --stats-json mu31.json $VMCORE mu31.kdump"],
        kexec_flags="-s" if request.param == "6.12" else "",
        tag="mem-usage",
        # two full scans of /proc/kcore under TCG on top of the workload
        timeouts=kdumpvm.Timeouts(workload=600),
    )
    remember_cycle(f"{request.param} mem-usage", r)
    for i, who in enumerate(("the layout", "makedumpfile 1.7.9", "dumpfilter")):
        rc = int(r.path(f"live{i}.rc").read_text())
        assert rc == 0, f"{who} --mem-usage exited {rc}:\n{r.path(f'live{i}.log').read_text()}"
    r.check(0)
    return r


def own_pages(live) -> int:
    """User pages of dumpfilter's process while it estimated (its USER less makedumpfile's)."""
    ours = table(live.path("df_mem_usage.txt").read_text())
    theirs = table(live.path("mdf_mem_usage.txt").read_text())
    own = ours["USER"] - theirs["USER"]
    assert 0 < own <= MAX_OWN, (ours["USER"], theirs["USER"])
    return own


def test_estimate_for_d31_is_the_dump_of_the_crash_right_after(live):
    text = live.path("df_mem_usage.txt").read_text()
    pages, size = level_estimate(text, 31)
    ram = table(text)["total"]
    stats = json.loads(live.path("mu31.json").read_text())
    kept = stats["pages"]["kept"]
    written = live.path("mu31.kdump").stat().st_size
    tol = TOLERANCE_OF_RAM * ram + own_pages(live)
    assert abs(pages - kept) <= tol, (pages, kept)
    assert abs(size - written) <= tol * (4096 + 24), (size, written)
    # the RAM the dump holds is the RAM the estimate counted: the crash kernel's is left out.
    # A vmcore from kexec_load has the part of a page where a RAM range ends mid-page, which
    # /proc/kcore has not; one from kexec_file_load (6.12's cycle) leaves out the first MiB.
    assert -256 <= stats["pages"]["ram"] - ram <= 3, (ram, stats["pages"]["ram"])


def _image_and_crash_kernel_pages(live) -> tuple[int, int]:
    syms = {}
    for line in live.path("kallsyms.txt").read_text().splitlines():
        addr, _t, name = line.split()
        syms[name] = int(addr, 16)
    crash = 0
    for line in live.path("iomem.txt").read_text().splitlines():
        a, b = line.split(":")[0].strip().split("-")
        crash += (int(b, 16) + 1 - int(a, 16)) // 4096
    return (syms["_end"] - syms["_text"]) // 4096, crash


def test_table_matches_makedumpfile_179_on_the_same_guest(live):
    ours = table(live.path("df_mem_usage.txt").read_text())
    theirs = table(live.path("mdf_mem_usage.txt").read_text())
    assert set(theirs) == {*ROWS, "total"}, live.path("mdf_mem_usage.txt").read_text()
    assert list(ours) == list(theirs)
    image, crash = _image_and_crash_kernel_pages(live)
    assert image > 0 and crash > 0
    assert theirs["total"] == ours["total"] + crash + image
    tol = TOLERANCE_OF_RAM * ours["total"]
    for row in ("NON_PRI_CACHE", "PRI_CACHE"):
        assert abs(ours[row] - theirs[row]) <= tol, (row, ours[row], theirs[row])
    own = own_pages(live)
    assert abs(ours["FREE"] + own - theirs["FREE"]) <= tol + own, (ours["FREE"], theirs["FREE"])
    rest = ("ZERO", "KERN_DATA")  # makedumpfile's extra pages are these
    extra = sum(theirs[r] for r in rest) - sum(ours[r] for r in rest)
    assert abs(extra - crash - image) <= tol + own, (extra, crash, image)
    assert ours["USER"] > 0 and ours["FREE"] > 0 and ours["NON_PRI_CACHE"] > 0
