"""bench/scalevmcore.py: the scale bench's dumps hold what their manifest says was placed."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import scalevmcore  # noqa: E402

from dumpfilter import scan, source  # noqa: E402
from dumpfilter.pageclass import PageClass  # noqa: E402


@pytest.fixture(scope="module")
def scale1g(tmp_path_factory):
    d = tmp_path_factory.mktemp("scale")
    os.environ["DUMPFILTER_CACHE"], old = str(d), os.environ.get("DUMPFILTER_CACHE")
    try:
        path = scalevmcore.ensure(1, "6.1")
    finally:
        if old is None:
            del os.environ["DUMPFILTER_CACHE"]
        else:
            os.environ["DUMPFILTER_CACHE"] = old
    return path, json.loads((path.parent / "manifest.json").read_text())


def test_the_scan_finds_every_class_the_generator_placed(scale1g):
    path, manifest = scale1g
    with source.open_source(str(path)) as src:
        c = scan.userspace_scan(src, 31)
        got = np.bincount(np.concatenate([a for _, a in c.windows()]), minlength=256)
        assert sum(b - a for a, b in src.ram_ranges) == manifest["ram_pages"]
    placed = manifest["pages_d31"]
    for cls in PageClass:
        if cls.name.lower() in placed:
            assert got[cls] == placed[cls.name.lower()], cls.name
    for name in ("free", "cache", "cache_private", "user", "offline", "hwpoison", "keep"):
        assert placed.get(name, 0) > 0, f"the mix places no {name} pages"
    assert placed["free"] > manifest["ram_pages"] // 3  # mostly free, as big servers are


def test_only_kept_pages_have_data_so_the_file_stays_small(scale1g):
    path, manifest = scale1g
    kept = manifest["pages_d31"]["keep"] - manifest["kept_zero_pages"]
    text_load = scalevmcore.IMAGE_PAGES * 4096  # the kernel text PT_LOAD repeats the image
    assert scalevmcore.disk_bytes(path) <= kept * 4096 + text_load + (1 << 20)
    assert path.stat().st_size > manifest["ram_pages"] * 4096  # sparse: all of RAM in the file


def test_numa_like_layout_has_holes_of_whole_sections_above_4_gib():
    ram = scalevmcore.ram_layout(64)
    assert len(ram) == 2 + 4
    gaps = [b[0] - a[1] for a, b in zip(ram[2:], ram[3:], strict=False)]
    assert all(g > 0 and g % scalevmcore.SEC_PAGES == 0 for g in gaps)
    assert abs(sum(b - a for a, b in ram) - (64 << 18)) < 256  # the legacy holes aside
