"""The dump written in the capture kernel, read back page by page by tools we did not write
(Debian's libkdumpfile and drgn), against the raw /proc/vmcore copy of the same crash."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from e2elib import PAGE, RawVmcore, kdump_bitmap2
from kdumpvm import CycleResult

HERE = Path(__file__).resolve().parent
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's python3-libkdumpfile lives there


def _kept_and_excluded(cycle: CycleResult) -> tuple[RawVmcore, np.ndarray, np.ndarray]:
    raw = RawVmcore(cycle.path("vmcore"))
    kept = kdump_bitmap2(cycle.path("df31.kdump"))
    assert len(kept) == raw.max_pfn
    ram = raw.ram()
    assert not np.any(kept & ~ram), "a page outside every PT_LOAD is marked dumpable"
    return raw, kept & ram, ram & ~kept


def test_every_kept_page_reads_back_identical_with_libkdumpfile(cycle: CycleResult, tmp_path):
    cycle.check(0)
    raw, kept, excluded = _kept_and_excluded(cycle)
    runs = tmp_path / "runs.json"
    runs.write_text(json.dumps({"kept": raw.runs(kept), "excluded": raw.runs(excluded)}))
    p = subprocess.run(
        [
            SYSTEM_PYTHON,
            str(HERE / "readback_kdumpfile.py"),
            str(cycle.path("df31.kdump")),
            str(raw.path),
            str(runs),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout)
    assert res["format"] == "diskdump"
    assert res["kept_pages"] == int(kept.sum()) > 0
    assert res["bad_kept"] == [], f"kept pages that read back wrong: {res['bad_kept'][:20]}"
    assert res["excluded_checked"] > 0
    assert res["excluded_present"] == [], (
        f"excluded pages readable from the dump: {res['excluded_present'][:20]}"
    )


def test_every_kept_page_reads_back_identical_with_drgn(cycle: CycleResult):
    drgn = pytest.importorskip("drgn")
    cycle.check(0)
    raw, kept, excluded = _kept_and_excluded(cycle)
    prog = drgn.Program()
    prog.set_core_dump(str(cycle.path("df31.kdump")))
    for pfn, count in raw.runs(kept):
        got = np.frombuffer(prog.read(pfn * PAGE, count * PAGE, True), dtype=np.uint8)
        want = raw.pages(pfn, count).reshape(-1)
        if not np.array_equal(got, want):
            bad = np.flatnonzero((got != want).reshape(count, PAGE).any(axis=1))
            pytest.fail(f"drgn reads pfn {pfn + int(bad[0])} differently from the vmcore")
    # Excluded pages: drgn reports a fault (the page is not in the dump).
    probes = [pfn for pfn, _count in raw.runs(excluded)][:500]
    readable = []
    for pfn in probes:
        try:
            prog.read(pfn * PAGE, PAGE, True)
            readable.append(pfn)
        except drgn.FaultError:
            pass
    assert probes and readable == [], f"excluded pfns readable through drgn: {readable[:20]}"
